#!/bin/sh
# check_programs.sh BUILD_DIR - the example programs (and cvae-bench) on data
# sets made here with the shell alone:
#  - a small valid IDX set (512 training and 256 test images of 28 x 28 with
#    labels): a tiny VAE and a classifier train on it, and the programs that
#    read a model or a classifier run on it; cvae-train's --weight-decay
#    changes the run and a resumed checkpoint keeps it; --average saves the
#    running average and a resumed run is bit for bit a straight one;
#  - the same images without label files: an unconditional model trains;
#  - damaged copies (a labels file with one label too few, or with a label of
#    200; the training split's or the test split's): every program that
#    reads the damaged file must exit with status 1 and say on stderr which
#    file is damaged and how, before it trains, measures or writes anything,
#    whether or not it needs the labels itself;
#  - CIFAR-10 batches with a label byte of 10 or 200, likewise refused.
set -eu
b=$1
bin=$b/bin
fail() { echo "check_programs: $*" >&2; exit 1; }
export LC_ALL=C

for p in cvae-train cvae-eval cvae-reconstruct cvae-interpolate cvae-classify cvae-tune cvae-bench; do
    [ -x "$bin/$p" ] || fail "$bin/$p is missing (build first: make B=$b all)"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A signal ends the script through exit, so the EXIT trap still cleans up.
trap 'exit 1' HUP INT PIPE TERM
start=$(date +%s)
cases=0

# ------------------------------------------------------------ data sets

# The byte of value $1 (0..255): printf's format holds its octal escape.
# shellcheck disable=SC2059
byte() { printf "\\$(printf %03o "$1")"; }

# A big-endian 32-bit integer.
be32() { byte $(($1 >> 24 & 255)); byte $(($1 >> 16 & 255)); byte $(($1 >> 8 & 255)); byte $(($1 & 255)); }

# repeat FILE N OUT: the first N bytes of FILE's content repeated, into OUT.
repeat() {
    cp "$1" "$tmp/rep"
    while [ "$(wc -c < "$tmp/rep")" -lt "$2" ]; do
        cat "$tmp/rep" "$tmp/rep" > "$tmp/rep2"
        mv "$tmp/rep2" "$tmp/rep"
    done
    dd if="$tmp/rep" of="$3" bs="$2" count=1 2> /dev/null
    rm -f "$tmp/rep"
    [ "$(wc -c < "$3")" -eq "$2" ] || fail "could not write $2 bytes to $3"
}

# images FILE COUNT: an IDX file of COUNT 28 x 28 images. The pixels repeat a
# pattern of 13 bytes, so consecutive images differ (784 = 60 x 13 + 4).
images() {
    printf '\000\000\010\003' > "$1"
    { be32 "$2"; be32 28; be32 28; } >> "$1"
    printf '\000\000\040\200\377\377\340\200\040\000\000\000\000' > "$tmp/pattern"
    repeat "$tmp/pattern" $(($2 * 784)) "$tmp/pixels"
    cat "$tmp/pixels" >> "$1"
}

# labels FILE COUNT: an IDX labels file of COUNT labels 0, 1, ..., 9, 0, 1, ...
labels() {
    printf '\000\000\010\001' > "$1"
    be32 "$2" >> "$1"
    printf '\000\001\002\003\004\005\006\007\010\011' > "$tmp/pattern"
    repeat "$tmp/pattern" "$2" "$tmp/body"
    cat "$tmp/body" >> "$1"
}

