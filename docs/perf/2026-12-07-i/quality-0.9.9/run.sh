#!/bin/sh
# The README's quality table with 0.9.9 (whose training bits differ from
# 0.9.8's): seeds 1-10 of the default recipe, of --average 0 and of
# --recipe pytorch, 10 epochs each on 2 threads (any thread count gives the
# same bits).
set -u
OUT=/work/main/docs/perf/2026-12-07-i/quality-0.9.9
cd /work/main
for s in 1 2 3 4 5 6 7 8 9 10; do
  build/bin/cvae-train --data data/mnist --epochs 10 --threads 2 --seed $s --out /tmp/q.cvae > $OUT/default-s$s.txt 2>&1
  build/bin/cvae-train --data data/mnist --epochs 10 --threads 2 --seed $s --average 0 --out /tmp/q.cvae > $OUT/average0-s$s.txt 2>&1
  build/bin/cvae-train --data data/mnist --epochs 10 --threads 2 --seed $s --recipe pytorch --out /tmp/q.cvae > $OUT/pytorch-recipe-s$s.txt 2>&1
done
echo done > $OUT/done.txt
