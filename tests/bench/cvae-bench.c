/*
 * cvae-bench - measures libcvae on this machine: the FMA peak, training
 * throughput of the seed VAE and of the PyTorch examples' MLP VAE against
 * the rate that peak allows, forward and backward time of each layer, the
 * matrix multiply on the seed model's shapes next to the peak, sampling and
 * encoding, and peak memory.
 *
 * Every figure is the median of --repeats timed runs after a warm-up, with
 * the fastest and slowest beside it.
 *
 * A development tool, not an example: it lives in tests/bench/ because it
 * uses the library's internals (lib/cvae_internal.h: the multiply's variants,
 * cvi_gemm, the thread resolution), which it reaches by linking the static
 * library. The models it trains are built through the public API only.
 */
#define _POSIX_C_SOURCE 200809L

#include <cvae.h>

#include "cvae_internal.h"
#include "datasets.h"
#include "example_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_REPEATS 100
#define MAX_THREAD_COUNTS 8
#define POOL_IMAGES 1024 /* training inputs, cycled: at least the largest batch */
#define LAYER_BATCH 128  /* batch of the per-layer and multiply figures */
#define SAMPLE_COUNT 64  /* images per cvae_model_sample call */
#define ENCODE_COUNT 10000
#define QUICK_ENCODE_COUNT 500
#define SEED_LATENT 16
#define MLP_LATENT 20
#define IMAGE_SIDE 28
#define IMAGE_SIZE (IMAGE_SIDE * IMAGE_SIDE)

struct options {
    const char *data, *only; /* MNIST directory; one section (NULL: all) */
    int repeats, quick;
    double seconds; /* work per timed repeat */
    int threads[MAX_THREAD_COUNTS], nthreads;
};

/* Inputs shared by the sections: training images and images to encode. */
struct inputs {
    float *pool;            /* POOL_IMAGES images */
    float *encode;          /* encode_count images */
    int encode_count, real; /* real: MNIST digits, not random pixels */
};

static void usage(FILE *f)
{
    fprintf(f, "usage: cvae-bench [options]\n"
               "\n"
               "Measures libcvae on this machine and prints tables: the single-precision FMA\n"
               "peak, training images/s of the seed VAE and of an MLP VAE (784-400-20, as\n"
               "PyTorch's examples) for batches 32 to 256, forward and backward time of each\n"
               "seed-model layer, the matrix multiply on the seed model's 24 products per\n"
               "variant and thread count next to the peak, sampling and encoding speed, and\n"
               "peak memory. Each figure is the median of the repeats after a warm-up, with\n"
               "min and max.\n"
               "\n"
               "Training rows also give the speed-up over 1 thread and the share of the\n"
               "peak-limited rate: the measured FMA peak for that thread count (the best\n"
               "kernel) over the FLOPs of one training step per image. Those count the\n"
               "multiply work only, from the model's layer shapes: 2 per multiply-add of the\n"
               "forward, weight-gradient and input-gradient products of every conv2d,\n"
               "conv_transpose2d and linear layer (3 x the forward; the input gradient of the\n"
               "encoder's first layer, which a step skips, included): 30.2 MFLOP for the seed\n"
               "model, 3.9 for the MLP. Activations, biases, im2col, the loss and Adam count 0.\n"
               "\n"
               "  --data DIR      MNIST directory: train on real digits and encode the t10k\n"
               "                  set (default: random pixels)\n"
               "  --repeats N     timed repeats per figure (default 5)\n"
               "  --seconds X     work per repeat, in seconds (default 0.5)\n"
               "  --threads LIST  thread counts to compare, e.g. 1,2 (default 1,2)\n"
               "  --quick         fewer batch sizes, 3 repeats of 0.1 s: a smoke run\n"
               "  --only SECTION  train, layers, gemm or sample\n"
               "  --help          this text\n"
               "  --version       program and library version\n");
}

static void parse_threads(const char *list, struct options *o)
{
    const char *p = list;

    o->nthreads = 0;
    while (*p) {
        char token[16];
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof token || o->nthreads == MAX_THREAD_COUNTS)
            ex_usage_error("--threads wants up to %d counts like 1,2, not '%s'", MAX_THREAD_COUNTS,
                           list);
        memcpy(token, p, len);
        token[len] = '\0';
        o->threads[o->nthreads++] = (int)ex_parse_long("--threads", token, 1, CVI_MAX_THREADS);
        p += len + (p[len] == ',');
    }
    if (o->nthreads == 0)
        ex_usage_error("--threads wants a list of counts like 1,2");
}

static void parse_options(int argc, char **argv, struct options *o)
{
    const char *v;
    int i, repeats = 0;
    double seconds = 0;

    ex_help_or_version(argc, argv, usage);
    for (i = 1; i < argc; i++) {
        if (ex_option(argc, argv, &i, "--data", &v))
            o->data = v;
        else if (ex_option(argc, argv, &i, "--repeats", &v))
            repeats = (int)ex_parse_long("--repeats", v, 1, MAX_REPEATS);
        else if (ex_option(argc, argv, &i, "--seconds", &v))
            seconds = ex_parse_double("--seconds", v, 0.001, 60);
        else if (ex_option(argc, argv, &i, "--threads", &v))
            parse_threads(v, o);
        else if (ex_option(argc, argv, &i, "--only", &v)) {
            if (strcmp(v, "train") && strcmp(v, "layers") && strcmp(v, "gemm") &&
                strcmp(v, "sample"))
                ex_usage_error("--only wants train, layers, gemm or sample, not '%s'", v);
            o->only = v;
        } else if (ex_flag(argv[i], "--quick"))
            o->quick = 1;
        else
            ex_unknown_option(argv[i]);
    }
    /* --quick changes the defaults only: explicit values still win. */
    o->repeats = repeats ? repeats : o->quick ? 3 : 5;
    o->seconds = seconds > 0 ? seconds : o->quick ? 0.1 : 0.5;
}

static int section_wanted(const struct options *o, const char *name)
{
    return !o->only || !strcmp(o->only, name);
}

/* ----------------------------------------------------------------- timing */

/* Seconds per call over the repeats. */
struct timing {
    double median, min, max;
};

/* Work to time: runs it `calls` times. Returns 0 or an exit status (after
 * printing why). */
typedef int (*work_fn)(void *ctx, long calls);

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static struct timing summarize(double *samples, int n)
{
    struct timing t;

    qsort(samples, (size_t)n, sizeof *samples, compare_doubles);
    t.min = samples[0];
    t.max = samples[n - 1];
    t.median = n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
    return t;
}

