/*
 * tune.c - configurations, search spaces, their files, sampling and
 * successive halving (see tune.h). Plain C99 and libm; no libcvae calls.
 */
#include "tune.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The longest line either file format accepts, and the largest file. */
#define LINE_MAX_CHARS 1024
#define FILE_MAX_BYTES (1L << 20)
/* Tokens after "=": a kind and up to TUNE_MAX_CHOICES values, plus one
 * more to notice a line with too many. */
#define MAX_TOKENS (TUNE_MAX_CHOICES + 2)
#define DEFAULT_MAX_TRIALS 1000
/* Mixed into the search seed: "tune" in ASCII. */
#define SEED_TAG 0x74756e65u

#if defined(__GNUC__) || defined(__clang__)
#define TUNE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TUNE_PRINTF(a, b)
#endif

static void set_err(char *err, size_t errsize, const char *fmt, ...) TUNE_PRINTF(3, 4);

static void set_err(char *err, size_t errsize, const char *fmt, ...)
{
    va_list ap;
    if (!err || errsize == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
}

const char *tune_status_string(tune_status st)
{
    switch (st) {
    case TUNE_OK: return "ok";
    case TUNE_ERR_ARG: return "bad argument";
    case TUNE_ERR_IO: return "input/output error";
    case TUNE_ERR_PARSE: return "malformed file";
    case TUNE_ERR_NOMEM: return "out of memory";
    case TUNE_ERR_ALL_FAILED: return "every trial failed";
    case TUNE_ERR_ABORTED: return "stopped";
    }
    return "unknown status";
}

/* ------------------------------------------------------------ parameters */

/* Each parameter's key, kind and range; lo_open: the range excludes lo. */
static const struct param_info {
    const char *name;
    int integer;
    double lo, hi;
    int lo_open;
} params[TUNE_PARAMS] = {
    {"lr", 0, 0.0, 10.0, 1},     {"batch", 1, 1.0, 65536.0, 0}, {"latent", 1, 1.0, 4096.0, 0},
    {"beta", 0, 0.0, 1e6, 0},    {"width", 1, 1.0, 4096.0, 0},  {"hidden", 1, 1.0, 65536.0, 0},
};

const char *tune_param_name(tune_param p)
{
    return (int)p >= 0 && p < TUNE_PARAMS ? params[p].name : NULL;
}

static double config_get(const tune_config *c, int p)
{
    switch (p) {
    case TUNE_LR: return c->lr;
    case TUNE_BATCH: return c->batch;
    case TUNE_LATENT: return c->latent;
    case TUNE_BETA: return c->beta;
    case TUNE_WIDTH: return c->width;
    default: return c->hidden;
    }
}

/* v has passed in_range, so integers fit an int. */
static void config_set(tune_config *c, int p, double v)
{
    switch (p) {
    case TUNE_LR: c->lr = v; break;
    case TUNE_BATCH: c->batch = (int)v; break;
    case TUNE_LATENT: c->latent = (int)v; break;
    case TUNE_BETA: c->beta = v; break;
    case TUNE_WIDTH: c->width = (int)v; break;
    default: c->hidden = (int)v; break;
    }
}

static int in_range(int p, double v)
{
    const struct param_info *pi = &params[p];
    if (!isfinite(v) || v > pi->hi || v < pi->lo || (pi->lo_open && v <= pi->lo))
        return 0;
    return !pi->integer || v == floor(v);
}

/* "lr wants a number in (0, 10]" */
static void describe_range(int p, char *buf, size_t size)
{
    const struct param_info *pi = &params[p];
    snprintf(buf, size, "%s wants %s in %c%g, %g]", pi->name,
             pi->integer ? "an integer" : "a number", pi->lo_open ? '(' : '[', pi->lo, pi->hi);
}

/*
 * Reads token tok as a value of parameter p into *v: an integer (decimal,
 * nothing else) or a finite number, inside the parameter's range. On
 * failure writes why into why and returns 0.
 */
static int parse_value(int p, const char *tok, double *v, char *why, size_t whysize)
{
    char *end, range[96];

    describe_range(p, range, sizeof range);
    errno = 0;
    if (params[p].integer) {
        long l = strtol(tok, &end, 10);
        if (end == tok || *end != '\0' || errno) {
            double d = strtod(tok, &end);
            if (end != tok && *end == '\0' && isfinite(d) && d != floor(d))
                snprintf(why, whysize, "'%s' is not a whole number (%s)", tok, range);
            else
                snprintf(why, whysize, "bad number '%s' (%s)", tok, range);
            return 0;
        }
        *v = (double)l;
    } else {
        *v = strtod(tok, &end);
        if (end == tok || *end != '\0' || !isfinite(*v)) {
            snprintf(why, whysize, "bad number '%s' (%s)", tok, range);
            return 0;
        }
    }
    if (!in_range(p, *v)) {
        if (params[p].lo_open && *v <= params[p].lo)
            snprintf(why, whysize, "%s is not positive (%s)", tok, range);
        else
            snprintf(why, whysize, "%s is out of range (%s)", tok, range);
        return 0;
    }
    return 1;
}

void tune_config_default(tune_config *cfg)
{
    cfg->lr = 1e-3;
    cfg->batch = 128;
    cfg->latent = 16;
    cfg->beta = 1.0;
    cfg->width = 32;
    cfg->hidden = 256;
}

tune_status tune_config_check(const tune_config *cfg, char *err, size_t errsize)
{
    char range[96];
    int p;

    if (!cfg) {
        set_err(err, errsize, "no config");
        return TUNE_ERR_ARG;
    }
    for (p = 0; p < TUNE_PARAMS; p++)
        if (!in_range(p, config_get(cfg, p))) {
            describe_range(p, range, sizeof range);
            set_err(err, errsize, "%s is %g: %s", params[p].name, config_get(cfg, p), range);
            return TUNE_ERR_ARG;
        }
    return TUNE_OK;
}

int tune_config_format(const tune_config *cfg, char *buf, size_t size)
{
    return snprintf(buf, size, "lr %g batch %d latent %d beta %g width %d hidden %d", cfg->lr,
                    cfg->batch, cfg->latent, cfg->beta, cfg->width, cfg->hidden);
}

/* The shortest %.Ng (N = 15, 16, 17) that reads back as v exactly. */
static void format_exact(double v, char *buf, size_t size)
{
    int digits;
    for (digits = 15; digits <= 17; digits++) {
        snprintf(buf, size, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* ------------------------------------------------------------ text files */

/* Reads a whole text file (at most FILE_MAX_BYTES, no NUL byte) into a new
 * NUL-terminated buffer. */
static tune_status read_text(const char *path, char **text, char *err, size_t errsize)
{
    FILE *f;
    char *buf;
    size_t n;
    int bad, saved_errno;

    *text = NULL;
    if (!(f = fopen(path, "rb"))) {
        set_err(err, errsize, "%s: %s", path, strerror(errno));
        return TUNE_ERR_IO;
    }
    if (!(buf = malloc((size_t)FILE_MAX_BYTES + 1))) {
        fclose(f);
        set_err(err, errsize, "%s: out of memory", path);
        return TUNE_ERR_NOMEM;
    }
    errno = 0;
    n = fread(buf, 1, (size_t)FILE_MAX_BYTES + 1, f);
    bad = ferror(f);
    saved_errno = errno;
    fclose(f);
    if (bad) { /* a directory opens but does not read, on Linux */
        free(buf);
        set_err(err, errsize, "%s: cannot read it: %s", path, strerror(saved_errno));
        return TUNE_ERR_IO;
    }
    if (n > (size_t)FILE_MAX_BYTES) {
        free(buf);
        set_err(err, errsize, "%s: larger than %ld bytes: not a settings file", path,
                FILE_MAX_BYTES);
        return TUNE_ERR_PARSE;
    }
    if (memchr(buf, '\0', n)) {
        free(buf);
        set_err(err, errsize, "%s: holds a NUL byte: not a text file", path);
        return TUNE_ERR_PARSE;
    }
    buf[n] = '\0';
    *text = buf;
    return TUNE_OK;
}

/* One "key = tokens..." line, split in place. */
struct line {
    int number;
    char *key;
    char *tok[MAX_TOKENS];
    int ntok;
};

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

/*
 * Cuts the next line off *cursor into buf, drops its comment and splits it.
 * Returns 1 with a line (ln->key NULL for a blank or comment line), 0 at the
 * end of the text, -1 with a message for a line too long or without "=".
 */
static int next_line(const char **cursor, char *buf, struct line *ln, const char *name,
                     char *err, size_t errsize)
{
    const char *start = *cursor, *nl;
    size_t len;
    char *p, *eq, *end;

    if (*start == '\0')
        return 0;
    nl = strchr(start, '\n');
    len = nl ? (size_t)(nl - start) : strlen(start);
    *cursor = nl ? nl + 1 : start + len;
    ln->number++;
    ln->key = NULL;
    ln->ntok = 0;
    if (len > LINE_MAX_CHARS) {
        set_err(err, errsize, "%s:%d: line longer than %d characters", name, ln->number,
                LINE_MAX_CHARS);
        return -1;
    }
    memcpy(buf, start, len);
    buf[len] = '\0';
    if ((p = strchr(buf, '#')))
        *p = '\0';
    for (p = buf; is_space(*p); p++)
        ;
    if (*p == '\0')
        return 1;
    if (!(eq = strchr(p, '='))) {
        set_err(err, errsize, "%s:%d: no '=' in '%s' (expected 'key = value')", name, ln->number,
                p);
        return -1;
    }
    for (end = eq; end > p && is_space(end[-1]); end--)
        ;
    *end = '\0';
    ln->key = p;
    for (p = eq + 1;;) {
        while (is_space(*p))
            p++;
        if (*p == '\0')
            break;
        if (ln->ntok == MAX_TOKENS) {
            set_err(err, errsize, "%s:%d: %s: too many values (at most %d choices)", name,
                    ln->number, ln->key, TUNE_MAX_CHOICES);
            return -1;
        }
        ln->tok[ln->ntok++] = p;
        while (*p && !is_space(*p))
            p++;
        if (*p)
            *p++ = '\0';
    }
    return 1;
}

/* The parameter named key, or -1 with a message. */
static int find_key(const struct line *ln, const char *name, char *err, size_t errsize)
{
    int p;
    for (p = 0; p < TUNE_PARAMS; p++)
        if (!strcmp(ln->key, params[p].name))
            return p;
    set_err(err, errsize,
            "%s:%d: unknown key '%s' (keys: lr, batch, latent, beta, width, hidden)", name,
            ln->number, ln->key);
    return -1;
}

/* The next line that holds a key, as next_line reads it, with its parameter
 * in *p: 1; 0 at the end of the text; -1 (message written) for a bad line,
 * an unknown key or a key seen before (seen[p] holds the line of each). */
static int next_key_line(const char **text, char *buf, struct line *ln, int *seen,
                         const char *name, char *err, size_t errsize, int *p)
{
    int r;
    while ((r = next_line(text, buf, ln, name, err, errsize)) > 0) {
        if (!ln->key)
            continue;
        if ((*p = find_key(ln, name, err, errsize)) < 0)
            return -1;
        if (seen[*p]) {
            set_err(err, errsize, "%s:%d: duplicate key '%s' (first on line %d)", name,
                    ln->number, ln->key, seen[*p]);
            return -1;
        }
        seen[*p] = ln->number;
        return 1;
    }
    return r < 0 ? -1 : 0;
}

tune_status tune_config_parse(const char *text, const char *name, tune_config *cfg, char *err,
                              size_t errsize)
{
    char buf[LINE_MAX_CHARS + 1], why[192];
    int seen[TUNE_PARAMS] = {0}, r, p;
    struct line ln;
    tune_config c;
    double v;

    if (!text || !cfg) {
        set_err(err, errsize, "no text or no config");
        return TUNE_ERR_ARG;
    }
    if (!name)
        name = "config";
    c = *cfg;
    ln.number = 0;
    while ((r = next_key_line(&text, buf, &ln, seen, name, err, errsize, &p)) > 0) {
        if (ln.ntok != 1) {
            set_err(err, errsize, "%s:%d: %s: wants one value, not %d", name, ln.number, ln.key,
                    ln.ntok);
            return TUNE_ERR_PARSE;
        }
        if (!parse_value(p, ln.tok[0], &v, why, sizeof why)) {
            set_err(err, errsize, "%s:%d: %s: %s", name, ln.number, ln.key, why);
            return TUNE_ERR_PARSE;
        }
        config_set(&c, p, v);
    }
    if (r < 0)
        return TUNE_ERR_PARSE;
    *cfg = c;
    return TUNE_OK;
}

tune_status tune_config_read(const char *path, tune_config *cfg, char *err, size_t errsize)
{
    char *text;
    tune_status st;

    if (!path || !cfg) {
        set_err(err, errsize, "no path or no config");
        return TUNE_ERR_ARG;
    }
    if ((st = read_text(path, &text, err, errsize)) != TUNE_OK)
        return st;
    st = tune_config_parse(text, path, cfg, err, errsize);
    free(text);
    return st;
}

tune_status tune_config_write(const char *path, const tune_config *cfg, char *err, size_t errsize)
{
    char tmp[4096], lr[32], beta[32];
    FILE *f;
    int bad;
    tune_status st;

    if (!path || !cfg) {
        set_err(err, errsize, "no path or no config");
        return TUNE_ERR_ARG;
    }
    if ((st = tune_config_check(cfg, err, errsize)) != TUNE_OK)
        return st;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        set_err(err, errsize, "%s: file name too long", path);
        return TUNE_ERR_ARG;
    }
    if (!(f = fopen(tmp, "w"))) {
        set_err(err, errsize, "%s: %s", tmp, strerror(errno));
        return TUNE_ERR_IO;
    }
    format_exact(cfg->lr, lr, sizeof lr);
    format_exact(cfg->beta, beta, sizeof beta);
    fprintf(f,
            "# libcvae hyperparameters: key = value (docs/TUNING.md); cvae-train --config reads "
            "them\nlr = %s\nbatch = %d\nlatent = %d\nbeta = %s\nwidth = %d\nhidden = %d\n",
            lr, cfg->batch, cfg->latent, beta, cfg->width, cfg->hidden);
    bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        remove(tmp);
        set_err(err, errsize, "%s: write failed", tmp);
        return TUNE_ERR_IO;
    }
    if (rename(tmp, path) != 0) {
        set_err(err, errsize, "%s: %s", path, strerror(errno));
        remove(tmp);
        return TUNE_ERR_IO;
    }
    return TUNE_OK;
}

/* ---------------------------------------------------------------- spaces */

static void set_choices(tune_range *r, const double *v, int n)
{
    int i;
    r->dist = TUNE_CHOICE;
    r->lo = r->hi = 0;
    r->nchoices = n;
    for (i = 0; i < n; i++)
        r->choice[i] = v[i];
}

static void set_interval(tune_range *r, tune_dist dist, double lo, double hi)
{
    memset(r, 0, sizeof *r);
    r->dist = dist;
    r->lo = lo;
    r->hi = hi;
}

void tune_space_default(tune_space *space)
{
    static const double batch[] = {32, 64, 128, 256}, latent[] = {8, 16, 24, 32},
                        width[] = {16, 32, 48}, hidden[] = {128, 256, 384, 512};

    memset(space, 0, sizeof *space);
    set_interval(&space->param[TUNE_LR], TUNE_LOG, 3e-4, 5e-3);
    set_choices(&space->param[TUNE_BATCH], batch, 4);
    set_choices(&space->param[TUNE_LATENT], latent, 4);
    set_interval(&space->param[TUNE_BETA], TUNE_UNIFORM, 0.5, 1.5);
    set_choices(&space->param[TUNE_WIDTH], width, 3);
    set_choices(&space->param[TUNE_HIDDEN], hidden, 4);
}

/* Why range r of parameter p is malformed, or 0 (why untouched) if it is not. */
static int range_problem(int p, const tune_range *r, char *why, size_t whysize)
{
    char range[96];
    int i;

    describe_range(p, range, sizeof range);
    if (r->dist == TUNE_CHOICE) {
        if (r->nchoices < 1 || r->nchoices > TUNE_MAX_CHOICES) {
            snprintf(why, whysize, "choice needs 1 to %d values, not %d", TUNE_MAX_CHOICES,
                     r->nchoices);
            return 1;
        }
        for (i = 0; i < r->nchoices; i++)
            if (!in_range(p, r->choice[i])) {
                snprintf(why, whysize, "choice %g: %s", r->choice[i], range);
                return 1;
            }
        return 0;
    }
    if (r->dist != TUNE_UNIFORM && r->dist != TUNE_LOG) {
        snprintf(why, whysize, "unknown kind %d", (int)r->dist);
        return 1;
    }
    if (!in_range(p, r->lo) || !in_range(p, r->hi)) {
        snprintf(why, whysize, "min %g or max %g: %s", r->lo, r->hi, range);
        return 1;
    }
    if (r->lo > r->hi) {
        snprintf(why, whysize, "min %g > max %g", r->lo, r->hi);
        return 1;
    }
    if (r->dist == TUNE_LOG && !(r->lo > 0)) {
        snprintf(why, whysize, "log needs a positive min, not %g", r->lo);
        return 1;
    }
    return 0;
}

tune_status tune_space_check(const tune_space *space, char *err, size_t errsize)
{
    char why[192];
    int p;

    if (!space) {
        set_err(err, errsize, "no space");
        return TUNE_ERR_ARG;
    }
    for (p = 0; p < TUNE_PARAMS; p++)
        if (range_problem(p, &space->param[p], why, sizeof why)) {
            set_err(err, errsize, "%s: %s", params[p].name, why);
            return TUNE_ERR_ARG;
        }
    return TUNE_OK;
}

/* The range on one space-file line: kind and numbers, checked. */
static int parse_range(int p, const struct line *ln, tune_range *r, char *why, size_t whysize)
{
    const char *kind = ln->ntok > 0 ? ln->tok[0] : "";
    int i, nval = ln->ntok - 1;
    double v[MAX_TOKENS];

    memset(r, 0, sizeof *r);
    if (!strcmp(kind, "log"))
        r->dist = TUNE_LOG;
    else if (!strcmp(kind, "uniform"))
        r->dist = TUNE_UNIFORM;
    else if (!strcmp(kind, "choice"))
        r->dist = TUNE_CHOICE;
    else {
        snprintf(why, whysize, "%s '%s' (expected log MIN MAX, uniform MIN MAX or choice V...)",
                 *kind ? "unknown kind" : "no kind", kind);
        return 0;
    }
    if (r->dist == TUNE_CHOICE && nval < 1) {
        snprintf(why, whysize, "empty choice: choice needs at least one value");
        return 0;
    }
    if (r->dist == TUNE_CHOICE && nval > TUNE_MAX_CHOICES) {
        snprintf(why, whysize, "too many choices (at most %d)", TUNE_MAX_CHOICES);
        return 0;
    }
    if (r->dist != TUNE_CHOICE && nval != 2) {
        snprintf(why, whysize, "%s wants 2 numbers, min and max, not %d", kind, nval);
        return 0;
    }
    for (i = 0; i < nval; i++)
        if (!parse_value(p, ln->tok[i + 1], &v[i], why, whysize))
            return 0;
    if (r->dist == TUNE_CHOICE) {
        set_choices(r, v, nval);
        return 1;
    }
    r->lo = v[0];
    r->hi = v[1];
    if (r->lo > r->hi) {
        snprintf(why, whysize, "min %s > max %s", ln->tok[1], ln->tok[2]);
        return 0;
    }
    if (r->dist == TUNE_LOG && !(r->lo > 0)) {
        snprintf(why, whysize, "log needs a positive min, not %s", ln->tok[1]);
        return 0;
    }
    return 1;
}

tune_status tune_space_parse(const char *text, const char *name, tune_space *space, char *err,
                             size_t errsize)
{
    char buf[LINE_MAX_CHARS + 1], why[192];
    int seen[TUNE_PARAMS] = {0}, r, p;
    struct line ln;
    tune_space s;

    if (!text || !space) {
        set_err(err, errsize, "no text or no space");
        return TUNE_ERR_ARG;
    }
    if (!name)
        name = "space";
    s = *space;
    ln.number = 0;
    while ((r = next_key_line(&text, buf, &ln, seen, name, err, errsize, &p)) > 0) {
        if (!parse_range(p, &ln, &s.param[p], why, sizeof why)) {
            set_err(err, errsize, "%s:%d: %s: %s", name, ln.number, ln.key, why);
            return TUNE_ERR_PARSE;
        }
    }
    if (r < 0)
        return TUNE_ERR_PARSE;
    *space = s;
    return TUNE_OK;
}

tune_status tune_space_read(const char *path, tune_space *space, char *err, size_t errsize)
{
    char *text;
    tune_status st;

    if (!path || !space) {
        set_err(err, errsize, "no path or no space");
        return TUNE_ERR_ARG;
    }
    if ((st = read_text(path, &text, err, errsize)) != TUNE_OK)
        return st;
    st = tune_space_parse(text, path, space, err, errsize);
    free(text);
    return st;
}

int tune_space_format(const tune_space *space, tune_param p, char *buf, size_t size)
{
    const tune_range *r = &space->param[p];
    int used, i;

    if (r->dist != TUNE_CHOICE)
        return snprintf(buf, size, "%s %g %g", r->dist == TUNE_LOG ? "log" : "uniform", r->lo,
                        r->hi);
    used = snprintf(buf, size, "choice");
    for (i = 0; i < r->nchoices && used >= 0; i++)
        used += snprintf(buf + ((size_t)used < size ? (size_t)used : size),
                         (size_t)used < size ? size - (size_t)used : 0, " %g", r->choice[i]);
    return used;
}

int tune_space_contains(const tune_space *space, const tune_config *cfg)
{
    int p, i;

    for (p = 0; p < TUNE_PARAMS; p++) {
        const tune_range *r = &space->param[p];
        double v = config_get(cfg, p);
        int found = 0;
        if (r->dist == TUNE_CHOICE) {
            for (i = 0; i < r->nchoices; i++)
                found |= v == r->choice[i];
        } else {
            found = v >= r->lo && v <= r->hi;
        }
        if (!found)
            return 0;
    }
    return 1;
}

/* -------------------------------------------------------------- sampling */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void tune_rng_seed(tune_rng *rng, uint64_t seed)
{
    int i;
    for (i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&seed);
}

uint64_t tune_rng_next(tune_rng *rng)
{
    uint64_t *s = rng->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double tune_rng_uniform(tune_rng *rng) { return (double)(tune_rng_next(rng) >> 11) * 0x1p-53; }

uint64_t tune_rng_below(tune_rng *rng, uint64_t n)
{
    /* Draws below 2^64 mod n would favour the small residues: redraw them. */
    uint64_t threshold = (0 - n) % n, r;
    do
        r = tune_rng_next(rng);
    while (r < threshold);
    return r % n;
}

/* v to 3 significant digits through the correctly rounded printf and strtod. */
static double round3(double v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%.3g", v);
    return strtod(buf, NULL);
}

static double sample_range(int p, const tune_range *r, tune_rng *rng)
{
    double u, v, lo = r->lo, hi = r->hi;

    if (r->dist == TUNE_CHOICE)
        return r->choice[tune_rng_below(rng, (uint64_t)r->nchoices)];
    if (params[p].integer && r->dist == TUNE_UNIFORM)
        return lo + (double)tune_rng_below(rng, (uint64_t)(hi - lo) + 1);
    u = tune_rng_uniform(rng);
    if (params[p].integer) {
        /* Each integer k gets the log-mass of [k - 1/2, k + 1/2]. */
        double a = log(lo - 0.5 > 0 ? lo - 0.5 : lo), b = log(hi + 0.5);
        v = floor(exp(a + u * (b - a)) + 0.5);
    } else if (r->dist == TUNE_LOG) {
        v = round3(exp(log(lo) + u * (log(hi) - log(lo))));
    } else {
        v = round3(lo + u * (hi - lo));
    }
    return v < lo ? lo : v > hi ? hi : v;
}

void tune_sample(const tune_space *space, tune_rng *rng, tune_config *cfg)
{
    int p;
    for (p = 0; p < TUNE_PARAMS; p++)
        config_set(cfg, p, sample_range(p, &space->param[p], rng));
}

/* -------------------------------------------------------------- schedule */

tune_status tune_schedule_make(tune_schedule *s, long max_budget, int eta, int rungs, char *err,
                               size_t errsize)
{
    unsigned long long mb, cap, divisor = 1;
    int k;

    if (!s) {
        set_err(err, errsize, "no schedule");
        return TUNE_ERR_ARG;
    }
    if (max_budget < 1) {
        set_err(err, errsize, "the largest budget must be at least 1, not %ld", max_budget);
        return TUNE_ERR_ARG;
    }
    if (eta < 2 || eta > 1000) {
        set_err(err, errsize, "eta must be in [2, 1000], not %d", eta);
        return TUNE_ERR_ARG;
    }
    if (rungs < 1 || rungs > TUNE_MAX_RUNGS) {
        set_err(err, errsize, "rungs must be in [1, %d], not %d", TUNE_MAX_RUNGS, rungs);
        return TUNE_ERR_ARG;
    }
    memset(s, 0, sizeof *s);
    s->eta = eta;
    s->rungs = rungs;
    /* divisor = eta^(rungs-1-k), saturated at cap, where every quotient rounds to 0. */
    mb = (unsigned long long)max_budget;
    cap = mb * 2 + 1;
    for (k = rungs - 1; k >= 0; k--) {
        /* Round to nearest, halves up, without overflowing mb + divisor / 2. */
        long b = divisor >= cap ? 0 : (long)(mb / divisor + ((mb % divisor) * 2 >= divisor));
        if (b < 1 || (k < rungs - 1 && b >= s->budget[k + 1])) {
            set_err(err, errsize,
                    "a largest budget of %ld is too small for %d rungs with eta %d: "
                    "the budgets (largest / %d^k) would not rise strictly from 1",
                    max_budget, rungs, eta, eta);
            return TUNE_ERR_ARG;
        }
        s->budget[k] = b;
        divisor = divisor > cap / (unsigned)eta ? cap : divisor * (unsigned)eta;
    }
    return TUNE_OK;
}

int tune_survivors(int entrants, int eta) { return entrants / eta + (entrants % eta != 0); }

int tune_schedule_entrants(const tune_schedule *s, int n, int rung)
{
    int k;
    for (k = 0; k < rung; k++)
        n = tune_survivors(n, s->eta);
    return n;
}

double tune_schedule_cost(const tune_schedule *s, int n)
{
    double cost = 0;
    int k;
    for (k = 0; k < s->rungs; k++) {
        cost += (double)n * (double)(s->budget[k] - (k ? s->budget[k - 1] : 0));
        n = tune_survivors(n, s->eta);
    }
    return cost;
}

tune_status tune_parse_seconds(const char *text, double *seconds, char *err, size_t errsize)
{
    char *end;
    double v, unit = 1;

    if (!text || !seconds) {
        set_err(err, errsize, "no time budget");
        return TUNE_ERR_ARG;
    }
    errno = 0;
    v = strtod(text, &end);
    if (end != text && end[0] && !end[1]) {
        if (*end == 'm')
            unit = 60;
        else if (*end == 'h')
            unit = 3600;
        if (*end == 's' || *end == 'm' || *end == 'h')
            end++;
    }
    v *= unit;
    if (end == text || *end != '\0' || errno || !isfinite(v) || !(v > 0) || v > 1e9) {
        set_err(err, errsize,
                "a time budget is a positive number of seconds (up to 1e9), optionally with "
                "s, m or h (90, 1.5m, 2h), not '%s'",
                text);
        return TUNE_ERR_ARG;
    }
    *seconds = v;
    return TUNE_OK;
}

/* ---------------------------------------------------------------- search */

/* 1 if trial a ranks before trial b at the same rung: succeeded first, then
 * the lower loss, then the lower index. */
static int ranks_before(const tune_trial *t, int a, int b)
{
    if (t[a].failed != t[b].failed)
        return !t[a].failed;
    if (!t[a].failed && t[a].loss != t[b].loss)
        return t[a].loss < t[b].loss;
    return a < b;
}

/* Inserts trial into order[0 .. *n - 1] (sorted best first); returns its 0-based place. */
static int insert_ranked(const tune_trial *t, int *order, int *n, int trial)
{
    int at = *n;
    while (at > 0 && ranks_before(t, trial, order[at - 1])) {
        order[at] = order[at - 1];
        at--;
    }
    order[at] = trial;
    (*n)++;
    return at;
}

/* State of one tune_run. */
struct run_state {
    const tune_search *search;
    tune_result *res;
    int capacity;
    int *order, norder; /* this rung's finished runs, best first */
    double start;
};

static double clock_now(const struct run_state *rs)
{
    return rs->search->now ? rs->search->now(rs->search->user) : 0.0;
}

/* Room for trial index n in res->trial and the work arrays. */
static tune_status reserve(struct run_state *rs, int n)
{
    int cap = rs->capacity ? rs->capacity : 16;
    tune_trial *t;
    int *o;

    if (n < rs->capacity)
        return TUNE_OK;
    while (cap <= n)
        cap *= 2;
    if (!(t = realloc(rs->res->trial, (size_t)cap * sizeof *t)))
        return TUNE_ERR_NOMEM;
    rs->res->trial = t;
    if (!(o = realloc(rs->order, (size_t)cap * sizeof *o)))
        return TUNE_ERR_NOMEM;
    rs->order = o;
    rs->capacity = cap;
    return TUNE_OK;
}

/* Runs trial i to rung k's budget; *aborted set when the callback asked to stop. */
static void run_trial(struct run_state *rs, int i, int k, tune_event *ev, int *aborted)
{
    const tune_search *s = rs->search;
    tune_trial *t = &rs->res->trial[i];
    long to = s->schedule.budget[k];
    int outcome = TUNE_TRIAL_OK;
    double t0 = clock_now(rs), loss;

    loss = s->run(s->user, i, &t->cfg, t->budget, to, &outcome);
    memset(ev, 0, sizeof *ev);
    ev->seconds = clock_now(rs) - t0;
    *aborted = outcome == TUNE_TRIAL_ABORT;
    t->rung = k;
    t->budget = to;
    t->failed = outcome != TUNE_TRIAL_OK || !isfinite(loss);
    t->loss = t->failed ? NAN : loss;
    t->seconds += ev->seconds;
    ev->trial = i;
    ev->rung = k;
    ev->rungs = s->schedule.rungs;
    ev->budget = to;
    ev->loss = t->loss;
    ev->failed = t->failed;
    ev->rank = 1 + insert_ranked(rs->res->trial, rs->order, &rs->norder, i);
    ev->finished = rs->norder;
    ev->order = rs->order;
    ev->trials = rs->res->trial;
}

/* Trials of the current rung that go on: ceil(entrants / eta), but only
 * successful ones. */
static int promotions(const struct run_state *rs, int entrants)
{
    int keep = tune_survivors(entrants, rs->search->schedule.eta), ok = 0, i;
    for (i = 0; i < rs->norder; i++)
        ok += !rs->res->trial[rs->order[i]].failed;
    return keep < ok ? keep : ok;
}

static void report(const struct run_state *rs, const tune_event *ev)
{
    if (rs->search->report)
        rs->search->report(rs->search->user, ev);
}

static void retire(const struct run_state *rs, int trial)
{
    if (rs->search->retire)
        rs->search->retire(rs->search->user, trial);
}

static tune_status check_search(const tune_search *s, char *err, size_t errsize)
{
    const tune_schedule *sc = &s->schedule;
    int k;

    if (tune_space_check(s->space, err, errsize) != TUNE_OK)
        return TUNE_ERR_ARG;
    if (!s->run) {
        set_err(err, errsize, "no run callback");
        return TUNE_ERR_ARG;
    }
    if (sc->eta < 2 || sc->rungs < 1 || sc->rungs > TUNE_MAX_RUNGS) {
        set_err(err, errsize, "bad schedule (eta %d, %d rungs): make it with tune_schedule_make",
                sc->eta, sc->rungs);
        return TUNE_ERR_ARG;
    }
    for (k = 0; k < sc->rungs; k++)
        if (sc->budget[k] < 1 || (k > 0 && sc->budget[k] <= sc->budget[k - 1])) {
            set_err(err, errsize, "bad schedule: budgets must rise strictly from at least 1");
            return TUNE_ERR_ARG;
        }
    if (s->trials < 0 || (s->trials == 0 && !(s->seconds > 0 && s->seconds <= 1e9))) {
        set_err(err, errsize, "give a trial count above 0 or a time budget in (0, 1e9] seconds");
        return TUNE_ERR_ARG;
    }
    if (s->trials == 0 && !s->now) {
        set_err(err, errsize, "a time budget needs a clock");
        return TUNE_ERR_ARG;
    }
    if (s->trials == 0 && s->max_trials < 0) {
        set_err(err, errsize, "max_trials must be 0 (default) or above, not %d", s->max_trials);
        return TUNE_ERR_ARG;
    }
    return TUNE_OK;
}

/* Rung 0: trials 0, 1, ... until the count or the time budget says stop. */
static tune_status run_first_rung(struct run_state *rs, char *err, size_t errsize)
{
    const tune_search *s = rs->search;
    const tune_schedule *sc = &s->schedule;
    int max = s->trials > 0 ? s->trials : s->max_trials > 0 ? s->max_trials : DEFAULT_MAX_TRIALS;
    double run_seconds = 0;
    tune_rng rng;
    tune_event ev;
    int aborted, n, done;

    tune_rng_seed(&rng, s->seed ^ (uint64_t)SEED_TAG);
    for (n = 0;;) {
        tune_trial *t;
        if (reserve(rs, n) != TUNE_OK) {
            set_err(err, errsize, "out of memory for %d trials", n + 1);
            return TUNE_ERR_NOMEM;
        }
        t = &rs->res->trial[n];
        tune_sample(s->space, &rng, &t->cfg);
        t->rung = -1;
        t->budget = 0;
        t->loss = NAN;
        t->failed = 0;
        t->seconds = 0;
        rs->res->trials = ++n;
        run_trial(rs, n - 1, 0, &ev, &aborted);
        if (aborted) {
            set_err(err, errsize, "stopped by the program at trial %d, rung 0", n - 1);
            return TUNE_ERR_ABORTED;
        }
        run_seconds += ev.seconds;
        if (n >= max) {
            done = 1;
        } else if (s->trials > 0) {
            done = 0;
        } else {
            /* Seconds per budget unit so far, times the work one more trial
             * would add to the whole schedule beyond the rung-0 runs done. */
            double per_unit = run_seconds / ((double)n * (double)sc->budget[0]);
            double rest = tune_schedule_cost(sc, n + 1) - (double)n * (double)sc->budget[0];
            done = clock_now(rs) - rs->start + per_unit * rest > s->seconds;
        }
        ev.entrants = s->trials > 0 ? s->trials : done ? n : 0;
        if (done) {
            ev.rung_done = 1;
            if (sc->rungs > 1)
                ev.promoted = promotions(rs, n);
            else /* rung 0 is the last: its best is the winner, if it succeeded */
                ev.promoted = !rs->res->trial[rs->order[0]].failed;
        }
        report(rs, &ev);
        if (done)
            return TUNE_OK;
    }
}

tune_status tune_run(const tune_search *search, tune_result *res, char *err, size_t errsize)
{
    struct run_state rs;
    int k, i, entrants, keep, *next = NULL;
    tune_status st;

    if (res)
        memset(res, 0, sizeof *res);
    if (!search || !res) {
        set_err(err, errsize, "no search or no result");
        return TUNE_ERR_ARG;
    }
    res->winner = -1;
    if ((st = check_search(search, err, errsize)) != TUNE_OK)
        return st;
    memset(&rs, 0, sizeof rs);
    rs.search = search;
    rs.res = res;
    rs.start = clock_now(&rs);

    if ((st = run_first_rung(&rs, err, errsize)) != TUNE_OK)
        goto done;
    entrants = res->trials;
    for (k = 1; k < search->schedule.rungs; k++) {
        keep = promotions(&rs, entrants);
        if (keep == 0) {
            set_err(err, errsize, "all %d trials of rung %d failed", entrants, k - 1);
            st = TUNE_ERR_ALL_FAILED;
            goto done;
        }
        free(next);
        if (!(next = malloc((size_t)keep * sizeof *next))) {
            set_err(err, errsize, "out of memory");
            st = TUNE_ERR_NOMEM;
            goto done;
        }
        memcpy(next, rs.order, (size_t)keep * sizeof *next);
        for (i = keep; i < rs.norder; i++)
            retire(&rs, rs.order[i]);
        rs.norder = 0;
        for (i = 0; i < keep; i++) {
            tune_event ev;
            int aborted;
            run_trial(&rs, next[i], k, &ev, &aborted);
            if (aborted) {
                set_err(err, errsize, "stopped by the program at trial %d, rung %d", next[i], k);
                st = TUNE_ERR_ABORTED;
                goto done;
            }
            ev.entrants = keep;
            if (i == keep - 1) {
                ev.rung_done = 1;
                ev.promoted = k < search->schedule.rungs - 1
                                  ? promotions(&rs, keep)
                                  : !res->trial[rs.order[0]].failed;
            }
            report(&rs, &ev);
        }
        entrants = keep;
    }
    if (rs.norder == 0 || res->trial[rs.order[0]].failed) {
        set_err(err, errsize, "all %d trials of the last rung failed", entrants);
        st = TUNE_ERR_ALL_FAILED;
        goto done;
    }
    res->winner = rs.order[0];
    for (i = 1; i < rs.norder; i++)
        retire(&rs, rs.order[i]);

done:
    free(next);
    free(rs.order);
    /* The overall ranking: further rung first, then as within a rung. */
    if (res->trials > 0 && (res->ranking = malloc((size_t)res->trials * sizeof *res->ranking))) {
        int n = 0;
        for (k = search->schedule.rungs - 1; k >= -1; k--) {
            int first = n, j;
            for (i = 0; i < res->trials; i++)
                if (res->trial[i].rung == k) {
                    res->ranking[n] = i; /* insertion by rank among this rung's */
                    for (j = n; j > first && ranks_before(res->trial, i, res->ranking[j - 1]); j--)
                        res->ranking[j] = res->ranking[j - 1];
                    res->ranking[j] = i;
                    n++;
                }
        }
    } else if (res->trials > 0 && st == TUNE_OK) {
        set_err(err, errsize, "out of memory");
        st = TUNE_ERR_NOMEM;
    }
    return st;
}

void tune_result_free(tune_result *res)
{
    if (!res)
        return;
    free(res->trial);
    free(res->ranking);
    res->trial = NULL;
    res->ranking = NULL;
    res->trials = 0;
    res->winner = -1;
}
