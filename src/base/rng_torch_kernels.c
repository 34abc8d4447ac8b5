/* The float math of torch.randn's two CPU kernels, reproduced operation by operation.
 *
 * Every rounding matters here, so: no operation may be fused or reordered unless torch's
 * binary does it. GCC in ISO C mode (-std=c11) never contracts a*b+c; clang does within one
 * expression unless told not to, hence the pragma. Where torch's binary has an FMA we call
 * fmaf(), which is exact on every target (an instruction with -mfma, libm otherwise).
 *
 * Where the AVX2 sequence comes from: ATen/native/cpu/avx_mathfun.h (log256_ps, sincos256_ps,
 * Cephes single-precision algorithms written with AVX intrinsics) as called by NormalFill16 in
 * ATen/native/cpu/DistributionTemplates.h. torch 2.15's libtorch_cpu.so is built by GCC with
 * -mavx2 -mfma and FMA contraction allowed, so GCC fused 22 of the intrinsic multiply/add
 * pairs into vfmadd/vfmsub/vfnmadd; the sequence below follows the disassembly of
 * NormalFill16<float, true>::operator() in that library (see docs/rng.md). */
#include "base/rng_torch_kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* ------------------------------------------------------------------ scalar ("default") */

void torch_box_muller16_scalar(float data[16]) {
    /* 2 * pi in double, as torch's `2.0f * c10::pi<double>`; theta is rounded to float after
     * the product with u2 is taken in double. */
    const double two_pi = 2.0 * 3.14159265358979323846;
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - data[j];
        float u2 = data[j + 8];
        float radius = sqrtf(-2.0f * logf(u1));
        float theta = (float)(two_pi * (double)u2);
        /* torch: fma(radius * cos(theta), std, mean) with std 1, mean 0. */
        float n1 = radius * cosf(theta);
        float n2 = radius * sinf(theta);
        data[j] = fmaf(n1, 1.0f, 0.0f);
        data[j + 8] = fmaf(n2, 1.0f, 0.0f);
    }
}

/* ------------------------------------------------------------------ AVX2 */

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* _mm256_max_ps(a, b): a when a > b, else b (also when either is NaN). */
static float max_ps(float a, float b) {
    return a > b ? a : b;
}

/* The constants of avx_mathfun.h, as the float bit patterns in torch's binary. */
static const float kSqrtHalf = 0x1.6a09e6p-1f;
static const float kLogP[9] = {0x1.204376p-4f,  -0x1.d7a370p-4f, 0x1.de4a34p-4f,
                               -0x1.fcba9ep-4f, 0x1.23d37ep-3f,  -0x1.555ca0p-3f,
                               0x1.999d58p-3f,  -0x1.fffff8p-3f, 0x1.555554p-2f};
static const float kLogQ1 = -0x1.bd0106p-13f;
static const float kLogQ2 = 0x1.63p-1f;
static const float kTwoPi = 0x1.921fb6p+2f; /* (float)(2 * pi) */
static const float kFourOverPi = 0x1.45f306p+0f;
static const float kMinusDP1 = -0x1.92p-1f;
static const float kMinusDP2 = -0x1.fb4p-13f;
static const float kMinusDP3 = -0x1.4442d2p-25f;
static const float kCosP0 = 0x1.99eb9cp-16f;
static const float kCosP1 = -0x1.6c0c34p-10f;
static const float kCosP2 = 0x1.55554ap-5f;
static const float kSinP0 = -0x1.9943f2p-13f;
static const float kSinP1 = 0x1.11073cp-7f;
static const float kSinP2 = -0x1.555546p-3f;

