#!/bin/sh
# check_install.sh MAKE CC SANFLAGS - installs into a temporary DESTDIR, builds
# tests/client/cvae_client.c and the README's C example the way a user would
# (pkg-config --cflags --libs cvae, linking the shared library), runs them, then
# uninstalls and checks that nothing the install wrote is left behind.
set -eu
make=$1
cc=$2
sanflags=${3:-}
fail() { echo "check_install: $*" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/root
prefix=/usr/local

$make -s install DESTDIR="$dest" PREFIX=$prefix >/dev/null
for f in include/cvae.h lib/libcvae.a lib/libcvae.so lib/libcvae.so.0 lib/pkgconfig/cvae.pc; do
    [ -e "$dest$prefix/$f" ] || fail "install did not write $prefix/$f"
done

export PKG_CONFIG_PATH="$dest$prefix/lib/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$dest"
flags=$(pkg-config --cflags --libs cvae) || fail "pkg-config does not find cvae"
pcversion=$(pkg-config --modversion cvae)
echo "check_install: pkg-config --cflags --libs cvae: $flags (version $pcversion)"
# shellcheck disable=SC2086
$cc -std=c99 -Wall -Wextra -Wpedantic -Werror $sanflags tests/client/cvae_client.c -o "$tmp/client" $flags \
    || fail "the client does not compile and link against the installed library"
out=$(LD_LIBRARY_PATH="$dest$prefix/lib" "$tmp/client") || fail "the client failed: $out"
echo "check_install: client says: $out"
case "$out" in
*"library $pcversion"*) ;;
*) fail "client output does not report library version $pcversion" ;;
esac
LD_LIBRARY_PATH="$dest$prefix/lib" ldd "$tmp/client" | grep -q "$dest$prefix/lib/libcvae.so.0" \
    || fail "the client is not linked against the installed shared library"

# The README's example, built the way the README says.
sed -n '/^```c$/,/^```$/p' README.md | sed '1d;$d' > "$tmp/readme_example.c"
[ -s "$tmp/readme_example.c" ] || fail "README.md has no C example"
# shellcheck disable=SC2086
$cc -std=c99 -Wall -Wextra -Wpedantic -Werror $sanflags "$tmp/readme_example.c" -o "$tmp/readme_example" $flags \
    || fail "the README's example does not compile"
if [ -f data/mnist/train-images-idx3-ubyte ]; then
    (cd "$tmp" && ln -s "$OLDPWD/data" data && LD_LIBRARY_PATH="$dest$prefix/lib" ./readme_example) \
        >/dev/null || fail "the README's example fails"
    [ -s "$tmp/samples.png" ] || fail "the README's example wrote no samples.png"
    echo "check_install: README example builds and runs"
else
    echo "check_install: README example builds (not run: no data/mnist; run make data)"
fi

$make -s uninstall DESTDIR="$dest" PREFIX=$prefix >/dev/null
left=$(find "$dest" -type f -o -type l)
[ -z "$left" ] || fail "uninstall left: $left"
echo "check_install: install, client build and run, uninstall: ok"
