/* Element-wise activations and GEGLU with their input gradients (formulas in activation.h).
 *
 * Two implementations of each, chosen at run time: AVX-512 (16 lanes; exp by Cody-Waite
 * reduction + a degree-6 polynomial + vscalefps, relative error ~1e-7; erf by Abramowitz &
 * Stegun 7.1.26, absolute error < 1.5e-7, which moves gelu by < 1e-7 relative), and a
 * portable one on the C library's expf/erff. Both are far inside the 1e-4 budget. Arrays are
 * cut into chunks that the OpenMP threads share when the array is large enough to pay for the
 * fork. In-place use is safe: each element reads its inputs before writing. */
#include "nn/activation.h"

#include "nn/activation_internal.h"

#include <math.h>

/* -DSDTI_NO_AVX512 builds only the portable path (to test it whole on an AVX-512 machine). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(SDTI_NO_AVX512)
#define ACT_HAVE_AVX512_CODE 1
#include <immintrin.h>
#define AVX512        __attribute__((target("avx512f")))
#define AVX512_INLINE __attribute__((target("avx512f"), always_inline)) static inline
#else
#define ACT_HAVE_AVX512_CODE 0
#endif

/* Below this many elements one thread is faster than waking the others. */
#define PARALLEL_MIN 32768
#define CHUNK        4096

#define INV_SQRT2 0.70710678118654752440f
/* 1 / sqrt(2 pi), the normal density's constant in gelu's derivative. */
#define INV_SQRT_2PI 0.39894228040143267794f
#define QUICK_GELU_K 1.702f

/* ---- portable ------------------------------------------------------------------------- */

static inline float sigmoidf(float x) {
    return 1.0f / (1.0f + expf(-x));
}

static inline float gelu1(float x) {
    return 0.5f * x * (1.0f + erff(x * INV_SQRT2));
}

static inline float gelu_grad1(float x) {
    return 0.5f * (1.0f + erff(x * INV_SQRT2)) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
}

static float act1(ActKind kind, float x) {
    switch (kind) {
    case ACT_SILU:
        return x * sigmoidf(x);
    case ACT_GELU:
        return gelu1(x);
    default:
        return x * sigmoidf(QUICK_GELU_K * x);
    }
}

static float act_grad1(ActKind kind, float x) {
    float s;
    switch (kind) {
    case ACT_SILU:
        s = sigmoidf(x);
        return s * (1.0f + x * (1.0f - s));
    case ACT_GELU:
        return gelu_grad1(x);
    default:
        s = sigmoidf(QUICK_GELU_K * x);
        return s * (1.0f + QUICK_GELU_K * x * (1.0f - s));
    }
}

void activation_forward_portable(ActKind kind, size_t n, const float *x, float *y) {
    for (size_t i = 0; i < n; i++)
        y[i] = act1(kind, x[i]);
}

void activation_backward_portable(ActKind kind, size_t n, const float *x, const float *dy,
                                  float *dx) {
    for (size_t i = 0; i < n; i++)
        dx[i] = dy[i] * act_grad1(kind, x[i]);
}

/* ---- AVX-512 -------------------------------------------------------------------------- */

#if ACT_HAVE_AVX512_CODE

AVX512_INLINE __m512 exp512(__m512 x) {
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 c1 = _mm512_set1_ps(0.693359375f), c2 = _mm512_set1_ps(-2.12194440e-4f);
    __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_GE_OQ);
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.7f));
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

AVX512_INLINE __m512 sigmoid512(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

/* Abramowitz & Stegun 7.1.26 on |x|, sign restored. */
AVX512_INLINE __m512 erf512(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 ax = _mm512_abs_ps(x);
    const __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), ax, one));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    p = _mm512_mul_ps(p, t);
    const __m512 e = exp512(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), ax), ax));
    const __m512 y = _mm512_fnmadd_ps(p, e, one);
    /* copy x's sign onto y */
    const __m512i sign =
        _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(y), sign));
}

