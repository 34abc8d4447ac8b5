/* attention_kernels.h: AVX-512 block kernels with run-time dispatch and portable fallbacks.
 *
 * The product kernel keeps a block of R rows x (16 V) columns of C in registers (up to 24
 * accumulators: many independent FMA chains, few loads per FMA), broadcasts one
 * A element per row and loads one B row slice per step. The last column block uses masked
 * loads and stores, so any n works without padding.
 *
 * exp: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, the Cephes degree-6 polynomial for
 * e^r (relative error ~1e-7, the same order as expf), and 2^n applied with vscalefps. Inputs
 * below -87.3 (including the -inf of masked scores) give exactly 0. */
#include "nn/attention_kernels.h"

#include <math.h>
#include <oneapi/dnnl/dnnl.h>

/* -DSDTI_NO_AVX512 builds only the portable path (to test it whole on an AVX-512 machine). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(SDTI_NO_AVX512)
#define ATTN_HAVE_AVX512_CODE 1
#include <immintrin.h>
#define AVX512        __attribute__((target("avx512f")))
#define AVX512_INLINE __attribute__((target("avx512f"), always_inline)) static inline
#else
#define ATTN_HAVE_AVX512_CODE 0
#endif

static int use_avx512(void) {
#if ATTN_HAVE_AVX512_CODE
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

#define EXP_MIN -87.3f /* below: e^x is under float's smallest normal, taken as 0 */

/* ---- portable ------------------------------------------------------------------------- */

void attn_gemm_portable(int m, int n, int k, float alpha, const float *a, ptrdiff_t a_row,
                        ptrdiff_t a_col, const float *b, ptrdiff_t ldb, float beta, float *c,
                        ptrdiff_t ldc) {
    /* oneDNN's sgemm takes the transposed-A case as 'T' with lda = a_col. */
    if (a_col == 1)
        dnnl_sgemm('N', 'N', m, n, k, alpha, a, a_row, b, ldb, beta, c, ldc);
    else
        dnnl_sgemm('T', 'N', m, n, k, alpha, a, a_col, b, ldb, beta, c, ldc);
}

float attn_exp_sub_sum_portable(float *x, int n, float sub) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        float e = x[i] - sub >= EXP_MIN ? expf(x[i] - sub) : 0.0f;
        x[i] = e;
        sum += e;
    }
    return sum;
}

/* ---- AVX-512 -------------------------------------------------------------------------- */

#if ATTN_HAVE_AVX512_CODE

/* One R x (16 V) block of C; mask_last covers the valid lanes of the last vector. R and V
 * are constants at every call site, so the loops unroll into registers. */
AVX512_INLINE void gemm_block(const int R, const int V, int k, float alpha, const float *a,
                              ptrdiff_t a_row, ptrdiff_t a_col, const float *b, ptrdiff_t ldb,
                              float beta, float *c, ptrdiff_t ldc, __mmask16 mask_last) {
    __m512 acc[8][5];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 5
        for (int v = 0; v < V; v++)
            acc[r][v] = _mm512_setzero_ps();
    for (int p = 0; p < k; p++) {
        const float *bp = b + p * ldb;
        const float *ap = a + p * a_col;
        __m512 bv[5];
#pragma GCC unroll 5
        for (int v = 0; v < V; v++)
            bv[v] = _mm512_maskz_loadu_ps(v == V - 1 ? mask_last : (__mmask16)0xFFFF, bp + 16 * v);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m512 av = _mm512_set1_ps(ap[r * a_row]);
#pragma GCC unroll 5
            for (int v = 0; v < V; v++)
                acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        float *cr = c + r * ldc;
#pragma GCC unroll 5
        for (int v = 0; v < V; v++) {
            __mmask16 mv = v == V - 1 ? mask_last : (__mmask16)0xFFFF;
            __m512 res = _mm512_mul_ps(acc[r][v], va);
            if (beta != 0.0f)
                res = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mv, cr + 16 * v), vb, res);
            _mm512_mask_storeu_ps(cr + 16 * v, mv, res);
        }
    }
}

#define GEMM_BLOCK(R, V) gemm_block(R, V, k, alpha, ai, a_row, a_col, bj, ldb, beta, cij, ldc, mask)