/* Warm-up (caches, page faults, thread start-up) for about a quarter of
 * target, which also prices one call; then `repeats` runs of enough calls
 * for about target seconds each. */
static int measure(work_fn work, void *ctx, int repeats, double target, struct timing *out)
{
    double samples[MAX_REPEATS], start = ex_now(), per_call;
    long calls = 1, done = 0;
    int r, rc;

    do {
        if ((rc = work(ctx, calls)) != 0)
            return rc;
        done += calls;
        calls *= 2;
    } while (ex_now() - start < target / 4);
    per_call = (ex_now() - start) / (double)done;
    calls = per_call > 0 && target / per_call > 1 ? (long)(target / per_call + 0.5) : 1;
    for (r = 0; r < repeats; r++) {
        double t0 = ex_now();
        if ((rc = work(ctx, calls)) != 0)
            return rc;
        samples[r] = (ex_now() - t0) / (double)calls;
    }
    *out = summarize(samples, repeats);
    return 0;
}

/* A small private generator (xorshift64*) for the random inputs. */
static float random_uniform(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (float)((*state * 0x2545F4914F6CDD1DULL) >> 40) * (1.0f / 16777216.0f);
}

/* pixels: multiples of 1/255 in [0, 1], as MNIST's; else uniform in [-1, 1). */
static void random_fill(float *x, size_t n, int pixels, uint64_t *state)
{
    size_t i;
    for (i = 0; i < n; i++)
        x[i] = pixels ? (float)(int)(random_uniform(state) * 256.0f) / 255.0f
                      : 2.0f * random_uniform(state) - 1.0f;
}

/* --------------------------------------------------------------- models */

/* Appends the layer a constructor just made (created: its status). */
static cvae_status add_layer(cvae_stack *s, cvae_status created, cvae_layer **layer)
{
    return created != CVAE_OK ? created : cvae_stack_add(s, *layer);
}

/* PyTorch's examples/vae MLP: 784 -> 400 -> relu -> 2 x 20, and
 * 20 -> 400 -> relu -> 784 -> 1x28x28. A linear layer reads C x H x W as
 * features, so the encoder needs no flatten. */
static cvae_status mlp_stacks(cvae_stack *enc, cvae_stack *dec)
{
    cvae_layer *l = NULL;
    cvae_status st;

    if ((st = add_layer(enc, cvae_layer_create_linear(&l, 400), &l)) != CVAE_OK ||
        (st = add_layer(enc, cvae_layer_create_relu(&l), &l)) != CVAE_OK ||
        (st = add_layer(enc, cvae_layer_create_linear(&l, 2 * MLP_LATENT), &l)) != CVAE_OK ||
        (st = add_layer(dec, cvae_layer_create_linear(&l, 400), &l)) != CVAE_OK ||
        (st = add_layer(dec, cvae_layer_create_relu(&l), &l)) != CVAE_OK ||
        (st = add_layer(dec, cvae_layer_create_linear(&l, IMAGE_SIZE), &l)) != CVAE_OK)
        return st;
    return add_layer(dec, cvae_layer_create_reshape(&l, 1, IMAGE_SIDE, IMAGE_SIDE), &l);
}

/* The seed model, or the MLP, for batches of up to max_batch. */
static int make_model(int mlp, int max_batch, cvae_model **m)
{
    cvae_stack *enc = NULL, *dec = NULL;
    cvae_status st;

    if ((st = cvae_model_create(m)) != CVAE_OK)
        return ex_status_error("creating a model", st, "");
    if (!mlp) {
        st = cvae_model_init_preset(*m, 1, IMAGE_SIDE, IMAGE_SIDE, SEED_LATENT, max_batch, 1);
        return st == CVAE_OK ? 0 : ex_status_error("seed model", st, cvae_model_last_error(*m));
    }
    if ((st = cvae_stack_create(&enc)) != CVAE_OK || (st = cvae_stack_create(&dec)) != CVAE_OK) {
        cvae_stack_destroy(enc);
        return ex_status_error("creating a stack", st, "");
    }
    if ((st = mlp_stacks(enc, dec)) != CVAE_OK) {
        ex_status_error("MLP layers", st, "");
        cvae_stack_destroy(enc);
        cvae_stack_destroy(dec);
        return 1;
    }
    st = cvae_model_init_stacks(*m, enc, dec, 1, IMAGE_SIDE, IMAGE_SIDE, MLP_LATENT, max_batch, 1);
    return st == CVAE_OK ? 0 : ex_status_error("MLP model", st, cvae_model_last_error(*m));
}

static int set_threads(cvae_model *m, int threads)
{
    cvae_status st = cvae_model_set(m, CVAE_MODEL_THREADS, threads);
    return st == CVAE_OK ? 0 : ex_status_error("setting threads", st, cvae_model_last_error(m));
}

/* ---------------------------------------------------------------- flops */

/* Forward flops of one image, from the public shapes and the parameter
 * count (weights = parameters - one bias per output channel), 2 per
 * multiply-add: each conv2d weight is used once per output position, each
 * conv_transpose2d weight once per input position, each linear weight once.
 * Activations and views count 0. */
static double layer_flops(cvae_layer_kind kind, size_t params, int in_h, int in_w, int out_c,
                          int out_h, int out_w)
{
    double weights = (double)params - out_c;

    switch (kind) {
    case CVAE_LAYER_CONV2D:
        return 2.0 * weights * out_h * out_w;
    case CVAE_LAYER_CONV_TRANSPOSE2D:
        return 2.0 * weights * in_h * in_w;
    case CVAE_LAYER_LINEAR:
        return 2.0 * weights;
    default:
        return 0;
    }
}

/* layer_flops of a bound layer, from its public shapes. */
static double layer_forward_flops(const cvae_layer *l)
{
    int ic, ih, iw, oc, oh, ow;

    if (cvae_layer_input_shape(l, &ic, &ih, &iw) != CVAE_OK ||
        cvae_layer_output_shape(l, &oc, &oh, &ow) != CVAE_OK)
        return 0;
    return layer_flops(cvae_layer_get_kind(l), cvae_layer_param_count(l), ih, iw, oc, oh, ow);
}

