#!/bin/sh
# 0.9.8 against 0.9.9 on the same Zen 4 machine, then 0.9.9 against PyTorch;
# nothing else may run meanwhile. OLD: 0.9.8 built in a worktree (/tmp/wt_old,
# 66354da); NEW: 0.9.9. The probes (built against each library with
# gcc -O2 -fopenmp -Iinclude X.c LIB -lm): samp.c of 2026-12-07-f (64 samples),
# mlp-probe.c here (the MLP VAE's step), step-probe-mnist.c of 2026-12-07-i.
set -u
OUT=/work/main/docs/perf/2026-12-07-i/0.9.9
OLD=/tmp/wt_old/build/bin
NEW=/work/main/build/bin
P=/tmp/p
PY="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 /usr/bin/python3"
cd /work/main
{ echo "0.9.9: $(git log --oneline -1)"; echo "0.9.8: $(git -C /tmp/wt_old log --oneline -1)"; } > $OUT/commits.txt
stamp() { echo "$(date -u +%H:%M:%S) $*" >> $OUT/timeline.txt; }
stamp start
for r in 1 2; do
  for sec in train sample; do
    $OLD/cvae-bench --data data/mnist --only $sec > $OUT/ba-0.9.8-$sec-r$r.txt 2>&1
    $NEW/cvae-bench --data data/mnist --only $sec > $OUT/ba-0.9.9-$sec-r$r.txt 2>&1
  done
done
stamp before-after
for t in 1 2; do
  for i in 1 2 3 4 5 6 7 8; do
    echo "$($P/samp_old $t 30 | awk '{print $3}') $($P/samp_new $t 30 | awk '{print $3}')"
  done > $OUT/samp-pairs-t$t.txt
  for i in 1 2 3 4 5 6; do
    echo "$($P/mlp_old $t 150 1) $($P/mlp_new $t 150 1)"
  done > $OUT/mlp-pairs-t$t.txt
done
stamp probe pairs
$PY docs/perf/pytorch_bench.py --data data/mnist > $OUT/pytorch-bench.txt 2>&1
$NEW/cvae-bench --data data/mnist > $OUT/cvae-bench.txt 2>&1
stamp full benches
for t in 1 2; do
  /usr/bin/time -v $NEW/cvae-train --data data/mnist --epochs 10 --threads $t --out /tmp/sit-m.cvae > $OUT/cvae-train-t$t.txt 2>&1
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 /usr/bin/time -v /usr/bin/python3 docs/perf/pytorch_vae.py data/mnist 10 1 $t > $OUT/pytorch-vae-t$t.txt 2>&1
done
stamp end
