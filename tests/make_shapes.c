#define _POSIX_C_SOURCE 200809L
/*
 * make_shapes.c - writes a synthetic colour image set in the CIFAR-10 binary
 * format (or as binary PPM files): coloured shapes on coloured backgrounds,
 * 3 x 32 x 32. The label is the shape; foreground and background colours
 * come from a small palette and always differ, so a VAE has to learn both
 * colour and shape. Position and size vary moderately and the shape always
 * stays inside the image.
 *
 * Every byte is a function of the options only: the generator is splitmix64,
 * the geometry is integer arithmetic on a 4 x 4 supersampling grid, and no
 * floating point is used, so every machine and compiler writes the same files.
 * Image i of a split depends on the seed, the split and i alone: --train 500
 * gives the first 500 images of --train 10000, and the test images do not
 * depend on --train.
 *
 * libc only (and POSIX mkdir); not linked with libcvae. See docs/DATASETS.md.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#define SIDE 32
#define PLANE (SIDE * SIDE)
#define RECORD (1 + 3 * PLANE) /* label byte, then R, G, B planes */
#define TRAIN_FILES 5
#define MAX_IMAGES 100000 /* per split; also keeps the PPM names at 5 digits */
#define MAX_CLASSES 8
#define SUB 4          /* supersampling: SUB x SUB samples per pixel */
#define UNIT (2 * SUB) /* coordinates in 1/UNIT pixel: sample centres are odd */

/* ------------------------------------------------------------ generator */

/* splitmix64 (Steele, Lea, Flood 2014): small, and the same on every machine. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi]; the modulo bias (< 2^-50 here) does not matter for pictures. */
static int uniform_int(uint64_t *state, int lo, int hi)
{
    return lo + (int)(splitmix64(state) % (uint64_t)(hi - lo + 1));
}

/* A stream of its own for (seed, split, index): images do not depend on how
 * many came before them, nor train on test. */
static uint64_t stream_seed(uint64_t seed, unsigned split, uint64_t index)
{
    uint64_t s = seed ^ ((uint64_t)split << 56);
    uint64_t a = splitmix64(&s);
    s = a ^ index;
    return splitmix64(&s);
}

/* --------------------------------------------------------------- palette */

typedef struct colour {
    const char *name;
    unsigned char rgb[3];
} colour;

/* Six saturated hues, far apart, plus white and black, which give
 * light-on-dark and dark-on-light pairs. */
static const colour palette[] = {
    {"red", {220, 30, 40}},     {"yellow", {245, 215, 30}}, {"green", {40, 170, 60}},
    {"cyan", {40, 200, 225}},   {"blue", {35, 60, 210}},    {"magenta", {200, 45, 190}},
    {"white", {245, 245, 245}}, {"black", {15, 15, 15}},
};
#define PALETTE_SIZE ((int)(sizeof palette / sizeof palette[0]))

/* ---------------------------------------------------------------- shapes */

/* The shape of each class, in label order. */
static const char *const shape_names[MAX_CLASSES] = {
    "disk", "square", "triangle", "ring", "plus", "diamond", "bar", "x",
};

static int64_t abs64(int64_t v) { return v < 0 ? -v : v; }

/* Whether the sample at offset (dx, dy) from the shape's centre (in 1/UNIT
 * pixel) lies inside a shape of class k and half-extent r: every shape fits
 * in the square |dx|, |dy| <= r. */
static int inside(int k, int64_t dx, int64_t dy, int64_t r)
{
    int64_t ax = abs64(dx), ay = abs64(dy);
    switch (k) {
    case 0: /* disk */
        return dx * dx + dy * dy <= r * r;
    case 1: /* square, a little smaller than its box so its area is near the disk's */
        return 8 * ax <= 7 * r && 8 * ay <= 7 * r;
    case 2: /* triangle, apex up, base at the bottom of the box: 2|dx| <= dy + r */
        return dy <= r && 2 * ax <= dy + r;
    case 3: { /* ring: between 9/16 r and r */
        int64_t d2 = dx * dx + dy * dy;
        return d2 <= r * r && 256 * d2 >= 81 * r * r;
    }
    case 4: /* plus: two arms 3/4 r wide */
        return (8 * ax <= 3 * r && ay <= r) || (8 * ay <= 3 * r && ax <= r);
    case 5: /* diamond */
        return ax + ay <= r;
    case 6: /* horizontal bar, 3/4 r high */
        return ax <= r && 8 * ay <= 3 * r;
    default: /* x: the two diagonals, each about 0.5 r wide, inside 7/8 of the box */
        return (abs64(dx - dy) <= r / 2 || abs64(dx + dy) <= r / 2) && 8 * ax <= 7 * r &&
               8 * ay <= 7 * r;
    }
}

