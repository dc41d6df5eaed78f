#!/bin/sh
# check_tile.sh GEMM_OBJECT [SANFLAGS [OPT]] - the multiply's register tiles,
# as the compiler emitted them (lib/gemm_kernel.h). AVX-512: tile_avx512
# (8 x 32) must hold its 16 accumulators in zmm registers, that is 16 512-bit
# FMAs per step of its k loop and no access to the stack anywhere in the
# function, and tile_avx512n (8 x 16) its 8; likewise tile_c_avx512 and
# tile_c_avx512n, which write their block of C themselves. AVX2: tile_avx2
# and tile_c_avx2 (6 x 16, the k loop unrolled 4 times) 12 256-bit FMAs per
# step on ymm registers, its edge tiles tile_r4_avx2 and tile_c_r4_avx2
# (4 x 16) 8 and tile_n1_avx2 (6 x 8) 6, and no stack access inside their k
# loops (pointers may be kept on the stack around them: clang does, and gcc
# for the write-back). A compiler that spills part of the tile runs the
# multiply at half speed without failing any other test.
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

# check NAME ACCUMULATORS REG [loop]: the function's FMAs on REG (zmm or ymm)
# registers (from any unrolling, at least one k step's worth), and no stack
# access in the whole function, or with `loop` in its k loops: the
# instructions from the target of each conditional backward jump to that
# jump, where they hold an FMA (an unrolled loop and its remainder).
check() {
    # gcc may name a specialised copy tile_avx2.constprop.0 and so on
    awk -v f="<$1([.][a-z]+[.][0-9]+)*>:$" '$0 ~ f { on = 1; next } on && /^$/ { exit } on' \
        "$tmp/dis" > "$tmp/$1"
    fmas=$(grep -c "vfmadd[0-9]*ps .*%$3" "$tmp/$1" || true)
    where="anywhere"
    body="$tmp/$1"
    if [ "${4:-}" = loop ]; then
        where="in its k loops"
        awk 'function hex(h,   n, k) { # mawk has no strtonum
                 n = 0
                 for (k = 1; k <= length(h); k++)
                     n = n * 16 + index("0123456789abcdef", substr(h, k, 1)) - 1
                 return n
             }
             { a = $1; sub(/:$/, "", a); addr[NR] = hex(a); line[NR] = $0 }
             END {
                 for (i = 1; i <= NR; i++) {
                     if (line[i] !~ /\tj[a-z]+ +[0-9a-f]+ </ || line[i] ~ /\tjmp /)
                         continue
                     split(line[i], f, /\tj[a-z]+ +/); split(f[2], t, " ")
                     to = hex(t[1])
                     if (to >= addr[i])
                         continue
                     fma = 0
                     for (k = 1; k <= i; k++)
                         if (addr[k] >= to && line[k] ~ /vfmadd/)
                             fma = 1
                     if (fma)
                         for (k = 1; k <= i; k++)
                             if (addr[k] >= to)
                                 print line[k]
                 }
             }' "$tmp/$1" > "$tmp/$1.loop"
        [ -s "$tmp/$1.loop" ] || fail "$1: no k loop found (no backward jump over an FMA)"
        body="$tmp/$1.loop"
    fi
    stack=$(grep -c '(%rsp)\|(%rbp)' "$body" || true)
    [ "$fmas" -ge "$2" ] && [ $((fmas % $2)) -eq 0 ] ||
        fail "$1 has $fmas FMAs on $3 registers, expected a multiple of $2 (one per accumulator per k step)"
    [ "$stack" -eq 0 ] || fail "$1 touches the stack $stack times $where: part of the tile spilled"
    say "$1: $fmas FMAs on $3 registers, no stack access $where"
}
check tile_avx512 16 zmm
check tile_avx512n 8 zmm
# The same tiles in the form that writes its block of C itself.
check tile_c_avx512 16 zmm
check tile_c_avx512n 8 zmm
check tile_avx2 12 ymm loop
check tile_c_avx2 12 ymm loop
# Its edge tiles: 4 rows (8 accumulators) and one vector (6).
check tile_r4_avx2 8 ymm loop
check tile_c_r4_avx2 8 ymm loop
check tile_n1_avx2 6 ymm loop