# poke FILE OFFSET VALUE: the byte at OFFSET becomes VALUE.
poke() { byte "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc 2> /dev/null; }

good=$tmp/good
mkdir "$good"
images "$good/train-images-idx3-ubyte" 512
labels "$good/train-labels-idx1-ubyte" 512
images "$good/t10k-images-idx3-ubyte" 256
labels "$good/t10k-labels-idx1-ubyte" 256

# Damaged copies: d-SPLIT-count (one label too few), d-SPLIT-value (label
# number 100 is 200: past the 8-byte header).
for split in train t10k; do
    n=512
    [ $split = train ] || n=256
    for damage in count value; do
        d=$tmp/d-$split-$damage
        mkdir "$d"
        cp "$good"/* "$d"/
    done
    labels "$tmp/d-$split-count/$split-labels-idx1-ubyte" $((n - 1))
    poke "$tmp/d-$split-value/$split-labels-idx1-ubyte" $((8 + 100)) 200
done
cmp -s "$good/train-images-idx3-ubyte" "$tmp/d-train-value/train-images-idx3-ubyte" \
    || fail "the damaged copies' images differ"

nolabels=$tmp/nolabels
mkdir "$nolabels"
cp "$good/train-images-idx3-ubyte" "$good/t10k-images-idx3-ubyte" "$nolabels"/

# CIFAR-10: records of a label byte and 3 x 32 x 32 pixels; 2 training and 2
# test records, then a label 10 in the training batch and a 200 in the test.
printf '\000\100\200\300' > "$tmp/pattern"
repeat "$tmp/pattern" 3072 "$tmp/rgb"
cifar=$tmp/cifar
mkdir "$cifar"
{ byte 3; cat "$tmp/rgb"; byte 7; cat "$tmp/rgb"; } > "$cifar/data_batch_1.bin"
{ byte 0; cat "$tmp/rgb"; byte 9; cat "$tmp/rgb"; } > "$cifar/test_batch.bin"
mkdir "$tmp/cifar-train" "$tmp/cifar-test"
cp "$cifar"/* "$tmp/cifar-train"/
cp "$cifar"/* "$tmp/cifar-test"/
poke "$tmp/cifar-train/data_batch_1.bin" 3073 10
poke "$tmp/cifar-test/test_batch.bin" 0 200

# ------------------------------------------------------------ helpers

# runs WHAT COMMAND...: COMMAND must exit 0.
runs() {
    what=$1
    shift
    status=0
    "$@" > "$tmp/stdout" 2> "$tmp/stderr" || status=$?
    if [ $status -ne 0 ]; then
        cat "$tmp/stdout" "$tmp/stderr" >&2
        fail "$what: exit status $status, expected 0 (output above)"
    fi
    cases=$((cases + 1))
}

# Whatever the programs must not write when they refuse the data.
never=$tmp/never

# refuses WHAT MESSAGE COMMAND...: COMMAND must exit 1, say MESSAGE (a fixed
# string) on stderr and leave $never unwritten.
refuses() {
    what=$1
    msg=$2
    shift 2
    rm -rf "$never"
    status=0
    "$@" > "$tmp/stdout" 2> "$tmp/stderr" || status=$?
    if [ $status -ne 1 ]; then
        cat "$tmp/stderr" >&2
        fail "$what: exit status $status, expected 1 (stderr above)"
    fi
    if ! grep -F -q -e "$msg" "$tmp/stderr"; then
        cat "$tmp/stderr" >&2
        fail "$what: stderr (above) does not say: $msg"
    fi
    [ ! -e "$never" ] || fail "$what: wrote $never before refusing the data"
    cases=$((cases + 1))
}

# The message of each damage: the file's path, then the problem.
problem() { # DIR SPLIT DAMAGE
    n=512
    [ "$2" = train ] || n=256
    if [ "$3" = count ]; then
        echo "$1/$2-labels-idx1-ubyte: $((n - 1)) labels for $n images"
    else
        echo "$1/$2-labels-idx1-ubyte: label 100 is 200, expected 0..9"
    fi
}

tiny="--epochs 1 --batch 64 --latent 2 --width 4 --hidden 16 --threads 1"

# ------------------------------------------------------------ valid data

model=$tmp/model.cvae
clf=$tmp/clf.bin
# shellcheck disable=SC2086
runs "cvae-train on the valid set" "$bin/cvae-train" --data "$good" $tiny --out "$model"
[ -s "$model" ] || fail "cvae-train wrote no $model"
# --weight-decay reaches the optimizer, and a checkpoint keeps it: resuming
# without the flag is resuming with it; 0 given again changes the run.
# shellcheck disable=SC2086
runs "cvae-train --weight-decay" "$bin/cvae-train" --data "$good" $tiny --weight-decay 0.5 \
    --out "$tmp/wd1.cvae"
cmp -s "$model" "$tmp/wd1.cvae" && fail "cvae-train --weight-decay 0.5 trained what no decay trains"
tiny2=$(echo "$tiny" | sed 's/--epochs 1/--epochs 2/')
for wd in kept 0.5 0; do
    flag=""
    [ "$wd" = kept ] || flag="--weight-decay $wd"
    # shellcheck disable=SC2086
    runs "cvae-train --resume (weight decay $wd)" "$bin/cvae-train" --data "$good" $tiny2 \
        --resume "$tmp/wd1.cvae" $flag --out "$tmp/wd2-$wd.cvae"
done
cmp -s "$tmp/wd2-kept.cvae" "$tmp/wd2-0.5.cvae" || fail "a resumed run lost the checkpoint's weight decay"
cmp -s "$tmp/wd2-0.5.cvae" "$tmp/wd2-0.cvae" && fail "--weight-decay 0 on resume changed nothing"
status=0
"$bin/cvae-train" --data "$good" --weight-decay -1 > /dev/null 2> "$tmp/stderr" || status=$?
[ "$status" -eq 2 ] && grep -q -- "--weight-decay" "$tmp/stderr" ||
    fail "cvae-train --weight-decay -1: status $status, $(cat "$tmp/stderr")"
cases=$((cases + 1))
# --average (default 0.99): the checkpoint is format version 5 with the running
# average swapped into the model; 0 trains the same weights but saves the
# last ones (another file, of an older version); two epochs straight are bit
# for bit one epoch, then a resumed one (the resume swaps the training
# weights back before its first step).
version() { od -An -tu4 -j8 -N4 "$1" | tr -d ' '; }
[ "$(version "$model")" = 5 ] || fail "cvae-train's default checkpoint is version $(version "$model"), not 5"
# shellcheck disable=SC2086
runs "cvae-train --average 0" "$bin/cvae-train" --data "$good" $tiny --average 0 --out "$tmp/avg0.cvae"
[ "$(version "$tmp/avg0.cvae")" -lt 5 ] || fail "cvae-train --average 0 wrote a version-5 file"
cmp -s "$model" "$tmp/avg0.cvae" && fail "cvae-train saved the same model with and without --average"
# shellcheck disable=SC2086
runs "cvae-train, 2 epochs" "$bin/cvae-train" --data "$good" $tiny2 --out "$tmp/avg-straight.cvae"
# shellcheck disable=SC2086
runs "cvae-train --resume, epoch 2" "$bin/cvae-train" --data "$good" $tiny2 --resume "$model" \
    --out "$tmp/avg-resumed.cvae"
cmp -s "$tmp/avg-straight.cvae" "$tmp/avg-resumed.cvae" ||
    fail "a resumed run with the running average differs from the straight run"
# Nothing left to train: the checkpoint written at the start is the one resumed.
# shellcheck disable=SC2086
runs "cvae-train --resume, nothing to do" "$bin/cvae-train" --data "$good" $tiny --resume "$model" \
    --out "$tmp/avg-same.cvae"
cmp -s "$model" "$tmp/avg-same.cvae" || fail "resuming a finished run rewrote its model otherwise"
for bad in 1 -0.1 nan; do
    status=0
    "$bin/cvae-train" --data "$good" --average "$bad" > /dev/null 2> "$tmp/stderr" || status=$?
    [ "$status" -eq 2 ] && grep -q -- "--average" "$tmp/stderr" ||
        fail "cvae-train --average $bad: status $status, $(cat "$tmp/stderr")"
    cases=$((cases + 1))
done
runs "cvae-classify train on the valid set" \
    "$bin/cvae-classify" train --data "$good" --epochs 1 --batch 64 --threads 1 --out "$clf"
[ -s "$clf" ] || fail "cvae-classify wrote no $clf"
grep -q "test accuracy" "$tmp/stdout" || fail "cvae-classify train printed no test accuracy"
runs "cvae-classify test on the valid set" "$bin/cvae-classify" test --data "$good" --model "$clf" --threads 1
runs "cvae-eval on the valid set" "$bin/cvae-eval" --model "$model" --data "$good" --classifier "$clf" \
    --iwae 2 --iwae-images 16 --samples 20 --knn 3 --threads 1
runs "cvae-reconstruct on the valid set" "$bin/cvae-reconstruct" --model "$model" --data "$good" \
    --out "$tmp/recon.png"
runs "cvae-interpolate on the valid set" "$bin/cvae-interpolate" --model "$model" --data "$good" \
    --pairs 2 --steps 3 --out "$tmp/interp.png"
# Labels are not needed for an unconditional model: without label files, it trains.
# shellcheck disable=SC2086
runs "cvae-train on images without label files" "$bin/cvae-train" --data "$nolabels" $tiny \
    --out "$tmp/nolabels.cvae"
# shellcheck disable=SC2086
refuses "cvae-train --conditional without label files" \
    "$nolabels/train-labels-idx1-ubyte: cannot open" \
    "$bin/cvae-train" --data "$nolabels" $tiny --conditional --out "$never"

# ------------------------------------------------------------ damaged data

for split in train t10k; do
    for damage in count value; do
        d=$tmp/d-$split-$damage
        msg=$(problem "$d" $split $damage)
        on="$split labels, $damage"
        # Programs that read both splits.
        # shellcheck disable=SC2086
        refuses "cvae-train ($on)" "$msg" "$bin/cvae-train" --data "$d" $tiny --out "$never"
        # shellcheck disable=SC2086
        refuses "cvae-train --conditional ($on)" "$msg" \
            "$bin/cvae-train" --data "$d" $tiny --conditional --out "$never"
        refuses "cvae-eval ($on)" "$msg" "$bin/cvae-eval" --model "$model" --data "$d" --threads 1
        refuses "cvae-classify train ($on)" "$msg" \
            "$bin/cvae-classify" train --data "$d" --epochs 1 --threads 1 --out "$never"
        if [ $split = train ]; then
            # Programs that read the training split only.
            refuses "cvae-tune ($on)" "$msg" "$bin/cvae-tune" --data "$d" --trials 1 \
                --validation 64 --max-epochs 1 --rungs 1 --threads 1 --out "$never"
            refuses "cvae-bench --only train ($on)" "$msg" \
                "$bin/cvae-bench" --data "$d" --quick --only train --threads 1
        else
            # Programs that read the test split only.
            refuses "cvae-reconstruct ($on)" "$msg" \
                "$bin/cvae-reconstruct" --model "$model" --data "$d" --out "$never"
            refuses "cvae-interpolate ($on)" "$msg" \
                "$bin/cvae-interpolate" --model "$model" --data "$d" --out "$never"
            refuses "cvae-classify test ($on)" "$msg" \
                "$bin/cvae-classify" test --model "$clf" --data "$d" --threads 1
            refuses "cvae-bench --only sample ($on)" "$msg" \
                "$bin/cvae-bench" --data "$d" --quick --only sample --threads 1
        fi
    done
done

# CIFAR-10: the label byte is in every record; the loader checks each.
cifar_train_msg="$tmp/cifar-train/data_batch_1.bin: record 1 has label 10, expected 0..9"
cifar_test_msg="$tmp/cifar-test/test_batch.bin: record 0 has label 200, expected 0..9"
# shellcheck disable=SC2086
refuses "cvae-train --format cifar10 (training label 10)" "$cifar_train_msg" \
    "$bin/cvae-train" --format cifar10 --data "$tmp/cifar-train" $tiny --out "$never"
# shellcheck disable=SC2086
refuses "cvae-train --format cifar10 (test label 200)" "$cifar_test_msg" \
    "$bin/cvae-train" --format cifar10 --data "$tmp/cifar-test" $tiny --out "$never"
refuses "cvae-tune --format cifar10 (training label 10)" "$cifar_train_msg" \
    "$bin/cvae-tune" --format cifar10 --data "$tmp/cifar-train" --trials 1 --validation 1 \
    --max-epochs 1 --rungs 1 --threads 1 --out "$never"

echo "check_programs: $cases cases passed ($(($(date +%s) - start)) s)"
