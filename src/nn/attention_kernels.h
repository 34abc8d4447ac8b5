/* The block operations inside attention's tiles: a small matrix product on strided views, the
 * row max / exp / sum of the online softmax, a dot product and a transposing copy. Each has an
 * AVX-512 implementation chosen at run time when the CPU has it, and a portable one
 * (oneDNN's sgemm for the product, plain loops for the rest) for other machines. */
#ifndef SDTI_NN_ATTENTION_KERNELS_H
#define SDTI_NN_ATTENTION_KERNELS_H

#include <stddef.h>

/* Row-major C[m x n] = alpha * A B + beta * C (beta 0: C is only written), where
 * A(i, p) = a[i * a_row + p * a_col] (a_col = 1: A as stored; a_row = 1: A transposed) and
 * B[p][j] = b[p * ldb + j]. Single-threaded: called inside attention's parallel loops. */
void attn_gemm(int m, int n, int k, float alpha, const float *a, ptrdiff_t a_row, ptrdiff_t a_col,
               const float *b, ptrdiff_t ldb, float beta, float *c, ptrdiff_t ldc);

float attn_row_max(const float *x, int n);
/* x[i] = exp(x[i] - sub) (0 where x[i] is -inf); returns the sum of the new values. */
float attn_exp_sub_sum(float *x, int n, float sub);
/* x[i] = exp(x[i] - sub) (0 where x[i] is -inf). */
void attn_exp_sub(float *x, int n, float sub);
float attn_dot(const float *a, const float *b, int n);
/* dst[i] = src[i] * f (dst == src allowed). */
void attn_scale(float *dst, const float *src, int n, float f);
/* dp[i] = p[i] * (dp[i] - D): the softmax backward, dS from P and dP. */
void attn_softmax_grad(const float *p, float *dp, int n, float D);
/* dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols. */
void attn_transpose(const float *src, int rows, int cols, ptrdiff_t lds, float *dst, ptrdiff_t ldd);

/* The portable implementations, which the dispatchers use without AVX-512; public so tests
 * check them on machines that have it. */
void attn_gemm_portable(int m, int n, int k, float alpha, const float *a, ptrdiff_t a_row,
                        ptrdiff_t a_col, const float *b, ptrdiff_t ldb, float beta, float *c,
                        ptrdiff_t ldc);
float attn_exp_sub_sum_portable(float *x, int n, float sub);

#endif
