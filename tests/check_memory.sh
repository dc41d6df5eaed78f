#!/bin/sh
# check_memory.sh BUILD_DIR DATA_DIR - issue 14's memory bound: cvae-train
# with its defaults (the seed model, batch 128, the running average) on the
# MNIST files in DATA_DIR, 2 threads, must peak at or below 64 MB (10^6
# bytes) of resident memory, as the program itself reports it. One epoch
# peaks where ten do: everything is allocated before the first step and a
# step allocates nothing (tests/test_noalloc.c). Run by `make check` when
# data/mnist exists, except in sanitizer builds, whose shadow memory is not
# the library's.
set -eu
b=$1
data=$2
limit=64.0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT PIPE TERM

"$b/bin/cvae-train" --data "$data" --epochs 1 --threads 2 --out "$tmp/m.cvae" > "$tmp/out" ||
    { cat "$tmp/out"; echo "check_memory: cvae-train failed" >&2; exit 1; }
peak=$(sed -n 's/^peak memory \([0-9.]*\) MB.*/\1/p' "$tmp/out")
[ -n "$peak" ] || { cat "$tmp/out"; echo "check_memory: cvae-train printed no peak memory" >&2; exit 1; }
if awk -v p="$peak" -v l="$limit" 'BEGIN { exit !(p <= l) }'; then
    echo "check_memory: cvae-train, 1 epoch of MNIST on 2 threads: peak memory $peak MB (bound $limit MB)"
else
    echo "check_memory: cvae-train peaked at $peak MB, above the bound of $limit MB" >&2
    exit 1
fi