/* The multiply work of one training step, per image, from the model's layer
 * shapes: every conv2d, conv_transpose2d and linear layer makes three
 * products of its forward's size (forward, weight gradient, input gradient),
 * so 3 x layer_flops summed over encoder and decoder. The input gradient
 * of the encoder's first layer, which a step skips (nothing needs the
 * images' gradient), is counted all the same, as in the speed targets'
 * figures (seed model 30.2 MFLOP, MLP 3.9 MFLOP, of which 0.2 and 0.63 are
 * that gradient).
 * Element-wise work (activations, biases, im2col/col2im, the loss, the
 * sampling, Adam) counts 0. */
static double step_flops_per_image(cvae_model *m)
{
    double flops = 0;
    int s, i;

    for (s = 0; s < 2; s++) {
        cvae_stack *stack = s ? cvae_model_decoder(m) : cvae_model_encoder(m);
        for (i = 0; i < cvae_stack_layer_count(stack); i++)
            flops += 3 * layer_forward_flops(cvae_stack_layer(stack, i));
    }
    return flops;
}

/* ----------------------------------------------------------------- peak */

/* Single-precision FMA peak: 12 independent chains x = x * m + c per vector
 * hide the FMA latency (4 cycles) on two FMA units; m < 1 keeps x bounded.
 * GCC fuses x * m + c into one FMA only with contraction on (-std=c99 turns
 * it off); clang contracts within an expression by default. */
#define PEAK_CHAINS 12
#if defined(__GNUC__) && !defined(__clang__)
#define PEAK_CONTRACT __attribute__((optimize("fp-contract=fast")))
#else
#define PEAK_CONTRACT
#endif

/* GNU C vectors of `lanes` floats; other compilers get scalar chains. */
#if defined(__GNUC__) || defined(__clang__)
#define VECTOR_OF(lanes) __attribute__((vector_size(4 * (lanes))))
#define PLAIN_LANES 4
#else
#define VECTOR_OF(lanes)
#define PLAIN_LANES 1
#endif

/* Distinct starting values, none the fixed point 1 (which a compiler could
 * fold), keep the 12 chains from being merged. */
/* clang-format off */
#define PEAK_STEP(x) x = x * m + c
#define DEFINE_PEAK_KERNEL(name, attr, lanes)                                                      \
    attr PEAK_CONTRACT static float name(long iters)                                               \
    {                                                                                              \
        typedef float vec VECTOR_OF(lanes);                                                        \
        vec x0 = {0}, x1 = x0 + 2, x2 = x0 + 3, x3 = x0 + 4, x4 = x0 + 5, x5 = x0 + 6;             \
        vec x6 = x0 + 7, x7 = x0 + 8, x8 = x0 + 9, x9 = x0 + 10, x10 = x0 + 11, x11 = x0 + 12;     \
        vec m = x0 + 0.999999f, c = x0 + 1e-6f;                                                    \
        float lane[lanes], sum = 0;                                                                \
        long i;                                                                                    \
        int j;                                                                                     \
        for (i = 0; i < iters; i++) {                                                              \
            PEAK_STEP(x0); PEAK_STEP(x1); PEAK_STEP(x2); PEAK_STEP(x3);                            \
            PEAK_STEP(x4); PEAK_STEP(x5); PEAK_STEP(x6); PEAK_STEP(x7);                            \
            PEAK_STEP(x8); PEAK_STEP(x9); PEAK_STEP(x10); PEAK_STEP(x11);                          \
        }                                                                                          \
        x0 = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11;                          \
        memcpy(lane, &x0, sizeof lane);                                                            \
        for (j = 0; j < (lanes); j++)                                                              \
            sum += lane[j];                                                                        \
        return sum;                                                                                \
    }
/* clang-format on */

/* Plain: the compiler's default instruction set (SSE2 on x86-64: no FMA). */
DEFINE_PEAK_KERNEL(peak_plain, , PLAIN_LANES)
#if defined(__GNUC__) && defined(__x86_64__)
#define HAVE_ISA_PEAKS 1
DEFINE_PEAK_KERNEL(peak_avx2, __attribute__((target("avx2,fma"))), 8)
DEFINE_PEAK_KERNEL(peak_avx512, __attribute__((target("avx512f"))), 16)
#endif

/* One kernel per GEMM path: the peak the path's instruction set allows. */
struct peak_kernel {
    const char *name;
    float (*run)(long iters);
    int lanes;
    cvi_gemm_path path;
};

static const struct peak_kernel peak_kernels[] = {
    {"plain C", peak_plain, PLAIN_LANES, CVI_GEMM_PATH_PORTABLE},
#ifdef HAVE_ISA_PEAKS
    {"avx2+fma", peak_avx2, 8, CVI_GEMM_PATH_AVX2},
    {"avx512f", peak_avx512, 16, CVI_GEMM_PATH_AVX512},
#endif
};
#define NPEAK ((int)(sizeof peak_kernels / sizeof peak_kernels[0]))

static int peak_runs_here(const struct peak_kernel *k)
{
#ifdef HAVE_ISA_PEAKS
    if (k->path == CVI_GEMM_PATH_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (k->path == CVI_GEMM_PATH_AVX512)
        return __builtin_cpu_supports("avx512f");
#endif
    return k->path == CVI_GEMM_PATH_PORTABLE;
}

/* GFLOP/s of `threads` copies of the kernel running iters iterations each
 * (OpenMP; a build without it runs one copy). */
static double peak_once(const struct peak_kernel *k, int threads, long iters, volatile float *sink)
{
    double start = ex_now(), seconds;
    float sum = 0;
    int ran = 1;

#ifdef _OPENMP
    if (threads > 1) {
        ran = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sum, ran)
        {
            sum += k->run(iters);
            ran += 1;
        }
    } else
#endif
        sum = k->run(iters);
    (void)threads;
    seconds = ex_now() - start;
    *sink += sum; /* the sums are used, so the loops are not optimised away */
    return (double)ran * iters * PEAK_CHAINS * k->lanes * 2 / seconds / 1e9;
}

/* Best of the repeats: the peak is what the machine can do at all. */
static double peak_gflops(const struct peak_kernel *k, int threads, const struct options *o)
{
    volatile float sink = 0;
    double start, best = 0, g;
    long iters = 1 << 12;
    int r;

    do { /* first calibration runs also warm up the cores */
        iters *= 2;
        start = ex_now();
        peak_once(k, threads, iters, &sink);
    } while (ex_now() - start < o->seconds / 10);
    for (r = 0; r < o->repeats; r++)
        if ((g = peak_once(k, threads, iters, &sink)) > best)
            best = g;
    return best;
}

