#!/bin/sh
# get-mnist.sh DEST [SRC] - puts the four uncompressed MNIST IDX files in DEST.
# From SRC when given (plain or .gz files), otherwise downloaded from the
# public MNIST mirrors with curl or wget and checked against their md5 sums.
set -eu
dest=$1
src=${2:-}
files="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"
mirrors="https://storage.googleapis.com/cvdf-datasets/mnist https://ossci-datasets.s3.amazonaws.com/mnist http://yann.lecun.com/exdb/mnist"

md5_of() { # the published md5 of each .gz
    case $1 in
    train-images-idx3-ubyte) echo f68b3c2dcbeaaa9fbdd348bbdeb94873 ;;
    train-labels-idx1-ubyte) echo d53e105ee54ea40749a09fcbcd1e9432 ;;
    t10k-images-idx3-ubyte) echo 9fb629c4189551a2d022fa330f9573f3 ;;
    t10k-labels-idx1-ubyte) echo ec29112dd5afa0611ce80d1b7f02629c ;;
    esac
}

fetch() { # fetch URL FILE
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --connect-timeout 10 --retry 1 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -T 10 -t 2 -O "$2" "$1"
    else
        echo "get-mnist: neither curl nor wget is installed" >&2
        return 1
    fi
}

offline_help() {
    echo "get-mnist: could not download $1 from any MNIST mirror." >&2
    echo "Put the four files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz," >&2
    echo "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, plain or gzipped) in a" >&2
    echo "directory and run: make data MNIST_DIR=/that/directory" >&2
    exit 1
}

mkdir -p "$dest"
for f in $files; do
    [ -s "$dest/$f" ] && continue
    if [ -n "$src" ]; then
        if [ -f "$src/$f" ]; then
            cp "$src/$f" "$dest/$f.part"
        elif [ -f "$src/$f.gz" ]; then
            gunzip -c "$src/$f.gz" > "$dest/$f.part"
        else
            echo "get-mnist: $src has neither $f nor $f.gz" >&2
            exit 1
        fi
    else
        got=""
        for m in $mirrors; do
            if fetch "$m/$f.gz" "$dest/$f.gz.part" 2>/dev/null &&
                [ "$(md5sum "$dest/$f.gz.part" | cut -d' ' -f1)" = "$(md5_of $f)" ]; then
                got=yes
                break
            fi
        done
        if [ -z "$got" ]; then
            rm -f "$dest/$f.gz.part"
            offline_help "$f.gz"
        fi
        gunzip -c "$dest/$f.gz.part" > "$dest/$f.part"
        rm -f "$dest/$f.gz.part"
    fi
    mv "$dest/$f.part" "$dest/$f"
    echo "get-mnist: $dest/$f"
done