/* The picture of one image: label, then 3 channel-planar planes, in rec. */
static void draw_image(uint64_t seed, unsigned split, int index, int classes, unsigned char *rec)
{
    uint64_t st = stream_seed(seed, split, (uint64_t)index);
    int label, fg, bg, c, x, y;
    int64_t r, cx, cy;

    /* Labels come balanced: each block of `classes` images is a permutation
     * of the classes, drawn from the block's own stream. */
    {
        int perm[MAX_CLASSES], i, block = index / classes;
        uint64_t bs = stream_seed(seed, split + 16, (uint64_t)block);
        for (i = 0; i < classes; i++)
            perm[i] = i;
        for (i = classes - 1; i > 0; i--) {
            int j = uniform_int(&bs, 0, i), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        label = perm[index % classes];
    }
    bg = uniform_int(&st, 0, PALETTE_SIZE - 1);
    fg = uniform_int(&st, 0, PALETTE_SIZE - 2);
    if (fg >= bg) /* any colour but the background's, each equally likely */
        fg++;
    /* Half-extent 7..12 pixels in 1/UNIT steps; the centre keeps a margin of
     * one pixel, so the whole shape is always inside. */
    r = uniform_int(&st, 7 * UNIT, 12 * UNIT);
    cx = uniform_int(&st, (int)r + UNIT, SIDE * UNIT - (int)r - UNIT);
    cy = uniform_int(&st, (int)r + UNIT, SIDE * UNIT - (int)r - UNIT);

    rec[0] = (unsigned char)label;
    for (y = 0; y < SIDE; y++)
        for (x = 0; x < SIDE; x++) {
            int covered = 0, sx, sy;
            for (sy = 0; sy < SUB; sy++)
                for (sx = 0; sx < SUB; sx++) {
                    int64_t px = (int64_t)x * UNIT + 2 * sx + 1; /* sample centre */
                    int64_t py = (int64_t)y * UNIT + 2 * sy + 1;
                    covered += inside(label, px - cx, py - cy, r);
                }
            for (c = 0; c < 3; c++) {
                int f = palette[fg].rgb[c], b = palette[bg].rgb[c];
                int v = (b * (SUB * SUB - covered) + f * covered + SUB * SUB / 2) / (SUB * SUB);
                rec[1 + c * PLANE + y * SIDE + x] = (unsigned char)v;
            }
        }
}

/* ----------------------------------------------------------------- files */

static const char *prog = "make_shapes";

/* mkdir -p: creates path and its missing parents. */
static int make_dirs(const char *path)
{
    char buf[4096];
    size_t len = strlen(path), i;
    struct stat sb;
    if (len == 0 || len >= sizeof buf) {
        fprintf(stderr, "%s: %s: bad directory name\n", prog, path);
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "%s: %s: cannot create: %s\n", prog, buf, strerror(errno));
            return -1;
        }
        buf[i] = path[i];
    }
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "%s: %s: not a directory\n", prog, path);
        return -1;
    }
    return 0;
}

/* An output file written as "<path>.tmp" and renamed over path when
 * complete, so a crash or full disk never leaves a short file under the
 * real name. */
typedef struct out_file {
    FILE *f;
    char path[4096];
    char tmp[4096 + 8];
} out_file;

static int out_open(out_file *o, const char *dir, const char *name)
{
    int n = snprintf(o->path, sizeof o->path, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof o->path) {
        fprintf(stderr, "%s: %s/%s: path too long\n", prog, dir, name);
        return -1;
    }
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp", o->path);
    o->f = fopen(o->tmp, "wb");
    if (!o->f) {
        fprintf(stderr, "%s: %s: cannot create: %s\n", prog, o->tmp, strerror(errno));
        return -1;
    }
    return 0;
}