/* The measured FMA peaks, GFLOP/s: kernel[k][t] of peak kernel k on
 * o->threads[t] threads (0 for kernels this CPU does not run), and best[t],
 * the machine's peak on that many threads: the best kernel's. */
struct peaks {
    double kernel[NPEAK][MAX_THREAD_COUNTS];
    double best[MAX_THREAD_COUNTS];
};

/* Measures and prints the peak of every kernel this CPU runs, for each
 * thread count. */
static void measure_peaks(const struct options *o, struct peaks *pk)
{
    int k, t;

    printf("\n== single-precision FMA peak, GFLOP/s (best of %d; independent vector "
           "multiply-adds)\n%-10s",
           o->repeats, "kernel");
    for (t = 0; t < o->nthreads; t++) {
        printf(" %9d thr", o->threads[t]);
        pk->best[t] = 0;
    }
    printf("\n");
    for (k = 0; k < NPEAK; k++) {
        for (t = 0; t < o->nthreads; t++)
            pk->kernel[k][t] = 0;
        if (!peak_runs_here(&peak_kernels[k]))
            continue;
        printf("%-10s", peak_kernels[k].name);
        for (t = 0; t < o->nthreads; t++) {
#ifdef _OPENMP
            pk->kernel[k][t] = peak_gflops(&peak_kernels[k], o->threads[t], o);
#else
            pk->kernel[k][t] = o->threads[t] * peak_gflops(&peak_kernels[k], 1, o);
#endif
            if (pk->kernel[k][t] > pk->best[t])
                pk->best[t] = pk->kernel[k][t];
            printf(" %13.1f", pk->kernel[k][t]);
            fflush(stdout);
        }
        printf("\n");
    }
#ifndef _OPENMP
    printf("(built without OpenMP: n threads are n x the 1-thread figure)\n");
#endif
}

/* ------------------------------------------------------------- training */

struct train_work {
    cvae_model *m;
    cvae_optimizer *opt;
    const float *pool;
    int batch;
    long next; /* index of the next batch of the pool */
};

static int train_steps(void *ctx, long calls)
{
    struct train_work *w = ctx;
    long batches = POOL_IMAGES / w->batch, i;

    for (i = 0; i < calls; i++, w->next++) {
        const float *x = w->pool + (size_t)(w->next % batches) * (size_t)w->batch * IMAGE_SIZE;
        cvae_status st = cvae_model_train_step(w->m, w->opt, x, w->batch, NULL, NULL);
        if (st != CVAE_OK)
            return ex_status_error("training step", st, cvae_model_last_error(w->m));
    }
    return 0;
}

/* The index of the 1-thread figure, the base of the speed-ups: the first
 * count when 1 is not measured. */
static int base_thread_index(const struct options *o)
{
    int t;

    for (t = 0; t < o->nthreads; t++)
        if (o->threads[t] == 1)
            return t;
    return 0;
}

/* Images/s at the FMA peak of thread count t for a step of `flops` per
 * image: peak / flops. Built without OpenMP, every call runs on one
 * thread, so the step has one core's peak whatever the count. */
static double peak_limited_rate(const struct options *o, const struct peaks *pk, int t,
                                double flops)
{
    double peak = pk->best[t];

#ifndef _OPENMP
    peak /= o->threads[t];
#else
    (void)o;
#endif
    return flops > 0 ? peak * 1e9 / flops : 0;
}

/* One table row per thread count for one model and batch size: all thread
 * counts are measured first, so that each row has its speed-up. */
static int bench_training_model(const struct options *o, const struct inputs *in,
                                const struct peaks *pk, int mlp, int batch, double flops)
{
    struct train_work w = {NULL, NULL, NULL, 0, 0};
    struct timing tm[MAX_THREAD_COUNTS];
    int t, base = base_thread_index(o), rc;
    cvae_status st;

    w.pool = in->pool;
    w.batch = batch;
    if ((rc = make_model(mlp, batch, &w.m)) != 0)
        goto done;
    st = cvae_optimizer_create(&w.opt, CVAE_OPTIMIZER_ADAM, cvae_model_param_count(w.m));
    if (st != CVAE_OK) {
        rc = ex_status_error("creating the optimizer", st, "");
        goto done;
    }
    for (t = 0; t < o->nthreads; t++)
        if ((rc = set_threads(w.m, o->threads[t])) != 0 ||
            (rc = measure(train_steps, &w, o->repeats, o->seconds, &tm[t])) != 0)
            goto done;
    for (t = 0; t < o->nthreads; t++) {
        double rate = batch / tm[t].median, limit = peak_limited_rate(o, pk, t, flops);
        printf("%-5s %5d %7d %8.0f %8.0f %8.0f %8.2fx %8.0f %6.1f%%\n", mlp ? "mlp" : "seed", batch,
               o->threads[t], rate, batch / tm[t].max, batch / tm[t].min,
               tm[base].median / tm[t].median, limit, limit > 0 ? 100 * rate / limit : 0);
    }
    fflush(stdout);
done:
    cvae_optimizer_destroy(w.opt);
    cvae_model_destroy(w.m);
    return rc;
}

static int bench_training(const struct options *o, const struct inputs *in, const struct peaks *pk)
{
    static const int all_batches[] = {32, 64, 128, 256}, quick_batches[] = {32, 128};
    const int *batches = o->quick ? quick_batches : all_batches;
    int nbatches = o->quick ? 2 : 4, mlp, b, rc = 0;
    double flops[2];
    cvae_model *m;

    for (mlp = 0; mlp <= 1; mlp++) { /* the work of a step does not depend on the batch */
        m = NULL;
        if ((rc = make_model(mlp, 1, &m)) == 0)
            flops[mlp] = step_flops_per_image(m);
        cvae_model_destroy(m);
        if (rc != 0)
            return rc;
    }
    printf("\n== training: images/s, Adam, %s inputs, GEMM path %s (median, min, max of %d x "
           "%.2g s)\n",
           in->real ? "MNIST" : "random", cvi_gemm_path_name(CVI_GEMM_PATH_AUTO), o->repeats,
           o->seconds);
    printf("speed-up: over %s; limit: images/s at the FMA peak of that thread count (the best\n"
           "kernel above) for the multiply work of a step, 3 x the forward FLOPs of each conv\n"
           "and linear layer: seed %.1f MFLOP per image, mlp %.2f MFLOP; share: median / limit\n",
           o->threads[base_thread_index(o)] == 1 ? "1 thread" : "the first thread count",
           flops[0] / 1e6, flops[1] / 1e6);
    printf("%-5s %5s %7s %8s %8s %8s %9s %8s %7s\n", "model", "batch", "threads", "median", "min",
           "max", "speed-up", "limit", "share");
    for (mlp = 0; mlp <= 1 && rc == 0; mlp++)
        for (b = 0; b < nbatches && rc == 0; b++)
            rc = bench_training_model(o, in, pk, mlp, batches[b], flops[mlp]);
    return rc;
}

