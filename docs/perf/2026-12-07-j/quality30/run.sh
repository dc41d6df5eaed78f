#!/bin/sh
# The README's and EVALUATION.md's 30-epoch figures, measured again with 0.9.9:
# the classifier, then seeds 1, 2, 3 and 9 of the default recipe for 30 epochs
# (2 threads: the same bits as 1), each judged by cvae-eval --classifier.
# Seed 1 adds the IWAE bound on 1,000 test digits, as 0.9.0's table did.
# Run from the top of the tree after `make examples data`; outputs go to $OUT.
set -e
OUT=${OUT:-docs/perf/2026-12-07-j/quality30}
W=${W:-/tmp/q30}
mkdir -p "$W"
B=build/bin
/usr/bin/time -f "classifier %e s" $B/cvae-classify train --data data/mnist --out $W/classifier.bin \
    > $OUT/classifier.txt 2>&1
for s in 1 2 3 9; do
    /usr/bin/time -f "train seed $s %e s" $B/cvae-train --data data/mnist --epochs 30 --seed $s \
        --threads 2 --out $W/s$s.cvae --log $OUT/seed$s.csv > $OUT/train-seed$s.txt 2>&1
    iw=0; [ $s = 1 ] && iw=1000
    /usr/bin/time -f "eval seed $s %e s" $B/cvae-eval --model $W/s$s.cvae --data data/mnist \
        --classifier $W/classifier.bin --iwae $iw --iwae-images 1000 --threads 2 \
        > $OUT/eval-seed$s.txt 2>&1
done
# The conditional preset, 10 epochs, seed 1 (README, EVALUATION.md).
/usr/bin/time -f "train conditional %e s" $B/cvae-train --data data/mnist --epochs 10 --conditional \
    --seed 1 --threads 2 --out $W/cond.cvae > $OUT/train-conditional.txt 2>&1
/usr/bin/time -f "eval conditional %e s" $B/cvae-eval --model $W/cond.cvae --data data/mnist \
    --classifier $W/classifier.bin --iwae 0 --threads 2 > $OUT/eval-conditional.txt 2>&1
