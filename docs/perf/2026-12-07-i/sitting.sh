#!/bin/sh
# 0.9.8 on a Zen 4 machine (AMD EPYC family 25 model 17: AVX-512 on 256-bit
# units), the first sitting of the 0.9 line on a core of this kind; nothing
# else may run meanwhile. SAMP: docs/perf/2026-12-07-f/samp.c built against
# build/libcvae.a (gcc -O2 -fopenmp -Iinclude samp.c build/libcvae.a -lm).
set -u
OUT=/work/main/docs/perf/2026-12-07-i
NEW=/work/main/build/bin
SAMP=/tmp/p/samp
PY="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 /usr/bin/python3"
cd /work/main
lscpu > $OUT/lscpu.txt
echo "0.9.8: $(git log --oneline -1)" > $OUT/commits.txt
stamp() { echo "$(date -u +%H:%M:%S) $*" >> $OUT/timeline.txt; }
stamp start
$NEW/cvae-bench --data data/mnist > $OUT/cvae-bench.txt 2>&1; stamp full bench
$PY docs/perf/pytorch_bench.py --data data/mnist > $OUT/pytorch-bench.txt 2>&1; stamp pytorch bench
for r in 1 2; do
  $NEW/cvae-bench --data data/mnist --only train > $OUT/train-r$r.txt 2>&1
  $NEW/cvae-bench --data data/mnist --only gemm > $OUT/gemm-r$r.txt 2>&1
  $NEW/cvae-bench --data data/mnist --only sample > $OUT/sample-r$r.txt 2>&1
done
stamp train gemm sample twice
for t in 1 2; do $SAMP $t 50; done > $OUT/samp.txt 2>&1
taskset -c 1 $NEW/cvae-bench --data data/mnist --only train --threads 1 > $OUT/pinned-cvae.txt 2>&1
taskset -c 1 $PY docs/perf/pytorch_bench.py --data data/mnist --only train --threads 1 > $OUT/pinned-pytorch.txt 2>&1
stamp pinned
for r in 1 2; do
  for t in 1 2; do
    /usr/bin/time -v $NEW/cvae-train --data data/mnist --epochs 10 --threads $t --out /tmp/sit-m.cvae > $OUT/cvae-train-t$t-r$r.txt 2>&1
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 /usr/bin/time -v /usr/bin/python3 docs/perf/pytorch_vae.py data/mnist 10 1 $t > $OUT/pytorch-vae-t$t-r$r.txt 2>&1
  done
done
stamp end
