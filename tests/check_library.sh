#!/bin/sh
# check_library.sh BUILD_DIR VERSION - checks the shared library's ABI surface:
#  - it exports exactly the functions the header marks CVAE_API (nothing
#    internal, nothing missing), all in a CVAE_ version node; the header is
#    read by BUILD_DIR/tools/header_api (tests/header_api.c), which
#    tokenises it as C does, so any return type and any line wrapping count;
#  - its SONAME is libcvae.so.MAJOR and the symlinks point the right way;
#  - the version the Makefile read from the header is the file's version.
set -eu
b=$1
version=$2
major=${version%%.*}
so=$b/libcvae.so.$version
fail() { echo "check_library: $*" >&2; exit 1; }

[ -f "$so" ] || fail "$so is missing"
[ "$(readlink "$b/libcvae.so.$major")" = "libcvae.so.$version" ] || fail "libcvae.so.$major does not point at libcvae.so.$version"
[ "$(readlink "$b/libcvae.so")" = "libcvae.so.$major" ] || fail "libcvae.so does not point at libcvae.so.$major"

soname=$(readelf -d "$so" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
[ "$soname" = "libcvae.so.$major" ] || fail "SONAME is '$soname', expected libcvae.so.$major"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Defined dynamic symbols, without the version node's own absolute symbol.
nm -D --defined-only "$so" | awk '$2 != "A" { print $3 }' | sort > "$tmp/exported"
if grep -v '^cvae_[a-z0-9_]*@@CVAE_[0-9.]*$' "$tmp/exported" > "$tmp/bad"; then
    cat "$tmp/bad" >&2
    fail "symbols above are exported but are not versioned cvae_ functions"
fi
sed 's/@@.*//' "$tmp/exported" > "$tmp/names"
# Every function declared with CVAE_API in the header.
"$b/tools/header_api" include/cvae.h > "$tmp/api" || fail "cannot read include/cvae.h"
cut -d' ' -f1 "$tmp/api" | sort -u > "$tmp/declared"
if ! cmp -s "$tmp/names" "$tmp/declared"; then
    diff "$tmp/declared" "$tmp/names" >&2 || true
    fail "exports differ from the header's CVAE_API functions (< header, > library)"
fi
echo "check_library: $(wc -l < "$tmp/names") exported functions, all declared, SONAME $soname"