/* --------------------------------------------------------------- layers */

struct layer_work {
    cvae_layer *layer;
    const float *in, *dout;
    float *out, *din;
    int backward;
};

static int layer_calls(void *ctx, long calls)
{
    struct layer_work *w = ctx;
    long i;

    for (i = 0; i < calls; i++) {
        cvae_status st =
            w->backward ? cvae_layer_backward(w->layer, w->in, w->out, w->dout, w->din, LAYER_BATCH)
                        : cvae_layer_forward(w->layer, w->in, w->out, LAYER_BATCH);
        if (st != CVAE_OK)
            return ex_status_error(w->backward ? "layer backward" : "layer forward", st,
                                   cvae_layer_last_error(w->layer));
    }
    return 0;
}

/* Sums over the layers of one table. */
struct layer_totals {
    double fwd, bwd, flops;
};

/* Times one layer of a built stack on random inputs and output gradients
 * and prints its row. Flatten and reshape are views inside a stack (the
 * layer call would copy), so they are listed without a time. */
static int bench_layer(const struct options *o, cvae_layer *l, const char *label,
                       struct layer_totals *sum)
{
    struct layer_work w = {NULL, NULL, NULL, NULL, NULL, 0};
    cvae_layer_kind kind = cvae_layer_get_kind(l);
    int ic, ih, iw, oc, oh, ow, rc = 0;
    size_t in_size, out_size;
    struct timing tf, tb;
    uint64_t rng = 7;
    float *buf;
    char shape[48];
    double f;
    cvae_status st;

    if ((st = cvae_layer_input_shape(l, &ic, &ih, &iw)) != CVAE_OK ||
        (st = cvae_layer_output_shape(l, &oc, &oh, &ow)) != CVAE_OK)
        return ex_status_error("layer shape", st, "");
    snprintf(shape, sizeof shape, "%dx%dx%d -> %dx%dx%d", ic, ih, iw, oc, oh, ow);
    printf("%-6s %-17s %-22s", label, cvae_layer_kind_name(l), shape);
    if (kind == CVAE_LAYER_FLATTEN || kind == CVAE_LAYER_RESHAPE) {
        printf(" (a view in a stack: no work)\n");
        return 0;
    }
    in_size = (size_t)LAYER_BATCH * ic * ih * iw;
    out_size = (size_t)LAYER_BATCH * oc * oh * ow;
    if (!(buf = malloc(2 * (in_size + out_size) * sizeof *buf)))
        return ex_error("out of memory");
    random_fill(buf, 2 * (in_size + out_size), 0, &rng);
    w.layer = l;
    w.in = buf;
    w.din = buf + in_size;
    w.out = buf + 2 * in_size;
    w.dout = buf + 2 * in_size + out_size;
    /* Forward first: backward reads the forward's output. */
    if ((rc = measure(layer_calls, &w, o->repeats, o->seconds / 10, &tf)) == 0) {
        w.backward = 1;
        rc = measure(layer_calls, &w, o->repeats, o->seconds / 10, &tb);
    }
    free(buf);
    if (rc != 0)
        return rc;
    f = layer_flops(kind, cvae_layer_param_count(l), ih, iw, oc, oh, ow) * LAYER_BATCH;
    sum->fwd += tf.median;
    sum->bwd += tb.median;
    sum->flops += f;
    if (f > 0)
        printf(" %8.3f %8.1f %8.3f %8.1f\n", 1e3 * tf.median, f / tf.median / 1e9, 1e3 * tb.median,
               2 * f / tb.median / 1e9);
    else
        printf(" %8.3f %8s %8.3f %8s\n", 1e3 * tf.median, "-", 1e3 * tb.median, "-");
    return 0;
}

static int bench_layers(const struct options *o)
{
    cvae_model *m = NULL;
    int s, i, t, rc;

    if ((rc = make_model(0, LAYER_BATCH, &m)) != 0)
        goto done;
    for (t = 0; t < o->nthreads && rc == 0; t++) {
        struct layer_totals sum = {0, 0, 0};
        if ((rc = set_threads(m, o->threads[t])) != 0)
            break;
        printf("\n== layers of the seed model, batch %d, %d thread%s (median ms; backward = "
               "weight + input gradient, 2x the flops)\n",
               LAYER_BATCH, o->threads[t], o->threads[t] > 1 ? "s" : "");
        printf("%-6s %-17s %-22s %8s %8s %8s %8s\n", "layer", "kind", "input -> output", "fwd ms",
               "GFLOP/s", "bwd ms", "GFLOP/s");
        for (s = 0; s < 2 && rc == 0; s++) {
            cvae_stack *stack = s ? cvae_model_decoder(m) : cvae_model_encoder(m);
            for (i = 0; i < cvae_stack_layer_count(stack) && rc == 0; i++) {
                char label[16];
                snprintf(label, sizeof label, "%s %d", s ? "dec" : "enc", i);
                rc = bench_layer(o, cvae_stack_layer(stack, i), label, &sum);
            }
        }
        if (rc == 0)
            printf("%-47s %8.3f %8.1f %8.3f %8.1f\n", "total", 1e3 * sum.fwd,
                   sum.flops / sum.fwd / 1e9, 1e3 * sum.bwd, 2 * sum.flops / sum.bwd / 1e9);
    }
done:
    cvae_model_destroy(m);
    return rc;
}

/* ----------------------------------------------------------------- gemm */

/* The 24 products of one training step of the seed model (1x28x28, latent
 * 16), as the layers issue them for a batch of n: for each layer forward,
 * weight gradient (accumulating: beta 1) and input gradient (which a step
 * skips for the first layer: nothing needs the images' gradient). BATCHED(x)
 * stands for x per image: the linear layers multiply the whole batch at
 * once, the convolutions a group of images at a time (as many as keep the
 * columns under the library's bound, cvi_conv_group of the `cols` floats of
 * one image's columns), so their products are timed at the group's size and
 * counted batch / group times. conv2d: F filters, CKK = C*KH*KW, P = OH*OW;
 * conv_transpose2d: C in, FKK = F*KH*KW, HW = H*W input positions. */