/* log256_ps for one lane. */
static float cephes_logf(float x_in) {
    const uint32_t invalid = x_in <= 0.0f ? 0xffffffffu : 0u;
    float x = max_ps(x_in, 0x1p-126f); /* cut off denormals */
    int32_t exponent = (int32_t)(bits_of(x) >> 23) - 0x7f;
    x = float_of((bits_of(x) & ~0x7f800000u) | bits_of(0.5f));
    float e = (float)exponent;
    e = e + 1.0f;

    /* if x < sqrt(1/2): e -= 1, x = x + x - 1; else x = x - 1 (done without a branch) */
    const uint32_t mask = x < kSqrtHalf ? 0xffffffffu : 0u;
    float tmp = float_of(bits_of(x) & mask);
    x = x - 1.0f;
    e = e - float_of(bits_of(1.0f) & mask);
    x = x + tmp;

    float z = x * x;
    float y = fmaf(kLogP[0], x, kLogP[1]);
    for (int i = 2; i <= 8; i++)
        y = fmaf(y, x, kLogP[i]);
    float eq1 = e * kLogQ1;
    y = y * x;
    y = fmaf(y, z, eq1);
    y = fmaf(-z, 0.5f, y);
    x = x + y;
    x = fmaf(e, kLogQ2, x);
    return float_of(bits_of(x) | invalid); /* NaN for x <= 0 */
}

/* sincos256_ps for one lane. */
static void cephes_sincosf(float x_in, float *s, float *c) {
    uint32_t sign_bit_sin = bits_of(x_in) & 0x80000000u;
    float x = float_of(bits_of(x_in) & 0x7fffffffu);

    /* octant j = (int(x * 4/pi) + 1) & ~1, and its float copy y */
    float y = x * kFourOverPi;
    int32_t j = (int32_t)y; /* cvttps2dq truncates; |theta| < 2pi here, so no overflow */
    j = (int32_t)(((uint32_t)j + 1u) & ~1u);
    y = (float)j;
    const uint32_t swap_sign_bit_sin = ((uint32_t)j & 4u) << 29;
    const uint32_t poly_mask = ((uint32_t)j & 2u) == 0 ? 0xffffffffu : 0u;

    /* extended precision modular arithmetic: x = ((x - y*DP1) - y*DP2) - y*DP3, fused */
    x = fmaf(y, kMinusDP1, x);
    x = fmaf(kMinusDP2, y, x);
    x = fmaf(y, kMinusDP3, x);

    const uint32_t sign_bit_cos = (~((uint32_t)j - 2u) & 4u) << 29;
    sign_bit_sin ^= swap_sign_bit_sin;

    /* cosine polynomial, for 0 <= x <= pi/4 */
    float z = x * x;
    float half_z = z * 0.5f;
    float yc = fmaf(kCosP0, z, kCosP1);
    yc = fmaf(yc, z, kCosP2);
    yc = z * yc;
    yc = fmaf(z, yc, -half_z);
    yc = yc + 1.0f;

    /* sine polynomial */
    float ys = fmaf(kSinP0, z, kSinP1);
    ys = fmaf(ys, z, kSinP2);
    ys = z * ys;
    ys = fmaf(x, ys, x);

    /* select with masks and the same adds / subtracts as the vector code (they decide the
     * sign of zero results) */
    float ysin2 = float_of(poly_mask & bits_of(ys));
    float ysin1 = float_of(~poly_mask & bits_of(yc));
    float ys_rest = ys - ysin2;
    float yc_rest = yc - ysin1;
    float sin_v = ysin1 + ysin2;
    float cos_v = ys_rest + yc_rest;
    *s = float_of(bits_of(sin_v) ^ sign_bit_sin);
    *c = float_of(bits_of(cos_v) ^ sign_bit_cos);
}

void torch_box_muller16_avx2(float data[16]) {
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - data[j];
        float u2 = data[j + 8];
        float radius = sqrtf(cephes_logf(u1) * -2.0f);
        float theta = kTwoPi * u2;
        float sin_t, cos_t;
        cephes_sincosf(theta, &sin_t, &cos_t);
        float n1 = radius * cos_t;
        float n2 = radius * sin_t;
        /* _mm256_fmadd_ps(n, std, mean) with std 1, mean 0 */
        data[j] = fmaf(n1, 1.0f, 0.0f);
        data[j + 8] = fmaf(n2, 1.0f, 0.0f);
    }
}
