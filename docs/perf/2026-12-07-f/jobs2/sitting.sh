#!/bin/sh
# A second sitting of whole jobs (0.9.6, 0.9.5, PyTorch), nothing else running.
set -u
OUT=/work/main/docs/perf/2026-12-07-f/jobs2
OLD=/tmp/wt_base/build/bin
NEW=/work/main/build/bin
mkdir -p $OUT
cd /work/main
stamp() { echo "$(date -u +%H:%M:%S) $*" >> $OUT/timeline.txt; }
stamp start
for r in 1 2 3; do
  for t in 1 2; do
    /usr/bin/time -v $NEW/cvae-train --data data/mnist --epochs 10 --threads $t --out /tmp/sit-m.cvae > $OUT/cvae-train-t$t-r$r.txt 2>&1
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 /usr/bin/time -v /usr/bin/python3 docs/perf/pytorch_vae.py data/mnist 10 1 $t > $OUT/pytorch-vae-t$t-r$r.txt 2>&1
    if [ $r -ne 2 ]; then
      /usr/bin/time -v $OLD/cvae-train --data data/mnist --epochs 10 --threads $t --out /tmp/sit-m0.cvae > $OUT/cvae-train-0.9.5-t$t-r$r.txt 2>&1
    fi
  done
  stamp jobs r$r
done
stamp end