#define BATCHED(x) (-(long)(x))
struct gemm_shape {
    const char *layer, *product;
    int trans_a, trans_b;
    long m, n, k; /* a negative size is per image: times the images per call */
    float beta;
    long cols; /* convolutions: column floats per image; 0 for linear layers */
};

static const struct gemm_shape seed_products[] = {
    {"conv2d 1->32", "forward", 0, 0, 32, BATCHED(196), 16, 0, 16 * 196},
    {"conv2d 1->32", "dweight", 0, 1, 32, 16, BATCHED(196), 1, 16 * 196},
    {"conv2d 1->32", "dinput", 1, 0, 16, BATCHED(196), 32, 0, 16 * 196},
    {"conv2d 32->64", "forward", 0, 0, 64, BATCHED(49), 512, 0, 512 * 49},
    {"conv2d 32->64", "dweight", 0, 1, 64, 512, BATCHED(49), 1, 512 * 49},
    {"conv2d 32->64", "dinput", 1, 0, 512, BATCHED(49), 64, 0, 512 * 49},
    {"linear 3136->256", "forward", 0, 1, BATCHED(1), 256, 3136, 0, 0},
    {"linear 3136->256", "dweight", 1, 0, 256, 3136, BATCHED(1), 1, 0},
    {"linear 3136->256", "dinput", 0, 0, BATCHED(1), 3136, 256, 0, 0},
    {"linear 256->32", "forward", 0, 1, BATCHED(1), 32, 256, 0, 0},
    {"linear 256->32", "dweight", 1, 0, 32, 256, BATCHED(1), 1, 0},
    {"linear 256->32", "dinput", 0, 0, BATCHED(1), 256, 32, 0, 0},
    {"linear 16->256", "forward", 0, 1, BATCHED(1), 256, 16, 0, 0},
    {"linear 16->256", "dweight", 1, 0, 256, 16, BATCHED(1), 1, 0},
    {"linear 16->256", "dinput", 0, 0, BATCHED(1), 16, 256, 0, 0},
    {"linear 256->3136", "forward", 0, 1, BATCHED(1), 3136, 256, 0, 0},
    {"linear 256->3136", "dweight", 1, 0, 3136, 256, BATCHED(1), 1, 0},
    {"linear 256->3136", "dinput", 0, 0, BATCHED(1), 256, 3136, 0, 0},
    {"convT 64->32", "forward", 1, 0, 512, BATCHED(49), 64, 0, 512 * 49},
    {"convT 64->32", "dweight", 0, 1, 64, 512, BATCHED(49), 1, 512 * 49},
    {"convT 64->32", "dinput", 0, 0, 64, BATCHED(49), 512, 0, 512 * 49},
    {"convT 32->1", "forward", 1, 0, 16, BATCHED(196), 32, 0, 16 * 196},
    {"convT 32->1", "dweight", 0, 1, 32, 16, BATCHED(196), 1, 16 * 196},
    {"convT 32->1", "dinput", 0, 0, 32, BATCHED(196), 16, 0, 16 * 196},
};
#define NPRODUCTS ((int)(sizeof seed_products / sizeof seed_products[0]))
#define MAX_COMBOS (4 * MAX_THREAD_COUNTS)

/* Images one call of product s covers, and calls per batch of LAYER_BATCH. */
static size_t images_per_call(const struct gemm_shape *s)
{
    size_t group = s->cols ? cvi_conv_group((size_t)s->cols) : LAYER_BATCH;
    return group < LAYER_BATCH ? group : LAYER_BATCH;
}

static double calls_per_batch(const struct gemm_shape *s)
{
    return (double)LAYER_BATCH / (double)images_per_call(s);
}

static size_t batched(const struct gemm_shape *s, long size)
{
    return size < 0 ? (size_t)-size * images_per_call(s) : (size_t)size;
}

/* Flops of product s over a whole batch. */
static double product_flops(const struct gemm_shape *s)
{
    return 2.0 * (double)batched(s, s->m) * (double)batched(s, s->n) * (double)batched(s, s->k) *
           calls_per_batch(s);
}

/* Runs product s `calls` times on a, b, c; stored shapes follow the
 * transposes (op(A) is M x K, so A is K x M when transposed). */
static void run_product(const cvi_gemm_env *env, const struct gemm_shape *s, const float *a,
                        const float *b, float *c, long calls)
{
    size_t M = batched(s, s->m), N = batched(s, s->n), K = batched(s, s->k);
    long i;

    for (i = 0; i < calls; i++)
        cvi_gemm(env, s->trans_a, s->trans_b, M, N, K, 1.0f, a, s->trans_a ? M : K, b,
                 s->trans_b ? K : N, s->beta, c, N);
}

/* Per product and in total (a repeat = every product once, each timed for
 * about target / NPRODUCTS): median seconds per product, and the spread of
 * the total. Interleaving the products spreads any disturbance over all. */
static void time_products(const cvi_gemm_env *env, const float *a, const float *b, float *c,
                          const struct options *o, double *product_median, struct timing *total)
{
    double per_call[NPRODUCTS][MAX_REPEATS];
    double totals[MAX_REPEATS] = {0}, start;
    long calls[NPRODUCTS];
    int p, r;

    for (p = 0; p < NPRODUCTS; p++) { /* warm-up, then price one call */
        run_product(env, &seed_products[p], a, b, c, 1);
        start = ex_now();
        run_product(env, &seed_products[p], a, b, c, 1);
        calls[p] = (long)(o->seconds / NPRODUCTS / (ex_now() - start + 1e-9)) + 1;
    }
    for (r = 0; r < o->repeats; r++)
        for (p = 0; p < NPRODUCTS; p++) {
            start = ex_now();
            run_product(env, &seed_products[p], a, b, c, calls[p]);
            /* seconds per batch: a call times the calls a batch makes */
            per_call[p][r] = (ex_now() - start) / (double)calls[p] *
                             calls_per_batch(&seed_products[p]);
            totals[r] += per_call[p][r];
        }
    for (p = 0; p < NPRODUCTS; p++)
        product_median[p] = summarize(per_call[p], o->repeats).median;
    *total = summarize(totals, o->repeats);
}