static int out_write(out_file *o, const void *data, size_t n)
{
    if (fwrite(data, 1, n, o->f) != n) {
        fprintf(stderr, "%s: %s: write failed: %s\n", prog, o->tmp, strerror(errno));
        return -1;
    }
    return 0;
}

/* Closes (checking the flush) and renames; on failure removes the temporary. */
static int out_close(out_file *o, int ok)
{
    int failed = !ok;
    if (fclose(o->f) != 0 && !failed) {
        fprintf(stderr, "%s: %s: write failed: %s\n", prog, o->tmp, strerror(errno));
        failed = 1;
    }
    o->f = NULL;
    if (!failed && rename(o->tmp, o->path) != 0) {
        fprintf(stderr, "%s: %s: cannot rename to %s: %s\n", prog, o->tmp, o->path,
                strerror(errno));
        failed = 1;
    }
    if (failed)
        remove(o->tmp);
    return failed ? -1 : 0;
}

/* Images first .. first + n - 1 of a split as one CIFAR-10 file. */
static int write_cifar_file(const char *dir, const char *name, uint64_t seed, unsigned split,
                            int first, int n, int classes)
{
    unsigned char rec[RECORD];
    out_file o;
    int i, ok = 1;
    if (out_open(&o, dir, name) != 0)
        return -1;
    for (i = 0; i < n && ok; i++) {
        draw_image(seed, split, first + i, classes, rec);
        ok = out_write(&o, rec, sizeof rec) == 0;
    }
    return out_close(&o, ok);
}

/* One image as a binary PPM: interleaved RGB, unlike the planar record. */
static int write_ppm_file(const char *dir, int index, const unsigned char *rec)
{
    unsigned char px[3 * PLANE];
    char name[32];
    static const char header[] = "P6\n32 32\n255\n";
    out_file o;
    int i, c, ok;
    for (i = 0; i < PLANE; i++)
        for (c = 0; c < 3; c++)
            px[3 * i + c] = rec[1 + c * PLANE + i];
    snprintf(name, sizeof name, "%05d.ppm", index);
    if (out_open(&o, dir, name) != 0)
        return -1;
    ok = out_write(&o, header, sizeof header - 1) == 0 && out_write(&o, px, sizeof px) == 0;
    return out_close(&o, ok);
}

/* A split as DIR/<split>/NNNNN.ppm and its labels as DIR/<split>_labels.txt
 * ("NNNNN.ppm label" per line; the loader reads no labels from netpbm). */
static int write_pnm_split(const char *dir, const char *split_name, uint64_t seed, unsigned split,
                           int n, int classes)
{
    char sub[4096], name[64], line[32];
    unsigned char rec[RECORD];
    out_file labels;
    int i, ok = 1, len = snprintf(sub, sizeof sub, "%s/%s", dir, split_name);
    if (len < 0 || (size_t)len >= sizeof sub) {
        fprintf(stderr, "%s: %s/%s: path too long\n", prog, dir, split_name);
        return -1;
    }
    if (make_dirs(sub) != 0)
        return -1;
    snprintf(name, sizeof name, "%s_labels.txt", split_name);
    if (out_open(&labels, dir, name) != 0)
        return -1;
    for (i = 0; i < n && ok; i++) {
        draw_image(seed, split, i, classes, rec);
        len = snprintf(line, sizeof line, "%05d.ppm %d\n", i, rec[0]);
        ok = write_ppm_file(sub, i, rec) == 0 && out_write(&labels, line, (size_t)len) == 0;
    }
    return out_close(&labels, ok);
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *to)
{
    int k;
    fprintf(to,
            "usage: %s --out DIR [--train N] [--test N] [--seed S] [--classes K]\n"
            "       [--format cifar10|pnm]\n"
            "Writes a synthetic set of 3x32x32 coloured shapes on coloured backgrounds.\n"
            "  --out DIR        output directory (created if missing)\n"
            "  --train N        training images (default 10000; cifar10 needs >= %d)\n"
            "  --test N         test images (default 2000)\n"
            "  --seed S         a decimal number below 2^64 (default 1); same options, same bytes\n"
            "  --classes K      number of shapes/labels, 2..%d (default 6)\n"
            "  --format F       cifar10 (default): DIR/data_batch_1.bin .. data_batch_%d.bin\n"
            "                   (train split evenly) and DIR/test_batch.bin;\n"
            "                   pnm: DIR/train/NNNNN.ppm, DIR/test/NNNNN.ppm (binary P6)\n"
            "                   and DIR/train_labels.txt, DIR/test_labels.txt\n"
            "At most %d images per split. Labels, in order:",
            prog, TRAIN_FILES, MAX_CLASSES, TRAIN_FILES, MAX_IMAGES);
    for (k = 0; k < MAX_CLASSES; k++)
        fprintf(to, " %d %s%s", k, shape_names[k], k + 1 < MAX_CLASSES ? "," : "\n");
    fprintf(to, "Colours:");
    for (k = 0; k < PALETTE_SIZE; k++)
        fprintf(to, " %s%s", palette[k].name, k + 1 < PALETTE_SIZE ? "," : "\n");
}

