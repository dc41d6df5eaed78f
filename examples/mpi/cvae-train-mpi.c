/*
 * cvae-train-mpi - cvae-train on several processes (MPI ranks, on one machine
 * or many): data-parallel training of the built-in VAE.
 *
 *   mpirun -np P cvae-train-mpi --data DIR [cvae-train's options]
 *
 * Every rank reads the data set and holds a replica of the model and
 * optimizer. Each global batch of B images (--batch), in the seeded epoch
 * order of a one-process run, is cut into P shards; each rank computes its
 * shard's part of the gradient (cvae_model_shard_grads), an MPI_Allreduce
 * sums the parts, and every rank applies the same update
 * (cvae_model_apply_grads), so the replicas stay equal. Rank 0 alone prints,
 * writes the checkpoints, the CSV log and the chart; the test loss is
 * computed over shards of the test set and summed.
 *
 * Shows the 0.8 data-parallel API. Built by `make mpi` with mpicc; the
 * library itself knows nothing of MPI.
 */
#define _POSIX_C_SOURCE 200809L

#include <cvae.h>

#include "example_util.h"
#include "train_cli.h"

#include <mpi.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Test hook (tests/check_mpi.sh): the rank named here nudges one of its
 * parameters after the run's first step, as a replica that drifted would. */
#define DRIFT_ENV "CVAE_TRAIN_MPI_TEST_DRIFT"

struct mpi_options {
    long check_every; /* steps between replica checks; 0: only at each epoch's end */
    double bucket_mb; /* gradient bucket size; 0: one allreduce after the backward */
    int timing;
};

static const char extra_help[] =
    "  --check-every N  compare a checksum of every rank's parameters every N steps\n"
    "                   and at the end of each epoch, stopping if a replica drifted\n"
    "                   (default 100; 0: at the end of each epoch only)\n"
    "  --bucket-mb X    sum the gradient in buckets of about X MB (a decimal), each\n"
    "                   started (MPI_Iallreduce) while the backward pass computes\n"
    "                   the next; for networks where MPI moves data on its own\n"
    "                   (default 0: one allreduce after the backward, faster on\n"
    "                   one machine: docs/DISTRIBUTED.md)\n"
    "  --timing         print the steps per second, the time spent waiting for the\n"
    "                   slowest rank (a barrier before each allreduce, only with\n"
    "                   --timing) and in the gradient's allreduce when training ends\n";

static const char extra_notes[] =
    "Run it under MPI: mpirun -np P cvae-train-mpi --data DIR ... (Open MPI: add\n"
    "--oversubscribe for more ranks than cores). Each batch of B images is cut\n"
    "into P shards of the same epoch order as cvae-train's, and the ranks' parts of\n"
    "the gradient are summed before every update, so P ranks train what one\n"
    "process trains: with P = 2 the same bits as cvae-train (a batch is computed\n"
    "in two halves there too); with other P the sums differ in their order only.\n"
    "Every rank reads DIR and --resume (a shared file system on several machines);\n"
    "rank 0 writes OUT, the log and the chart. --resume works with any P. A rank\n"
    "that fails ends the whole job with its message. Under mpirun, Ctrl-C ends the\n"
    "job at once (no OUT.interrupted: the last epoch's checkpoint stays).\n"
    "--threads is per rank; Open MPI binds each rank to one core, so with\n"
    "--threads N > 1 add --bind-to none or --map-by slot:PE=N.\n";

static void usage(FILE *f)
{
    tc_usage(f, "cvae-train-mpi", extra_help, extra_notes);
}

static int mpi_option(int argc, char **argv, int *i, void *ctx)
{
    struct mpi_options *mo = ctx;
    const char *v;
    if (ex_option(argc, argv, i, "--check-every", &v)) {
        mo->check_every = ex_parse_long("--check-every", v, 0, 1000000000L);
        return 1;
    }
    if (ex_option(argc, argv, i, "--bucket-mb", &v)) {
        mo->bucket_mb = ex_parse_double("--bucket-mb", v, 0, 1e6);
        return 1;
    }
    if (ex_flag(argv[*i], "--timing")) {
        mo->timing = 1;
        return 1;
    }
    return 0;
}

static int rank, ranks;

