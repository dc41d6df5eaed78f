/*
 * cvae_client.c - a program built only against the installed libcvae
 * (pkg-config --cflags --libs cvae), as a user would. It checks that header
 * and library agree, builds a tiny stack, runs it, takes one training step
 * of a tiny model (the step counters were declared but not exported before
 * 0.6.1) and prints what it saw.
 */
#include <cvae.h>

#include <stdio.h>

/* One Adam step of the preset on two 1 x 4 x 4 images: both step counters
 * must read 1. 0 on success. */
static int one_step(void)
{
    cvae_model *m = NULL;
    cvae_optimizer *opt = NULL;
    float x[2 * 16];
    double recon = 0, kl = 0;
    int i, bad;
    cvae_status st = cvae_model_create(&m);
    for (i = 0; i < 32; i++)
        x[i] = (float)(i % 5) / 4.0f;
    if (st == CVAE_OK)
        st = cvae_model_init_preset(m, 1, 4, 4, 2, 2, 7);
    if (st == CVAE_OK)
        st = cvae_optimizer_create(&opt, CVAE_OPTIMIZER_ADAM, cvae_model_param_count(m));
    if (st == CVAE_OK)
        st = cvae_model_train_step(m, opt, x, 2, &recon, &kl);
    if (st != CVAE_OK)
        printf("error: %s: %s\n", cvae_status_string(st), cvae_model_last_error(m));
    bad = st != CVAE_OK || cvae_model_steps(m) != 1 || cvae_optimizer_steps(opt) != 1;
    if (st == CVAE_OK && bad)
        printf("after one step: model steps %lu, optimizer steps %lu\n",
               (unsigned long)cvae_model_steps(m), (unsigned long)cvae_optimizer_steps(opt));
    cvae_optimizer_destroy(opt);
    cvae_model_destroy(m);
    return bad;
}

int main(void)
{
    cvae_stack *s = NULL;
    const float *y = NULL;
    float x[2 * 1 * 4 * 4];
    int c, h, w, i;
    cvae_status st;

    if (cvae_version_number() != CVAE_VERSION_NUMBER) {
        printf("header %s but library %s\n", CVAE_VERSION_STRING, cvae_version_string());
        return 1;
    }
    for (i = 0; i < 32; i++)
        x[i] = (float)i / 32.0f;
    st = cvae_stack_create(&s);
    if (st == CVAE_OK) {
        cvae_layer *l = NULL;
        cvae_layer_create_conv2d(&l, 3, 3, 3, 1, 1, 1, 1);
        st = cvae_stack_add(s, l);
    }
    if (st == CVAE_OK) {
        cvae_layer *l = NULL;
        cvae_layer_create_sigmoid(&l);
        st = cvae_stack_add(s, l);
    }
    if (st == CVAE_OK)
        st = cvae_stack_build(s, 1, 4, 4, 2, 42);
    if (st == CVAE_OK)
        st = cvae_stack_forward(s, x, 2, &y);
    if (st == CVAE_OK)
        st = cvae_stack_output_shape(s, &c, &h, &w);
    if (st != CVAE_OK) {
        printf("error: %s: %s\n", cvae_status_string(st), cvae_stack_last_error(s));
        cvae_stack_destroy(s);
        return 1;
    }
    for (i = 0; i < 2 * c * h * w; i++) {
        if (!(y[i] > 0.0f && y[i] < 1.0f)) {
            printf("sigmoid output %d is %g\n", i, y[i]);
            cvae_stack_destroy(s);
            return 1;
        }
    }
    cvae_stack_destroy(s);
    if (one_step())
        return 1;
    printf("library %s, output %dx%dx%d in (0,1), one training step counted\n",
           cvae_version_string(), c, h, w);
    return 0;
}
