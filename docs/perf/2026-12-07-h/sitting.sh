#!/bin/sh
# The 0.9.8 sitting on the AVX2 machine (AMD EPYC, Zen 3, no AVX-512): nothing
# else may run meanwhile. OLD: 0.9.7 built from a worktree (/tmp/wt_base);
# NEW: 0.9.8. AB: ab-gemm.c built against OLD's gemm.c (see its comment);
# STEP_OLD, STEP_NEW: docs/perf/2026-12-07-c/step-probe.c on each library.
set -u
OUT=/work/main/docs/perf/2026-12-07-h
OLD=/tmp/wt_base/build/bin
NEW=/work/main/build/bin
AB=/tmp/p/ab097
STEP_OLD=/tmp/p/step_097
STEP_NEW=/tmp/p/step_098
PY="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 /usr/bin/python3"
mkdir -p $OUT
cd /work/main
lscpu > $OUT/lscpu.txt
{ echo "0.9.8: $(git log --oneline -1)"; echo "0.9.7: $(git -C /tmp/wt_base log --oneline -1)"; } > $OUT/commits.txt
stamp() { echo "$(date -u +%H:%M:%S) $*" >> $OUT/timeline.txt; }
stamp start
$NEW/cvae-bench --data data/mnist > $OUT/cvae-bench.txt 2>&1; stamp full bench
$PY docs/perf/pytorch_bench.py --data data/mnist > $OUT/pytorch-bench.txt 2>&1; stamp pytorch bench
for r in 1 2; do
  for t in 1 2; do $AB $t 25 > $OUT/ab-gemm-t$t-r$r.txt 2>&1; done
done
stamp ab-gemm
for t in 1 2; do
  for i in 1 2 3 4 5 6 7 8; do echo "$($STEP_OLD $t 40) $($STEP_NEW $t 40)"; done > $OUT/step-pairs-t$t.txt 2>&1
done
stamp step pairs
for sec in train gemm sample; do
  $OLD/cvae-bench --data data/mnist --only $sec > $OUT/ba-0.9.7-$sec.txt 2>&1
  $NEW/cvae-bench --data data/mnist --only $sec > $OUT/ba-0.9.8-$sec.txt 2>&1
done
stamp before-after
taskset -c 1 $NEW/cvae-bench --data data/mnist --only train --threads 1 > $OUT/pinned-0.9.8.txt 2>&1
taskset -c 1 $PY docs/perf/pytorch_bench.py --data data/mnist --only train --threads 1 > $OUT/pinned-pytorch.txt 2>&1
stamp pinned
for t in 1 2; do
  /usr/bin/time -v $NEW/cvae-train --data data/mnist --epochs 10 --threads $t --out /tmp/sit-m.cvae > $OUT/cvae-train-t$t.txt 2>&1
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 /usr/bin/time -v /usr/bin/python3 docs/perf/pytorch_vae.py data/mnist 10 1 $t > $OUT/pytorch-vae-t$t.txt 2>&1
done
stamp end