/* A whole decimal number in [lo, hi]. */
static int parse_int(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "%s: %s %s: expected a whole number in [%ld, %ld]\n", prog, opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *out = NULL, *format = "cifar10";
    long train = 10000, test = 2000, classes = 6;
    uint64_t seed = 1;
    int i;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--out") != 0 && strcmp(a, "--train") != 0 && strcmp(a, "--test") != 0 &&
            strcmp(a, "--seed") != 0 && strcmp(a, "--classes") != 0 && strcmp(a, "--format") != 0) {
            fprintf(stderr, "%s: unknown option %s (see --help)\n", prog, a);
            return 2;
        }
        if (!v) {
            fprintf(stderr, "%s: %s needs a value (see --help)\n", prog, a);
            return 2;
        }
        i++;
        if (strcmp(a, "--out") == 0) {
            out = v;
        } else if (strcmp(a, "--format") == 0) {
            if (strcmp(v, "cifar10") != 0 && strcmp(v, "pnm") != 0) {
                fprintf(stderr, "%s: --format %s: expected cifar10 or pnm\n", prog, v);
                return 2;
            }
            format = v;
        } else if (strcmp(a, "--seed") == 0) {
            char *end;
            errno = 0;
            seed = strtoull(v, &end, 10); /* decimal only: "010" is ten, not eight */
            if (errno || end == v || *end || *v < '0' || *v > '9') {
                fprintf(stderr, "%s: --seed %s: expected a number in [0, 2^64)\n", prog, v);
                return 2;
            }
        } else if (parse_int(a, v, 0, MAX_IMAGES,
                             strcmp(a, "--train") == 0  ? &train
                             : strcmp(a, "--test") == 0 ? &test
                                                        : &classes) != 0) {
            return 2;
        }
    }
    if (!out || !*out) {
        fprintf(stderr, "%s: --out DIR is required (see --help)\n", prog);
        return 2;
    }
    if (classes < 2 || classes > MAX_CLASSES) {
        fprintf(stderr, "%s: --classes %ld: expected 2..%d\n", prog, classes, MAX_CLASSES);
        return 2;
    }
    if (test < 1 || train < (strcmp(format, "cifar10") == 0 ? TRAIN_FILES : 1)) {
        fprintf(stderr, "%s: need --test >= 1 and --train >= %d for --format %s (no empty files)\n",
                prog, strcmp(format, "cifar10") == 0 ? TRAIN_FILES : 1, format);
        return 2;
    }
    if (make_dirs(out) != 0)
        return 1;

    if (strcmp(format, "cifar10") == 0) {
        int first = 0, k;
        for (k = 0; k < TRAIN_FILES; k++) {
            /* Split evenly; the first train % 5 files take one more. */
            int n = (int)(train / TRAIN_FILES) + (k < train % TRAIN_FILES);
            char name[32];
            snprintf(name, sizeof name, "data_batch_%d.bin", k + 1);
            if (write_cifar_file(out, name, seed, 0, first, n, (int)classes) != 0)
                return 1;
            first += n;
        }
        if (write_cifar_file(out, "test_batch.bin", seed, 1, 0, (int)test, (int)classes) != 0)
            return 1;
    } else if (write_pnm_split(out, "train", seed, 0, (int)train, (int)classes) != 0 ||
               write_pnm_split(out, "test", seed, 1, (int)test, (int)classes) != 0) {
        return 1;
    }
    printf("%s: %ld train and %ld test images of %ld classes (seed %llu) in %s (%s)\n", prog, train,
           test, classes, (unsigned long long)seed, out, format);
    return 0;
}