static int bench_gemm(const struct options *o, const struct peaks *pk)
{
    double median[MAX_COMBOS][NPRODUCTS], all_flops = 0;
    struct timing total[MAX_COMBOS];
    cvi_gemm_path path, combo_path[MAX_COMBOS];
    int combo_threads[MAX_COMBOS], ncombos = 0, p, t, k, i, max_threads = 1;
    size_t a_size = 0, b_size = 0, c_size = 0;
    float *block, *ws;
    uint64_t rng = 11;

    for (p = 0; p < NPRODUCTS; p++) {
        const struct gemm_shape *s = &seed_products[p];
        size_t M = batched(s, s->m), N = batched(s, s->n), K = batched(s, s->k);
        /* Sizes rounded to 16 floats keep B and C 64-byte aligned in the block. */
        a_size = (M * K + 15) / 16 * 16 > a_size ? (M * K + 15) / 16 * 16 : a_size;
        b_size = (K * N + 15) / 16 * 16 > b_size ? (K * N + 15) / 16 * 16 : b_size;
        c_size = M * N > c_size ? M * N : c_size;
        all_flops += product_flops(s);
    }
    for (t = 0; t < o->nthreads; t++)
        max_threads = o->threads[t] > max_threads ? o->threads[t] : max_threads;
    block = cvi_alloc_floats(NULL, a_size + b_size + c_size);
    ws = cvi_alloc_floats(NULL, cvi_gemm_workspace_floats(max_threads));
    if (!block || !ws) {
        cvi_free_floats(NULL, block);
        cvi_free_floats(NULL, ws);
        return ex_error("out of memory");
    }
    random_fill(block, a_size + b_size, 0, &rng);
    memset(block + a_size + b_size, 0, c_size * sizeof *block);

    for (path = CVI_GEMM_PATH_PORTABLE; path <= CVI_GEMM_PATH_AVX512; path++)
        for (t = 0; t < o->nthreads && cvi_gemm_path_available(path); t++, ncombos++) {
            cvi_gemm_env env;
            env.path = path;
            env.threads = o->threads[t];
            env.ws = ws;
            combo_path[ncombos] = path;
            combo_threads[ncombos] = t;
            time_products(&env, block, block + a_size, block + a_size + b_size, o, median[ncombos],
                          &total[ncombos]);
        }
    cvi_free_floats(NULL, block);
    cvi_free_floats(NULL, ws);

    printf("\n== matrix multiply on the seed model's products, batch %d: median GFLOP/s\n",
           LAYER_BATCH);
    printf("%-17s %-7s %2s %6s %6s %6s", "layer", "product", "op", "M", "N", "K");
    for (i = 0; i < ncombos; i++) {
        char head[32];
        snprintf(head, sizeof head, "%s/%d", cvi_gemm_path_name(combo_path[i]),
                 o->threads[combo_threads[i]]);
        printf(" %10s", head);
    }
    printf("\n");
    for (p = 0; p < NPRODUCTS; p++) {
        const struct gemm_shape *s = &seed_products[p];
        printf("%-17s %-7s %c%c %6zu %6zu %6zu", s->layer, s->product, s->trans_a ? 'T' : 'N',
               s->trans_b ? 'T' : 'N', batched(s, s->m), batched(s, s->n), batched(s, s->k));
        for (i = 0; i < ncombos; i++)
            printf(" %10.1f", product_flops(s) / median[i][p] / 1e9);
        printf("\n");
    }

    printf("\n== multiply, all %d products (%.2f GFLOP a step): GFLOP/s; share of the peak of "
           "the path's instruction set, and of the best\n",
           NPRODUCTS, all_flops / 1e9);
    printf("%-10s %7s %8s %8s %8s %8s %6s %6s\n", "path", "threads", "median", "min", "max", "peak",
           "share", "best");
    for (i = 0; i < ncombos; i++) {
        double g = all_flops / total[i].median / 1e9, own = 0, best;
        t = combo_threads[i];
        best = pk->best[t];
        for (k = 0; k < NPEAK; k++)
            if (peak_kernels[k].path == combo_path[i])
                own = pk->kernel[k][t];
        printf("%-10s %7d %8.1f %8.1f %8.1f %8.1f %5.0f%% %5.0f%%\n",
               cvi_gemm_path_name(combo_path[i]), o->threads[t], g, all_flops / total[i].max / 1e9,
               all_flops / total[i].min / 1e9, own, own > 0 ? 100 * g / own : 0,
               best > 0 ? 100 * g / best : 0);
    }
    return 0;
}

/* -------------------------------------------------------------- sampling */

struct sample_work {
    cvae_model *m;
    const float *x;
    float *mu, *images;
    int count;
};

static int sample_calls(void *ctx, long calls)
{
    struct sample_work *w = ctx;
    long i;

    for (i = 0; i < calls; i++) {
        cvae_status st = cvae_model_sample(w->m, SAMPLE_COUNT, (uint64_t)i, w->images);
        if (st != CVAE_OK)
            return ex_status_error("sampling", st, cvae_model_last_error(w->m));
    }
    return 0;
}

static int encode_decode_calls(void *ctx, long calls)
{
    struct sample_work *w = ctx;
    cvae_status st;
    long i;

    for (i = 0; i < calls; i++) {
        if ((st = cvae_model_encode(w->m, w->x, w->count, w->mu, NULL)) != CVAE_OK)
            return ex_status_error("encoding", st, cvae_model_last_error(w->m));
        if ((st = cvae_model_decode(w->m, w->mu, w->count, w->images)) != CVAE_OK)
            return ex_status_error("decoding", st, cvae_model_last_error(w->m));
    }
    return 0;
}

