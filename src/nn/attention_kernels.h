/* The row operations inside attention's tiles (max, exp with sum, dot product). Kept in a
 * header so attention.c's loops inline them. */
#ifndef SDTI_NN_ATTENTION_KERNELS_H
#define SDTI_NN_ATTENTION_KERNELS_H

#include <math.h>

static inline float attn_row_max(const float *x, int n) {
    float m = -INFINITY;
    for (int i = 0; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m;
}

/* x[i] = exp(x[i] - sub); returns the sum of the new values. */
static inline float attn_exp_sub_sum(float *x, int n, float sub) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - sub);
        sum += x[i];
    }
    return sum;
}

/* x[i] = exp(x[i] - sub). */
static inline void attn_exp_sub(float *x, int n, float sub) {
    for (int i = 0; i < n; i++)
        x[i] = expf(x[i] - sub);
}

static inline float attn_dot(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

#endif