AVX512_INLINE __m512 act512(ActKind kind, __m512 x) {
    if (kind == ACT_SILU)
        return _mm512_mul_ps(x, sigmoid512(x));
    if (kind == ACT_QUICK_GELU)
        return _mm512_mul_ps(x, sigmoid512(_mm512_mul_ps(_mm512_set1_ps(QUICK_GELU_K), x)));
    const __m512 half = _mm512_set1_ps(0.5f);
    __m512 er = erf512(_mm512_mul_ps(x, _mm512_set1_ps(INV_SQRT2)));
    return _mm512_mul_ps(_mm512_mul_ps(half, x), _mm512_add_ps(_mm512_set1_ps(1.0f), er));
}

AVX512_INLINE __m512 act_grad512(ActKind kind, __m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    if (kind == ACT_GELU) {
        const __m512 half = _mm512_set1_ps(0.5f);
        __m512 er = erf512(_mm512_mul_ps(x, _mm512_set1_ps(INV_SQRT2)));
        __m512 pdf = exp512(_mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(-0.5f), x), x));
        pdf = _mm512_mul_ps(pdf, _mm512_set1_ps(INV_SQRT_2PI));
        return _mm512_fmadd_ps(x, pdf, _mm512_mul_ps(half, _mm512_add_ps(one, er)));
    }
    const __m512 k = _mm512_set1_ps(kind == ACT_SILU ? 1.0f : QUICK_GELU_K);
    const __m512 kx = _mm512_mul_ps(k, x);
    const __m512 s = sigmoid512(kx);
    /* s * (1 + k x (1 - s)) */
    return _mm512_mul_ps(s, _mm512_fmadd_ps(kx, _mm512_sub_ps(one, s), one));
}

AVX512_INLINE __mmask16 tail_mask(size_t left) {
    return (__mmask16)(left >= 16 ? 0xFFFF : (1u << left) - 1u);
}

AVX512 static void forward_avx512(ActKind kind, size_t n, const float *x, float *y) {
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, act512(kind, _mm512_maskz_loadu_ps(m, x + i)));
    }
}

AVX512 static void backward_avx512(ActKind kind, size_t n, const float *x, const float *dy,
                                   float *dx) {
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        __m512 g = act_grad512(kind, _mm512_maskz_loadu_ps(m, x + i));
        _mm512_mask_storeu_ps(dx + i, m, _mm512_mul_ps(g, _mm512_maskz_loadu_ps(m, dy + i)));
    }
}

AVX512 static void geglu_row_avx512(int dim, const float *x, float *y) {
    const float *a = x, *g = x + dim;
    for (int i = 0; i < dim; i += 16) {
        const __mmask16 m = tail_mask((size_t)(dim - i));
        __m512 ge = act512(ACT_GELU, _mm512_maskz_loadu_ps(m, g + i));
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + i), ge));
    }
}

AVX512 static void geglu_row_backward_avx512(int dim, const float *x, const float *dy, float *dx) {
    const float *a = x, *g = x + dim;
    float *da = dx, *dg = dx + dim;
    for (int i = 0; i < dim; i += 16) {
        const __mmask16 m = tail_mask((size_t)(dim - i));
        const __m512 gv = _mm512_maskz_loadu_ps(m, g + i), av = _mm512_maskz_loadu_ps(m, a + i);
        const __m512 d = _mm512_maskz_loadu_ps(m, dy + i);
        const __m512 ge = act512(ACT_GELU, gv), gg = act_grad512(ACT_GELU, gv);
        _mm512_mask_storeu_ps(da + i, m, _mm512_mul_ps(d, ge));
        _mm512_mask_storeu_ps(dg + i, m, _mm512_mul_ps(_mm512_mul_ps(d, av), gg));
    }
}

#endif /* ACT_HAVE_AVX512_CODE */

/* ---- dispatch and threading ----------------------------------------------------------- */

