#!/bin/sh
# The 0.9.7 sitting on an AVX2 machine (AMD EPYC, Zen 3, no AVX-512): nothing
# else may run meanwhile. OLD: 0.9.6 built from a worktree; NEW: 0.9.7.
set -u
OUT=/work/main/docs/perf/2026-12-07-g
OLD=/tmp/wt_base/build/bin
NEW=/work/main/build/bin
VAR=/tmp/wt_exp/build/bin # 0.9.7 with the AVX2 tile 4 x 16 (GK_MR 4): the variant not taken
PY="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 /usr/bin/python3"
mkdir -p $OUT
cd /work/main
lscpu > $OUT/lscpu.txt
{ echo "0.9.7: $(git log --oneline -1)"; echo "0.9.6: $(git -C /tmp/wt_base log --oneline -1)"
  echo "4x16 variant: $(git -C /tmp/wt_exp log --oneline -1) with GK_MR 4 for avx2"; } > $OUT/commits.txt
stamp() { echo "$(date -u +%H:%M:%S) $*" >> $OUT/timeline.txt; }
stamp start
$NEW/cvae-bench --data data/mnist > $OUT/cvae-bench.txt 2>&1; stamp full bench
$PY docs/perf/pytorch_bench.py --data data/mnist > $OUT/pytorch-bench.txt 2>&1; stamp pytorch bench
for r in 1 2; do
  for sec in train gemm sample; do
    $OLD/cvae-bench --data data/mnist --only $sec > $OUT/ba-0.9.6-$sec-r$r.txt 2>&1
    $NEW/cvae-bench --data data/mnist --only $sec > $OUT/ba-0.9.7-$sec-r$r.txt 2>&1
  done
  for sec in train gemm; do
    $VAR/cvae-bench --data data/mnist --only $sec > $OUT/var-4x16-$sec-r$r.txt 2>&1
  done
  stamp before-after r$r
done
# One thread pinned to core 1, both versions and PyTorch.
for r in 1 2; do
  taskset -c 1 $OLD/cvae-bench --data data/mnist --only train --threads 1 > $OUT/pinned-0.9.6-r$r.txt 2>&1
  taskset -c 1 $NEW/cvae-bench --data data/mnist --only train --threads 1 > $OUT/pinned-0.9.7-r$r.txt 2>&1
  taskset -c 1 $PY docs/perf/pytorch_bench.py --data data/mnist --only train --threads 1 > $OUT/pinned-pytorch-r$r.txt 2>&1
done
stamp pinned
for r in 1 2; do
  for t in 1 2; do
    /usr/bin/time -v $NEW/cvae-train --data data/mnist --epochs 10 --threads $t --out /tmp/sit-m.cvae > $OUT/cvae-train-t$t-r$r.txt 2>&1
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 /usr/bin/time -v /usr/bin/python3 docs/perf/pytorch_vae.py data/mnist 10 1 $t > $OUT/pytorch-vae-t$t-r$r.txt 2>&1
  done
  stamp jobs r$r
done
/usr/bin/time -v $OLD/cvae-train --data data/mnist --epochs 10 --threads 1 --out /tmp/sit-m0.cvae > $OUT/cvae-train-0.9.6-t1.txt 2>&1
/usr/bin/time -v $OLD/cvae-train --data data/mnist --epochs 10 --threads 2 --out /tmp/sit-m0.cvae > $OUT/cvae-train-0.9.6-t2.txt 2>&1
stamp end