static int bench_sampling(const struct options *o, const struct inputs *in)
{
    struct sample_work w = {NULL, in->encode, NULL, NULL, in->encode_count};
    int t, rc;

    if ((rc = make_model(0, LAYER_BATCH, &w.m)) != 0)
        goto done;
    w.mu = malloc((size_t)in->encode_count * SEED_LATENT * sizeof *w.mu);
    w.images = malloc((size_t)in->encode_count * IMAGE_SIZE * sizeof *w.images);
    if (!w.mu || !w.images) {
        rc = ex_error("out of memory");
        goto done;
    }
    printf("\n== seed model (max batch %d): sampling %d digits (ms) and encoding + decoding "
           "%d %s images (images/s)\n",
           LAYER_BATCH, SAMPLE_COUNT, in->encode_count, in->real ? "t10k" : "random");
    printf("%-8s %9s %9s %9s %10s %10s %10s\n", "threads", "sample", "min", "max", "enc+dec", "min",
           "max");
    for (t = 0; t < o->nthreads; t++) {
        struct timing ts, te;
        if ((rc = set_threads(w.m, o->threads[t])) != 0 ||
            (rc = measure(sample_calls, &w, o->repeats, o->seconds / 5, &ts)) != 0 ||
            (rc = measure(encode_decode_calls, &w, o->repeats, o->seconds, &te)) != 0)
            break;
        printf("%-8d %9.2f %9.2f %9.2f %10.0f %10.0f %10.0f\n", o->threads[t], 1e3 * ts.median,
               1e3 * ts.min, 1e3 * ts.max, w.count / te.median, w.count / te.max, w.count / te.min);
        fflush(stdout);
    }
done:
    free(w.mu);
    free(w.images);
    cvae_model_destroy(w.m);
    return rc;
}

/* ------------------------------------------------------------------ main */

/* The training pool and the images to encode, for the sections that run:
 * MNIST when --data has it, else random pixels. */
static int load_inputs(const struct options *o, struct inputs *in)
{
    int train_images = section_wanted(o, "train") ? POOL_IMAGES : 0;
    cvae_dataset *train = NULL, *test = NULL;
    cvae_status st = CVAE_OK;
    uint64_t rng = 3;
    int rc = 0;

    in->encode_count = !section_wanted(o, "sample") ? 0
                       : o->quick                   ? QUICK_ENCODE_COUNT
                                                    : ENCODE_COUNT;
    in->real = o->data && ex_data_present(EX_FORMAT_IDX, o->data, "train") &&
               ex_data_present(EX_FORMAT_IDX, o->data, "t10k");
    if (o->data && !in->real)
        fprintf(stderr, "%s: note: no MNIST files in %s, using random images\n", ex_prog, o->data);
    if (in->real && ((train_images && ex_load_data(EX_FORMAT_IDX, o->data, "train", 0, &train) != CVAE_OK) ||
                     (in->encode_count && ex_load_data(EX_FORMAT_IDX, o->data, "t10k", 0, &test) != CVAE_OK))) {
        rc = 1;
        goto done;
    }
    if (test && cvae_dataset_count(test) < in->encode_count)
        in->encode_count = cvae_dataset_count(test);
    /* + 1: a section that does not run gets an empty buffer, never malloc(0). */
    in->pool = malloc(((size_t)train_images * IMAGE_SIZE + 1) * sizeof *in->pool);
    in->encode = malloc(((size_t)in->encode_count * IMAGE_SIZE + 1) * sizeof *in->encode);
    if (!in->pool || !in->encode) {
        rc = ex_error("out of memory");
        goto done;
    }
    if (!in->real) {
        random_fill(in->pool, (size_t)train_images * IMAGE_SIZE, 1, &rng);
        random_fill(in->encode, (size_t)in->encode_count * IMAGE_SIZE, 1, &rng);
    } else {
        /* A training set smaller than the pool is repeated to fill it. */
        int have = train ? cvae_dataset_count(train) : 0, first;
        for (first = 0; train && st == CVAE_OK && first < POOL_IMAGES; first += have)
            st = cvae_dataset_batch(train, 0, POOL_IMAGES - first < have ? POOL_IMAGES - first : have,
                                    in->pool + (size_t)first * IMAGE_SIZE, NULL);
        if (st == CVAE_OK && test)
            st = cvae_dataset_batch(test, 0, in->encode_count, in->encode, NULL);
        if (st != CVAE_OK)
            rc = ex_status_error("reading MNIST", st,
                                 cvae_dataset_last_error(st == CVAE_OK || !test ? train : test));
    }
done:
    cvae_dataset_destroy(train);
    cvae_dataset_destroy(test);
    return rc;
}

int main(int argc, char **argv)
{
    struct options o = {NULL, NULL, 0, 0, 0, {1, 2}, 2};
    struct inputs in = {NULL, NULL, 0, 0};
    struct peaks pk;
    struct rusage usage_now;
    cvi_gemm_path path;
    int t, rc;

    ex_prog = "cvae-bench";
    parse_options(argc, argv, &o);

    printf(
        "cvae-bench: libcvae %s, %ld cores online, GEMM path %s (available:", cvae_version_string(),
        sysconf(_SC_NPROCESSORS_ONLN), cvi_gemm_path_name(cvi_gemm_path_best()));
    for (path = CVI_GEMM_PATH_PORTABLE; path <= CVI_GEMM_PATH_AVX512; path++)
        if (cvi_gemm_path_available(path))
            printf(" %s", cvi_gemm_path_name(path));
    printf("), threads");
    for (t = 0; t < o.nthreads; t++)
        printf("%c%d", t ? ',' : ' ', o.threads[t]);
    /* A library built without OpenMP runs every call on one thread. */
    printf("%s; repeats %d x %.2g s\n", cvi_threads_resolve(2) > 1 ? "" : " (no OpenMP: 1)",
           o.repeats, o.seconds);
    fflush(stdout);

    if ((rc = load_inputs(&o, &in)) != 0)
        goto done;
    /* Training and the multiply are each measured against the peak. */
    if (section_wanted(&o, "train") || section_wanted(&o, "gemm"))
        measure_peaks(&o, &pk);
    if ((section_wanted(&o, "train") && (rc = bench_training(&o, &in, &pk)) != 0) ||
        (section_wanted(&o, "layers") && (rc = bench_layers(&o)) != 0) ||
        (section_wanted(&o, "gemm") && (rc = bench_gemm(&o, &pk)) != 0) ||
        (section_wanted(&o, "sample") && (rc = bench_sampling(&o, &in)) != 0))
        goto done;

    if (getrusage(RUSAGE_SELF, &usage_now) == 0) /* ru_maxrss is in KiB on Linux */
        printf("\npeak resident memory: %.1f MiB\n", (double)usage_now.ru_maxrss / 1024.0);
    printf("GEMM path of the layers: %s; threads measured:",
           cvi_gemm_path_name(CVI_GEMM_PATH_AUTO));
    for (t = 0; t < o.nthreads; t++)
        printf("%c%d", t ? ',' : ' ', o.threads[t]);
    printf(" (automatic would use %d)\n", cvi_threads_resolve(0));
done:
    free(in.pool);
    free(in.encode);
    return rc;
}