static int use_avx512(void) {
#if ACT_HAVE_AVX512_CODE
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

static void forward_chunk(ActKind kind, size_t n, const float *x, float *y, int vec) {
#if ACT_HAVE_AVX512_CODE
    if (vec) {
        forward_avx512(kind, n, x, y);
        return;
    }
#endif
    (void)vec;
    activation_forward_portable(kind, n, x, y);
}

static void backward_chunk(ActKind kind, size_t n, const float *x, const float *dy, float *dx,
                           int vec) {
#if ACT_HAVE_AVX512_CODE
    if (vec) {
        backward_avx512(kind, n, x, dy, dx);
        return;
    }
#endif
    (void)vec;
    activation_backward_portable(kind, n, x, dy, dx);
}

static void forward_all(ActKind kind, size_t n, const float *x, float *y) {
    const int vec = use_avx512();
    const long long chunks = (long long)((n + CHUNK - 1) / CHUNK);
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (long long c = 0; c < chunks; c++) {
        size_t off = (size_t)c * CHUNK, len = n - off < CHUNK ? n - off : CHUNK;
        forward_chunk(kind, len, x + off, y + off, vec);
    }
}

static void backward_all(ActKind kind, size_t n, const float *x, const float *dy, float *dx) {
    const int vec = use_avx512();
    const long long chunks = (long long)((n + CHUNK - 1) / CHUNK);
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (long long c = 0; c < chunks; c++) {
        size_t off = (size_t)c * CHUNK, len = n - off < CHUNK ? n - off : CHUNK;
        backward_chunk(kind, len, x + off, dy + off, dx + off, vec);
    }
}

void silu_forward(size_t n, const float *x, float *y) {
    forward_all(ACT_SILU, n, x, y);
}

void silu_backward_input(size_t n, const float *x, const float *dy, float *dx) {
    backward_all(ACT_SILU, n, x, dy, dx);
}

void gelu_forward(size_t n, const float *x, float *y) {
    forward_all(ACT_GELU, n, x, y);
}

void gelu_backward_input(size_t n, const float *x, const float *dy, float *dx) {
    backward_all(ACT_GELU, n, x, dy, dx);
}

void quick_gelu_forward(size_t n, const float *x, float *y) {
    forward_all(ACT_QUICK_GELU, n, x, y);
}

void quick_gelu_backward_input(size_t n, const float *x, const float *dy, float *dx) {
    backward_all(ACT_QUICK_GELU, n, x, dy, dx);
}

void geglu_forward(int rows, int dim, const float *x, float *y) {
    const int vec = use_avx512();
#pragma omp parallel for schedule(static) if ((long long)rows * dim >= PARALLEL_MIN)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * 2 * dim;
        float *yr = y + (size_t)r * dim;
#if ACT_HAVE_AVX512_CODE
        if (vec) {
            geglu_row_avx512(dim, xr, yr);
            continue;
        }
#endif
        (void)vec;
        for (int i = 0; i < dim; i++)
            yr[i] = xr[i] * gelu1(xr[dim + i]);
    }
}

void geglu_backward_input(int rows, int dim, const float *x, const float *dy, float *dx) {
    const int vec = use_avx512();
#pragma omp parallel for schedule(static) if ((long long)rows * dim >= PARALLEL_MIN)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * 2 * dim;
        const float *dyr = dy + (size_t)r * dim;
        float *dxr = dx + (size_t)r * 2 * dim;
#if ACT_HAVE_AVX512_CODE
        if (vec) {
            geglu_row_backward_avx512(dim, xr, dyr, dxr);
            continue;
        }
#endif
        (void)vec;
        for (int i = 0; i < dim; i++) {
            float gi = xr[dim + i], ai = xr[i], d = dyr[i];
            dxr[i] = d * gelu1(gi);
            dxr[dim + i] = d * ai * gelu_grad1(gi);
        }
    }
}