/* Rows in blocks of RB (8, 6 or 4 as V grows, so that R * V accumulators fit in registers). */
#define GEMM_ROWS(V, RB)                                                                           \
    for (int i = 0; i < m; i += RB) {                                                              \
        const int rows = m - i < RB ? m - i : RB;                                                  \
        const float *ai = a + i * a_row;                                                           \
        float *cij = c + i * ldc + j;                                                              \
        if (RB >= 8 && rows == 8)                                                                  \
            GEMM_BLOCK(RB >= 8 ? 8 : 1, V);                                                        \
        else if (RB >= 7 && rows == 7)                                                             \
            GEMM_BLOCK(RB >= 7 ? 7 : 1, V);                                                        \
        else if (RB >= 6 && rows == 6)                                                             \
            GEMM_BLOCK(RB >= 6 ? 6 : 1, V);                                                        \
        else if (RB >= 5 && rows == 5)                                                             \
            GEMM_BLOCK(RB >= 5 ? 5 : 1, V);                                                        \
        else if (rows == 4)                                                                        \
            GEMM_BLOCK(4, V);                                                                      \
        else if (rows == 3)                                                                        \
            GEMM_BLOCK(3, V);                                                                      \
        else if (rows == 2)                                                                        \
            GEMM_BLOCK(2, V);                                                                      \
        else                                                                                       \
            GEMM_BLOCK(1, V);                                                                      \
    }

AVX512 static void gemm_avx512_panel(int m, int n, int k, float alpha, const float *a,
                                     ptrdiff_t a_row, ptrdiff_t a_col, const float *b,
                                     ptrdiff_t ldb, float beta, float *c, ptrdiff_t ldc) {
    /* Column blocks outside, so one B slice (k x 16 V) stays in L1 across the row blocks.
     * n <= 80 (every head_dim up to 80) is one block of up to 5 vectors, the last masked, so
     * A is broadcast once; wider products go in blocks of 64 columns (6 x 4 accumulators:
     * 24 FMAs for 4 loads and 6 broadcasts per step). */
    for (int j = 0; j < n;) {
        const int cols = n <= 80 ? n : (n - j < 64 ? n - j : 64);
        const int V = (cols + 15) / 16;
        const int last = cols - 16 * (V - 1);
        const __mmask16 mask = (__mmask16)(last == 16 ? 0xFFFF : (1u << last) - 1u);
        const float *bj = b + j;
        switch (V) {
        case 5:
            GEMM_ROWS(5, 4)
            break;
        case 4:
            GEMM_ROWS(4, 6)
            break;
        case 3:
            GEMM_ROWS(3, 8)
            break;
        case 2:
            GEMM_ROWS(2, 8)
            break;
        default:
            GEMM_ROWS(1, 8)
            break;
        }
        j += cols;
    }
}

/* k in slices of GEMM_KC, so the B slice a column block streams (GEMM_KC x 64 floats,
 * 32 KiB) stays in L1 while the row blocks pass; later slices accumulate onto C. */
#define GEMM_KC 128

AVX512 static void gemm_avx512(int m, int n, int k, float alpha, const float *a, ptrdiff_t a_row,
                               ptrdiff_t a_col, const float *b, ptrdiff_t ldb, float beta, float *c,
                               ptrdiff_t ldc) {
    for (int p = 0; p < k || p == 0; p += GEMM_KC) {
        const int kc = k - p < GEMM_KC ? k - p : GEMM_KC;
        gemm_avx512_panel(m, n, kc, alpha, a + p * a_col, a_row, a_col, b + p * ldb, ldb,
                          p == 0 ? beta : 1.0f, c, ldc);
    }
}

AVX512_INLINE __m512 exp512(__m512 x) {
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 c1 = _mm512_set1_ps(0.693359375f), c2 = _mm512_set1_ps(-2.12194440e-4f);
    __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(EXP_MIN), _CMP_GE_OQ);
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(EXP_MIN)), _mm512_set1_ps(88.7f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, c1, x);
    r = _mm512_fnmadd_ps(n, c2, r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_mov_ps(live, _mm512_scalef_ps(p, n));
}

AVX512 static float exp_sub_avx512(float *x, int n, float sub) {
    const __m512 s = _mm512_set1_ps(sub);
    __m512 sum = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        const int left = n - i;
        const __mmask16 m = (__mmask16)(left >= 16 ? 0xFFFF : (1u << left) - 1u);
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s));
        e = _mm512_maskz_mov_ps(m, e);
        _mm512_mask_storeu_ps(x + i, m, e);
        sum = _mm512_add_ps(sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

AVX512 static float row_max_avx512(const float *x, int n) {
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int i = 0; i < n; i += 16) {
        const int left = n - i;
        const __mmask16 m = (__mmask16)(left >= 16 ? 0xFFFF : (1u << left) - 1u);
        mx = _mm512_mask_max_ps(mx, m, mx, _mm512_maskz_loadu_ps(m, x + i));
    }
    return _mm512_reduce_max_ps(mx);
}

