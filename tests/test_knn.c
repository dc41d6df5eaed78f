/*
 * test_knn.c - the examples' k-nearest-neighbour vote (examples/common/knn.c),
 * which cvae-eval uses to judge latent spaces: hand-made cases whose answer
 * is known, ties, and bad sizes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "knn.h"

/* Two clusters on a line, around 0 (label 0) and 10 (label 1), with a label-1
 * outlier at 1 inside cluster 0. */
static const float ref[7] = {0.0f, 0.5f, -0.5f, 1.0f, 10.0f, 10.5f, 9.5f};
static const int ref_labels[7] = {0, 0, 0, 1, 1, 1, 1};

/* Fails if queries are not labelled by the majority of their k nearest. */
static void test_majority(void **state)
{
    const float q[4] = {0.2f, 9.9f, 0.9f, 5.6f};
    int out[4] = {-1, -1, -1, -1};
    (void)state;
    /* k = 1: the nearest alone; 0.9 is nearest the outlier at 1. */
    assert_int_equal(knn_classify(ref, ref_labels, 7, q, 4, 1, 1, 2, out), 0);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 1);
    assert_int_equal(out[2], 1);
    assert_int_equal(out[3], 1); /* 5.6 is nearer 9.5 than 1.0 */
    /* k = 3: the outlier is outvoted at 0.9 (neighbours 1, 0.5, 0). */
    assert_int_equal(knn_classify(ref, ref_labels, 7, q, 4, 1, 3, 2, out), 0);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 1);
    assert_int_equal(out[2], 0);
    /* k = 7: everyone votes; label 1 has four. */
    assert_int_equal(knn_classify(ref, ref_labels, 7, q, 4, 1, 7, 2, out), 0);
    assert_int_equal(out[0], 1);
}

/* Fails if distances are not over all dimensions, or a tie in the vote does
 * not go to the label of the nearest tied voter. */
static void test_dimensions_and_ties(void **state)
{
    /* 2-d: (3, 0) label 0, (0, 2) label 1, (0, -2.5) label 2, (4, 4) label 1. */
    const float r2[8] = {3.0f, 0.0f, 0.0f, 2.0f, 0.0f, -2.5f, 4.0f, 4.0f};
    const int l2[4] = {0, 1, 2, 1};
    const float q[2] = {0.0f, 0.0f};
    int out = -1;
    (void)state;
    assert_int_equal(knn_classify(r2, l2, 4, q, 1, 2, 1, 3, &out), 0);
    assert_int_equal(out, 1); /* (0, 2) at 2 beats (0, -2.5) and (3, 0) */
    /* k = 2: labels 1 and 2, one vote each: the nearer, 1, wins. */
    assert_int_equal(knn_classify(r2, l2, 4, q, 1, 2, 2, 3, &out), 0);
    assert_int_equal(out, 1);
    /* k = 3: 1, 2, 0 - a three-way tie, still the nearest. */
    assert_int_equal(knn_classify(r2, l2, 4, q, 1, 2, 3, 3, &out), 0);
    assert_int_equal(out, 1);
    /* Equal distances: the lower reference index is taken first. */
    {
        const float r1[2] = {-1.0f, 1.0f};
        const int l1[2] = {1, 0};
        assert_int_equal(knn_classify(r1, l1, 2, q, 1, 1, 1, 2, &out), 0);
        assert_int_equal(out, 1);
    }
}

/* Fails if bad sizes are not refused, or a refused call writes out. */
static void test_errors(void **state)
{
    const float q[1] = {0.0f};
    const int bad_labels[7] = {0, 0, 0, 2, 1, 1, 1};
    int out = 42;
    (void)state;
    assert_int_equal(knn_classify(ref, ref_labels, 7, q, 1, 1, 0, 2, &out), -1);
    assert_int_equal(knn_classify(ref, ref_labels, 7, q, 1, 1, 8, 2, &out), -1);
    assert_int_equal(knn_classify(ref, ref_labels, 7, q, 1, 1, 65, 2, &out), -1);
    assert_int_equal(knn_classify(ref, ref_labels, 7, q, 1, 1, 1, 0, &out), -1);
    assert_int_equal(knn_classify(ref, bad_labels, 7, q, 1, 1, 1, 2, &out), -1);
    assert_int_equal(out, 42);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_majority),
        cmocka_unit_test(test_dimensions_and_ties),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
