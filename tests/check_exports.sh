#!/bin/sh
# check_exports.sh BUILD_DIR CC LDFLAGS - the export checks, tested:
#  1. header_api (tests/header_api.c) reads a header of awkward declarations
#     (uint64_t, const char *, size_t and struct pointer results, wrapped
#     lines, CVAE_API in comments, strings and macros) exactly right, and
#     refuses a CVAE_API it cannot read;
#  2. check_library.sh fails when the version script leaves out any of a
#     few header functions (one of each kind of return type), and names it;
#  3. a program generated from the header, calling every CVAE_API function
#     once by name, links against the shared library (not libcvae.a) and
#     runs: a function declared but not exported fails here at link time.
# LDFLAGS are those the library was built with (sanitizers, OpenMP).
set -eu
b=$1
cc=$2
ldflags=${3:-}
fail() { echo "check_exports: $*" >&2; exit 1; }
api=$b/tools/header_api
version=$(sed -n 's/^#define CVAE_VERSION_STRING "\(.*\)"/\1/p' include/cvae.h)
so=$b/libcvae.so.$version
[ -x "$api" ] || fail "$api is missing"
[ -f "$so" ] || fail "$so is missing"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- 1. the header reader on awkward declarations
cat > "$tmp/awkward.h" <<'EOF'
/* CVAE_API int cvae_in_comment(void); */
// CVAE_API int cvae_in_line_comment(void);
#define CVAE_API __attribute__((visibility("default")))
#define MULTI(x) \
    CVAE_API int cvae_in_macro(x);
static const char *s = "CVAE_API int cvae_in_string(void);";
CVAE_API uint64_t cvae_a(const cvae_model *m);
CVAE_API const char *cvae_b(void);
CVAE_API size_t
    cvae_c(struct cvae_thing *t,
           const float *const *x, int n);
CVAE_API struct cvae_thing *cvae_d(int (*cb)(void *, int), void *ctx);
CVAE_API cvae_status cvae_e(cvae_layer **out, int a, int b[4], float c, double d);
CVAE_API unsigned long long int cvae_f(void);
CVAE_API void cvae_g(void *p);
CVAE_API int (*cvae_h(int kind))(double);
CVAE_API __attribute__((deprecated)) int64_t cvae_i(const char *path, /* a, b */ int flags);
EOF
"$api" "$tmp/awkward.h" > "$tmp/awkward.out" || fail "header_api cannot read awkward.h"
cat > "$tmp/awkward.want" <<'EOF'
cvae_a 1
cvae_b 0
cvae_c 3
cvae_d 2
cvae_e 5
cvae_f 0
cvae_g 1
cvae_h 1
cvae_i 2
EOF
if ! cmp -s "$tmp/awkward.out" "$tmp/awkward.want"; then
    diff "$tmp/awkward.want" "$tmp/awkward.out" >&2 || true
    fail "header_api misread awkward.h (< expected, > read)"
fi
printf 'CVAE_API int;\n' > "$tmp/broken.h"
if "$api" "$tmp/broken.h" > /dev/null 2>&1; then
    fail "header_api accepted a CVAE_API it cannot read"
fi
echo "check_exports: header_api reads 9 awkward declarations right and refuses a broken one"

# ---- 2. check_library.sh fails on a version script that omits a function
"$api" include/cvae.h > "$tmp/api" || fail "header_api cannot read include/cvae.h"
count=$(wc -l < "$tmp/api")
# One function of each kind of result: uint64_t, const char *, cvae_status
# on a wrapped declaration, size_t, void.
for omit in cvae_model_steps cvae_version_string cvae_layer_create_conv2d cvae_model_param_count \
    cvae_model_destroy; do
    grep -q "^$omit " "$tmp/api" || fail "$omit is not in the header any more: update this test"
    grep -q "^ *$omit;" lib/libcvae.map || fail "$omit is not in lib/libcvae.map"
    fake=$tmp/fake-$omit
    mkdir -p "$fake/tools"
    ln -s "$(cd "$b" && pwd)/tools/header_api" "$fake/tools/header_api"
    grep -v "^ *$omit;" lib/libcvae.map > "$fake/libcvae.map"
    # shellcheck disable=SC2086
    $cc -shared -Wl,-soname,libcvae.so.${version%%.*} -Wl,--version-script="$fake/libcvae.map" \
        $ldflags -o "$fake/libcvae.so.$version" "$b"/obj/lib/*.o -lm ||
        fail "cannot link a library without $omit"
    ln -s "libcvae.so.$version" "$fake/libcvae.so.${version%%.*}"
    ln -s "libcvae.so.${version%%.*}" "$fake/libcvae.so"
    if sh tests/check_library.sh "$fake" "$version" > "$tmp/out" 2>&1; then
        cat "$tmp/out" >&2
        fail "check_library.sh passed a library that does not export $omit"
    fi
    grep -q "^< $omit\$" "$tmp/out" || { cat "$tmp/out" >&2; fail "check_library.sh did not name $omit"; }
done
echo "check_exports: check_library.sh refuses a version script without any of 5 functions"

# ---- 3. every header function, called by name through the shared library
"$api" --calls include/cvae.h > "$tmp/calls.c" || fail "header_api cannot generate the calls"
[ "$(grep -c '    calls++;' "$tmp/calls.c")" -eq "$count" ] || fail "the generated program misses functions"
# The library itself by path, not -lcvae: libcvae.a must not be a candidate.
# shellcheck disable=SC2086
$cc -std=c99 -Wall -Wextra -Wpedantic -Werror -Iinclude "$tmp/calls.c" -o "$tmp/calls" \
    $ldflags "$so" || fail "a program calling every CVAE_API function does not link against $so"
readelf -d "$tmp/calls" | grep -q "NEEDED.*\[libcvae.so.${version%%.*}\]" ||
    fail "the calls program does not load libcvae.so.${version%%.*}"
if nm --defined-only "$tmp/calls" | grep -q ' T cvae_'; then
    fail "the calls program has libcvae's functions linked in: not the shared library's"
fi
out=$(LD_BIND_NOW=1 LD_LIBRARY_PATH="$b" "$tmp/calls") || fail "the calls program failed: $out"
[ "$out" = "$count functions called" ] || fail "the calls program says '$out', expected $count calls"
# And the same program does not link against a library that omits one.
# shellcheck disable=SC2086
if $cc -std=c99 -Iinclude "$tmp/calls.c" -o "$tmp/calls-bad" $ldflags \
    "$tmp/fake-cvae_model_steps/libcvae.so.$version" > /dev/null 2>&1; then
    fail "the calls program linked against a library without cvae_model_steps"
fi
echo "check_exports: all $count CVAE_API functions called by name through $(basename "$so")," \
    "each refusing all-zero arguments"
