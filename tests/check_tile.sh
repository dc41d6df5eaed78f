#!/bin/sh
# check_tile.sh GEMM_OBJECT [SANFLAGS [OPT]] - the multiply's AVX-512 register tile,
# as the compiler emitted it (lib/gemm_kernel.h): tile_avx512 (8 x 32) must
# hold its 16 accumulators in zmm registers, that is 16 512-bit FMAs per step
# of its k loop and no access to the stack anywhere in the function, and
# tile_avx512n (8 x 16) its 8; likewise tile_c_avx512 and tile_c_avx512n,
# which write their block of C themselves. A compiler that spills part of the tile runs
# the multiply at half speed without failing any other test.
# Skipped where it cannot apply: not x86-64, no objdump, a sanitizer build or
# one optimised below -O2, or a build without the x86 variants
# (-DCVAE_NO_DISPATCH).
set -eu
obj=$1
sanflags=${2:-}
opt=${3:-}
say() { echo "check_tile: $*"; }
fail() { echo "check_tile: $*" >&2; exit 1; }

[ "$(uname -m)" = x86_64 ] || { say "skipped (not x86-64)"; exit 0; }
command -v objdump > /dev/null 2>&1 || { say "skipped (no objdump)"; exit 0; }
[ -z "$sanflags" ] || { say "skipped (sanitizer build)"; exit 0; }
case " $opt " in
*" -O0 "* | *" -O1 "* | *" -Og "* | *" -O "*) say "skipped (built with $opt)"; exit 0 ;;
esac
[ -f "$obj" ] || fail "$obj is missing"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
objdump -d --no-show-raw-insn "$obj" > "$tmp/dis"
if ! grep -q '<tile_avx512>:' "$tmp/dis"; then
    say "skipped (no AVX-512 variant in $obj: CVAE_NO_DISPATCH or not gcc/clang)"
    exit 0
fi

# check NAME ACCUMULATORS: the function's FMAs on zmm registers (from any
# unrolling, at least one k step's worth), and no stack access.
check() {
    awk -v f="<$1>:" '$0 ~ f { on = 1; next } on && /^$/ { exit } on' "$tmp/dis" > "$tmp/$1"
    fmas=$(grep -c 'vfmadd[0-9]*ps .*%zmm' "$tmp/$1" || true)
    stack=$(grep -c '(%rsp)\|(%rbp)' "$tmp/$1" || true)
    [ "$fmas" -ge "$2" ] && [ $((fmas % $2)) -eq 0 ] ||
        fail "$1 has $fmas 512-bit FMAs, expected a multiple of $2 (one per accumulator per k step)"
    [ "$stack" -eq 0 ] || fail "$1 touches the stack $stack times: part of the tile spilled"
    say "$1: $fmas 512-bit FMAs, no stack access"
}
check tile_avx512 16
check tile_avx512n 8
# The same tiles in the form that writes its block of C itself.
check tile_c_avx512 16
check tile_c_avx512n 8
