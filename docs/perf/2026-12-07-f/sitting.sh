#!/bin/sh
# The 0.9.6 sitting: nothing else may run meanwhile.
set -u
OUT=/work/main/docs/perf/2026-12-07-f
OLD=/tmp/wt_base/build/bin
NEW=/work/main/build/bin
PY="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 /usr/bin/python3"
mkdir -p $OUT
cd /work/main
lscpu > $OUT/lscpu.txt
{ echo "0.9.6: $(git log --oneline -1)"; echo "0.9.5: $(git -C /tmp/wt_base log --oneline -1)"; } > $OUT/commits.txt
stamp() { echo "$(date -u +%H:%M:%S) $*" >> $OUT/timeline.txt; }
stamp start
$NEW/cvae-bench --data data/mnist > $OUT/cvae-bench.txt 2>&1; stamp full bench
$PY docs/perf/pytorch_bench.py --data data/mnist > $OUT/pytorch-bench.txt 2>&1; stamp pytorch bench
for r in 1 2; do
  for sec in train sample; do
    $OLD/cvae-bench --data data/mnist --only $sec > $OUT/ba-0.9.5-$sec-r$r.txt 2>&1
    $NEW/cvae-bench --data data/mnist --only $sec > $OUT/ba-0.9.6-$sec-r$r.txt 2>&1
  done
  stamp before-after train+sample r$r
done
$OLD/cvae-bench --only gemm > $OUT/ba-0.9.5-gemm.txt 2>&1
$NEW/cvae-bench --only gemm > $OUT/ba-0.9.6-gemm.txt 2>&1
stamp before-after gemm
# One thread pinned to one core (core 0 takes this VM's interrupts), both libraries and PyTorch.
for r in 1 2; do
  taskset -c 1 $OLD/cvae-bench --data data/mnist --only train --threads 1 > $OUT/pinned-0.9.5-r$r.txt 2>&1
  taskset -c 1 $NEW/cvae-bench --data data/mnist --only train --threads 1 > $OUT/pinned-0.9.6-r$r.txt 2>&1
  taskset -c 1 $PY docs/perf/pytorch_bench.py --data data/mnist --only train --threads 1 > $OUT/pinned-pytorch-r$r.txt 2>&1
done
stamp pinned
for r in 1 2 3; do
  for t in 1 2; do
    /usr/bin/time -v $NEW/cvae-train --data data/mnist --epochs 10 --threads $t --out /tmp/sit-m.cvae > $OUT/cvae-train-t$t-r$r.txt 2>&1
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 /usr/bin/time -v /usr/bin/python3 docs/perf/pytorch_vae.py data/mnist 10 1 $t > $OUT/pytorch-vae-t$t-r$r.txt 2>&1
  done
  stamp jobs r$r
done
for t in 1 2; do
  /usr/bin/time -v $OLD/cvae-train --data data/mnist --epochs 10 --threads $t --out /tmp/sit-m0.cvae > $OUT/cvae-train-0.9.5-t$t.txt 2>&1
done
stamp end