/* Ends every rank: the message is already printed (naming this rank). */
static void fail(int status)
{
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, status ? status : 1);
    exit(status ? status : 1); /* not reached */
}

/* The shard of rank r in a batch of n images: first and count, cut as the
 * library advises (with two ranks, as one process computes a step). */
static void shard_of(int n, int r, int *first, int *count)
{
    cvae_shard_cut(n, ranks, r, first, count);
}

/* FNV-1a over the parameters' 32-bit words: equal replicas, equal sums. */
static uint64_t checksum(const float *p, size_t n)
{
    uint64_t h = 1469598103934665603u;
    size_t i;
    for (i = 0; i < n; i++) {
        uint32_t w;
        memcpy(&w, &p[i], sizeof w);
        h = (h ^ w) * 1099511628211u;
    }
    return h;
}

/* Every rank's checksum against rank 0's; the first rank that differs ends
 * the job. */
static void check_replicas(cvae_model *m, uint64_t *all)
{
    size_t np;
    const float *p = cvae_model_params(m, &np);
    uint64_t mine = checksum(p, np);
    int r;
    MPI_Allgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
    for (r = 1; r < ranks; r++)
        if (all[r] != all[0]) {
            if (rank == 0)
                ex_error("the parameters of rank %d differ from rank 0's after step %llu "
                         "(checksums %016llx, %016llx): the replicas drifted apart",
                         r, (unsigned long long)cvae_model_steps(m), (unsigned long long)all[r],
                         (unsigned long long)all[0]);
            MPI_Barrier(MPI_COMM_WORLD); /* rank 0's message first */
            fail(1);
        }
}

struct run {
    const struct tc_options *o;
    struct mpi_options mo;
    cvae_model *m;
    cvae_optimizer *opt;
    cvae_dataset *train, *test;
    float *x;
    int *y;
    uint64_t *sums; /* (ranks) checksums */
    int drift_rank;
    double allreduce_seconds, wait_seconds, train_seconds;
    long steps;
    /* Buckets: spans of the gradient block reported by the library
     * (falling offsets) gather into [lo, hi) until bucket_floats, then an
     * MPI_Iallreduce sums them while the backward goes on. */
    size_t bucket_floats, lo, hi;
    MPI_Request *requests;
    int nrequests, max_requests;
};

/* Starts the sum of the gathered bucket, if any. */
static void send_bucket(struct run *rn)
{
    float *g = cvae_model_grads(rn->m, NULL);
    if (rn->hi == rn->lo)
        return;
    MPI_Iallreduce(MPI_IN_PLACE, g + rn->lo, (int)(rn->hi - rn->lo), MPI_FLOAT, MPI_SUM,
                   MPI_COMM_WORLD, &rn->requests[rn->nrequests++]);
    rn->hi = rn->lo;
}

/* cvae_grads_ready_fn: a layer's span is final. MPI moves non-blocking
 * collectives on when called, so each report also tests the sums under way. */
static void span_ready(void *ctx, size_t offset, size_t count)
{
    struct run *rn = ctx;
    int flag;
    if (rn->hi == rn->lo)
        rn->hi = rn->lo = offset + count;
    rn->lo = offset; /* spans come adjacent, offsets falling */
    if (rn->hi - rn->lo >= rn->bucket_floats)
        send_bucket(rn);
    if (rn->nrequests > 0)
        MPI_Testall(rn->nrequests, rn->requests, &flag, MPI_STATUSES_IGNORE);
}

/* CVAE_MODEL_DATA_INIT before the first step, from the whole first batch
 * (every rank has it), as a one-process first step does. */
static void data_init(struct run *rn, int b, int n)
{
    int c, h, w;
    float *all;
    cvae_status st;
    cvae_model_shape(rn->m, &c, &h, &w, NULL, NULL);
    if (!(all = malloc((size_t)n * (size_t)(c * h * w) * sizeof *all))) {
        ex_error("out of memory");
        fail(1);
    }
    if ((st = cvae_dataset_batch(rn->train, b * rn->o->batch, n, all, NULL)) != CVAE_OK ||
        (st = cvae_model_data_init(rn->m, all, n)) != CVAE_OK) {
        ex_status_error("the data init", st, cvae_model_last_error(rn->m));
        fail(1);
    }
    free(all);
}