AVX512 static float dot_avx512(const float *a, const float *b, int n) {
    __m512 s = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        const int left = n - i;
        const __mmask16 m = (__mmask16)(left >= 16 ? 0xFFFF : (1u << left) - 1u);
        s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s);
    }
    return _mm512_reduce_add_ps(s);
}

AVX512 static void scale_avx512(float *dst, const float *src, int n, float f) {
    const __m512 vf = _mm512_set1_ps(f);
    for (int i = 0; i < n; i += 16) {
        const int left = n - i;
        const __mmask16 m = (__mmask16)(left >= 16 ? 0xFFFF : (1u << left) - 1u);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, src + i), vf));
    }
}

AVX512 static void softmax_grad_avx512(const float *p, float *dp, int n, float D) {
    const __m512 vd = _mm512_set1_ps(D);
    for (int i = 0; i < n; i += 16) {
        const int left = n - i;
        const __mmask16 m = (__mmask16)(left >= 16 ? 0xFFFF : (1u << left) - 1u);
        __m512 g = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, dp + i), vd);
        _mm512_mask_storeu_ps(dp + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p + i), g));
    }
}

#endif /* ATTN_HAVE_AVX512_CODE */

/* ---- dispatch ------------------------------------------------------------------------- */

void attn_gemm(int m, int n, int k, float alpha, const float *a, ptrdiff_t a_row, ptrdiff_t a_col,
               const float *b, ptrdiff_t ldb, float beta, float *c, ptrdiff_t ldc) {
    if (m <= 0 || n <= 0)
        return;
#if ATTN_HAVE_AVX512_CODE
    if (use_avx512()) {
        gemm_avx512(m, n, k, alpha, a, a_row, a_col, b, ldb, beta, c, ldc);
        return;
    }
#endif
    attn_gemm_portable(m, n, k, alpha, a, a_row, a_col, b, ldb, beta, c, ldc);
}

float attn_row_max(const float *x, int n) {
#if ATTN_HAVE_AVX512_CODE
    if (use_avx512())
        return row_max_avx512(x, n);
#endif
    float m = -INFINITY;
    for (int i = 0; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m;
}

float attn_exp_sub_sum(float *x, int n, float sub) {
#if ATTN_HAVE_AVX512_CODE
    if (use_avx512())
        return exp_sub_avx512(x, n, sub);
#endif
    return attn_exp_sub_sum_portable(x, n, sub);
}

void attn_exp_sub(float *x, int n, float sub) {
#if ATTN_HAVE_AVX512_CODE
    if (use_avx512()) {
        exp_sub_avx512(x, n, sub);
        return;
    }
#endif
    attn_exp_sub_sum_portable(x, n, sub);
}

float attn_dot(const float *a, const float *b, int n) {
#if ATTN_HAVE_AVX512_CODE
    if (use_avx512())
        return dot_avx512(a, b, n);
#endif
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

void attn_scale(float *dst, const float *src, int n, float f) {
#if ATTN_HAVE_AVX512_CODE
    if (use_avx512()) {
        scale_avx512(dst, src, n, f);
        return;
    }
#endif
    for (int i = 0; i < n; i++)
        dst[i] = src[i] * f;
}

void attn_softmax_grad(const float *p, float *dp, int n, float D) {
#if ATTN_HAVE_AVX512_CODE
    if (use_avx512()) {
        softmax_grad_avx512(p, dp, n, D);
        return;
    }
#endif
    for (int i = 0; i < n; i++)
        dp[i] = p[i] * (dp[i] - D);
}

void attn_transpose(const float *src, int rows, int cols, ptrdiff_t lds, float *dst,
                    ptrdiff_t ldd) {
    /* 8 x 8 blocks keep both sides' cache lines in use. */
    for (int r0 = 0; r0 < rows; r0 += 8)
        for (int c0 = 0; c0 < cols; c0 += 8) {
            const int r1 = r0 + 8 < rows ? r0 + 8 : rows, c1 = c0 + 8 < cols ? c0 + 8 : cols;
            for (int r = r0; r < r1; r++)
                for (int c = c0; c < c1; c++)
                    dst[c * ldd + r] = src[r * lds + c];
        }
}