/* One global step on batch b of the (shuffled) training set; adds its mean
 * losses, weighted by its size, to r. */
static void step(struct run *rn, int b, struct tc_epoch_result *r)
{
    const struct tc_options *o = rn->o;
    int count = cvae_dataset_count(rn->train);
    int n = tc_batch_images(o, count, b), first, k;
    double losses[2], t;
    size_t np;
    float *g;
    cvae_status st;

    shard_of(n, rank, &first, &k);
    if (cvae_model_steps(rn->m) == 0)
        data_init(rn, b, n);
    if (k > 0 && (st = cvae_dataset_batch(rn->train, b * o->batch + first, k, rn->x, rn->y)) !=
                     CVAE_OK) {
        ex_status_error("reading a batch", st, cvae_dataset_last_error(rn->train));
        fail(1);
    }
    /* y is NULL unless the model is conditional. */
    if ((st = cvae_model_shard_grads(rn->m, rn->x, rn->y, first, k, n, &losses[0], &losses[1])) !=
        CVAE_OK) {
        ex_status_error("training step", st, cvae_model_last_error(rn->m));
        fail(1);
    }
    g = cvae_model_grads(rn->m, &np);
    if (rn->mo.timing) { /* the wait for the slowest rank, apart from the transfer */
        t = MPI_Wtime();
        MPI_Barrier(MPI_COMM_WORLD);
        rn->wait_seconds += MPI_Wtime() - t;
    }
    t = MPI_Wtime();
    if (rn->bucket_floats == 0) {
        MPI_Allreduce(MPI_IN_PLACE, g, (int)np, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    } else { /* the last bucket, then the wait for all */
        send_bucket(rn);
        MPI_Waitall(rn->nrequests, rn->requests, MPI_STATUSES_IGNORE);
        rn->nrequests = 0;
    }
    MPI_Allreduce(MPI_IN_PLACE, losses, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    rn->allreduce_seconds += MPI_Wtime() - t;
    if (tc_schedule_lr(rn->opt, o, cvae_model_steps(rn->m),
                       tc_steps_per_epoch(rn->train, o->batch)) != 0)
        fail(1);
    if ((st = cvae_model_apply_grads(rn->m, rn->opt)) != CVAE_OK) {
        ex_status_error("training step", st, cvae_model_last_error(rn->m));
        fail(1);
    }
    rn->steps++;
    if (rn->drift_rank == rank && rn->steps == 1)
        cvae_model_params(rn->m, NULL)[0] += 1e-3f;
    if (rn->mo.check_every > 0 && cvae_model_steps(rn->m) % (uint64_t)rn->mo.check_every == 0)
        check_replicas(rn->m, rn->sums);
    r->recon += losses[0] * n; /* weighted by batch size: the last batch is smaller */
    r->kl += losses[1] * n;
}

/* Batches first .. steps_per_epoch - 1 of the epoch; the train figures in r. */
static void train_epoch(struct run *rn, int epoch, int first, int steps_per_epoch,
                        struct tc_epoch_result *r)
{
    const struct tc_options *o = rn->o;
    int count = cvae_dataset_count(rn->train), b;
    long images = 0;
    struct tc_progress p;

    tc_progress_start(&p);
    p.on = p.on && rank == 0;
    for (b = first; b < steps_per_epoch; b++) {
        int n = tc_batch_images(o, count, b);
        step(rn, b, r);
        images += n;
        tc_progress_draw(&p, epoch + 1, o->epochs, (long)b * o->batch + n, count, images,
                         r->recon + r->kl);
    }
    tc_progress_clear(&p);
    tc_end_training(r, images, &p);
    rn->train_seconds += r->seconds;
}

/* The test loss: each rank's share of the test set, summed. */
static void test_loss(struct run *rn, struct tc_epoch_result *r)
{
    int count = cvae_dataset_count(rn->test), first, k;
    double sums[2];
    cvae_status st;
    shard_of(count, rank, &first, &k);
    st = cvae_model_evaluate_range(rn->m, rn->test, TC_TEST_EPS_SEED, first, k, &sums[0],
                                   &sums[1]);
    if (st != CVAE_OK) {
        ex_status_error("evaluating the test set", st, cvae_model_last_error(rn->m));
        fail(1);
    }
    MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    r->has_test = 1;
    r->test_recon = sums[0] / count;
    r->test_kl = sums[1] / count;
}

/* Rank 0 prints the epoch's line and writes the checkpoint, log and chart. */
static void finish_epoch(struct run *rn, double t0, struct tc_epoch_result *r,
                         struct tc_epoch_result *hist, int *nhist)
{
    const struct tc_options *o = rn->o;
    cvae_status st;
    /* Every rank tests its share with the running average, as cvae-train. */
    if (tc_use_weights(rn->m, rn->opt, 1) != 0)
        fail(1);
    if (rn->test)
        test_loss(rn, r);
    check_replicas(rn->m, rn->sums); /* a checkpoint of replicas that agree */
    if (rank == 0) {
        r->seconds = ex_now() - t0; /* the whole epoch, test included; img/s is training only */
        tc_print_epoch(r, o->epochs);
        hist[(*nhist)++] = *r;
        if ((st = cvae_model_save(rn->m, rn->opt, o->out)) != CVAE_OK) {
            ex_status_error("saving", st, cvae_model_last_error(rn->m));
            fail(1);
        }
        if ((o->log && tc_log_append(o->log, r) != 0) ||
            (o->plot && tc_write_plot(o->plot, hist, *nhist) != 0))
            fail(1);
    }
    if (tc_use_weights(rn->m, rn->opt, 0) != 0)
        fail(1);
}

/* Parses the command line on every rank; only rank 0's messages are shown
 * (the others' stderr goes to /dev/null meanwhile), so that a bad option is
 * reported once. */
static void parse(int argc, char **argv, struct tc_options *o, struct mpi_options *mo)
{
    int saved = -1, devnull;
    if (rank != 0 && (devnull = open("/dev/null", O_WRONLY)) >= 0) {
        fflush(stderr);
        fflush(stdout);
        saved = dup(STDERR_FILENO);
        dup2(devnull, STDERR_FILENO);
        close(devnull);
        /* Only rank 0 prints to stdout at all (--help, --version, progress). */
        if (!freopen("/dev/null", "w", stdout)) {
            /* then stdout stays as it was */
        }
    }
    tc_parse_options(argc, argv, usage, mpi_option, mo, o);
    if (saved >= 0) {
        fflush(stderr);
        dup2(saved, STDERR_FILENO);
        close(saved);
    }
}

int main(int argc, char **argv)
{
    static char prog[64];
    struct tc_options o;
    struct run rn;
    struct tc_epoch_result *hist = NULL;
    const char *drift;
    int c, h, w, steps_per_epoch, epoch, first, nhist = 0, rc = 1, max_shard;
    double classes = 0, t_start;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    memset(&rn, 0, sizeof rn);
    rn.mo.check_every = 100;
    rn.mo.bucket_mb = 0;
    rn.o = &o;
    rn.drift_rank = (drift = getenv(DRIFT_ENV)) ? atoi(drift) : -1;

    ex_prog = "cvae-train-mpi";
    tc_defaults(&o);
    parse(argc, argv, &o, &rn.mo);
    /* Messages from here on name the rank. */
    snprintf(prog, sizeof prog, "cvae-train-mpi: rank %d", rank);
    ex_prog = prog;
    if (o.config && tc_apply_config(&o) != 0)
        fail(1);
    if (tc_load_data(&o, &rn.train, &rn.test) != 0)
        fail(1);
    /* The largest shard: ceil(B / P) images. */
    max_shard = (o.batch + ranks - 1) / ranks;
    if ((rc = tc_setup(&o, rn.train, max_shard > 0 ? max_shard : 1, &rn.m, &rn.opt)) != 0)
        fail(rc);
    if (rank == 0 && tc_prepare_outputs(rn.m, rn.opt, &o) != 0)
        fail(1);

    cvae_model_shape(rn.m, &c, &h, &w, NULL, NULL);
    cvae_model_get(rn.m, CVAE_MODEL_CLASSES, &classes);
    steps_per_epoch = tc_steps_per_epoch(rn.train, o.batch);
    tc_start_point(rn.m, steps_per_epoch, &epoch, &first);
    rn.x = malloc((size_t)(max_shard > 0 ? max_shard : 1) * (size_t)(c * h * w) * sizeof *rn.x);
    rn.y = classes > 0 ? malloc((size_t)(max_shard > 0 ? max_shard : 1) * sizeof *rn.y) : NULL;
    rn.sums = malloc((size_t)ranks * sizeof *rn.sums);
    hist = malloc((size_t)(o.epochs > epoch ? o.epochs - epoch : 1) * sizeof *hist);
    if (!rn.x || !rn.sums || !hist || (classes > 0 && !rn.y)) {
        ex_error("out of memory");
        fail(1);
    }
    if (rn.mo.bucket_mb > 0) {
        cvae_stack *stacks[2];
        int k, i;
        stacks[0] = cvae_model_encoder(rn.m);
        stacks[1] = cvae_model_decoder(rn.m);
        rn.bucket_floats = (size_t)(rn.mo.bucket_mb * 1e6 / sizeof(float));
        if (rn.bucket_floats < 1)
            rn.bucket_floats = 1;
        /* At most a bucket per layer with parameters. */
        for (k = 0; k < 2; k++)
            for (i = 0; i < cvae_stack_layer_count(stacks[k]); i++)
                rn.max_requests += cvae_layer_param_count(cvae_stack_layer(stacks[k], i)) > 0;
        if (!(rn.requests = malloc((size_t)(rn.max_requests + 1) * sizeof *rn.requests))) {
            ex_error("out of memory");
            fail(1);
        }
        cvae_model_set_grads_ready(rn.m, span_ready, &rn);
    }
    /* Replicas that start apart (another --resume file on some machine) are
     * found before the first step. */
    check_replicas(rn.m, rn.sums);
    if (rank == 0) {
        tc_print_start(&o, rn.train, rn.test, rn.m, epoch, first, steps_per_epoch);
        printf("%d ranks, %d images per rank and step (batch %d)\n", ranks, max_shard, o.batch);
        fflush(stdout);
    }

    t_start = MPI_Wtime();
    for (; epoch < o.epochs; epoch++, first = 0) {
        struct tc_epoch_result r;
        double t0 = ex_now();
        cvae_status st;

        memset(&r, 0, sizeof r);
        r.epoch = epoch + 1;
        /* Each epoch's order depends on the seed and the epoch only: the same
         * on every rank, and as cvae-train's. */
        if ((st = cvae_dataset_shuffle(rn.train, o.seed + (uint64_t)epoch)) != CVAE_OK) {
            ex_status_error("shuffling", st, cvae_dataset_last_error(rn.train));
            fail(1);
        }
        train_epoch(&rn, epoch, first, steps_per_epoch, &r);
        finish_epoch(&rn, t0, &r, hist, &nhist);
    }
    if (tc_use_weights(rn.m, rn.opt, 1) != 0) /* the final figures are the average's */
        fail(1);
    if (rank == 0) {
        if ((rc = tc_print_final(rn.m, &o, rn.train, rn.test, hist, nhist)) != 0)
            fail(rc);
        if (rn.mo.timing && rn.steps > 0)
            printf("timing: %d ranks, %ld steps in %.2f s of training: %.2f steps/s; "
                   "waiting for the slowest rank %.2f s (%.1f %%), gradient allreduce %.2f s "
                   "(%.1f %%, %.2f ms a step); whole run %.2f s\n",
                   ranks, rn.steps, rn.train_seconds, rn.steps / rn.train_seconds,
                   rn.wait_seconds, 100.0 * rn.wait_seconds / rn.train_seconds,
                   rn.allreduce_seconds, 100.0 * rn.allreduce_seconds / rn.train_seconds,
                   1e3 * rn.allreduce_seconds / rn.steps, MPI_Wtime() - t_start);

        fflush(stdout);
    }
    free(rn.x);
    free(rn.y);
    free(rn.sums);
    free(rn.requests);
    free(hist);
    cvae_optimizer_destroy(rn.opt);
    cvae_model_destroy(rn.m);
    cvae_dataset_destroy(rn.test);
    cvae_dataset_destroy(rn.train);
    MPI_Finalize();
    return 0;
}
