/* PyTorch's CPU generator and its tensor-level draws (see rng_torch.h and docs/rng.md).
 * Sources followed: ATen/core/MT19937RNGEngine.h (engine, seeding), ATen/CPUGeneratorImpl.cpp
 * (random64, get_state layout), ATen/core/DistributionsHelper.h and TransformationHelper.h
 * (uniform, normal, randint transforms), ATen/native/cpu/DistributionTemplates.h (normal_fill),
 * ATen/native/TensorFactories.cpp (randperm_cpu), all as built in torch 2.15. */
#include "base/rng_torch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng_torch_kernels.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

enum {
    MT_N = TORCH_MT_STATE_WORDS,
    MT_M = 397,
};

/* ------------------------------------------------------------------ kernel choice */

static bool cpu_has_avx2_fma(void) {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

TorchNormalKernel torch_rng_default_kernel(void) {
    /* torch reads ATEN_CPU_CAPABILITY once per process and trusts it; "avx512" runs the AVX2
     * normal kernel because torch registers none for AVX-512. Other values are ignored. */
    const char *env = getenv("ATEN_CPU_CAPABILITY");
    if (env) {
        if (strcmp(env, "default") == 0)
            return TORCH_KERNEL_SCALAR;
        if (strcmp(env, "avx2") == 0 || strcmp(env, "avx512") == 0)
            return TORCH_KERNEL_AVX2;
    }
    return cpu_has_avx2_fma() ? TORCH_KERNEL_AVX2 : TORCH_KERNEL_SCALAR;
}

const char *torch_rng_kernel_name(TorchNormalKernel kernel) {
    switch (kernel) {
    case TORCH_KERNEL_SCALAR:
        return "default";
    case TORCH_KERNEL_AVX2:
        return "avx2";
    }
    return "unknown";
}

int torch_rng_kernel_from_name(const char *name, TorchNormalKernel *out, Error *err) {
    if (!name)
        return error_set(err, "random kernel: no name given (use default, avx2, avx512 or auto)");
    if (strcmp(name, "default") == 0 || strcmp(name, "scalar") == 0)
        *out = TORCH_KERNEL_SCALAR;
    else if (strcmp(name, "avx2") == 0 || strcmp(name, "avx512") == 0)
        *out = TORCH_KERNEL_AVX2;
    else if (strcmp(name, "auto") == 0)
        *out = torch_rng_default_kernel();
    else
        return error_set(err,
                         "random kernel '%s' is unknown: use default (torch's scalar kernel), "
                         "avx2, avx512 (runs torch's AVX2 kernel) or auto",
                         name);
    return 0;
}

/* ------------------------------------------------------------------ engine */

void torch_rng_seed(TorchGenerator *g, uint64_t seed) {
    g->seed = seed;
    g->state[0] = (uint32_t)(seed & 0xffffffffu);
    for (uint32_t j = 1; j < MT_N; j++)
        g->state[j] = 1812433253u * (g->state[j - 1] ^ (g->state[j - 1] >> 30)) + j;
    g->left = 1;
    g->next = 0;
    g->has_next_double_normal = false;
    g->next_double_normal = 0.0;
    g->has_next_float_normal = false;
    g->next_float_normal = 0.0f;
}

void torch_rng_init(TorchGenerator *g, uint64_t seed) {
    memset(g, 0, sizeof *g);
    torch_rng_seed(g, seed);
    g->kernel = torch_rng_default_kernel();
}

static uint32_t twist(uint32_t u, uint32_t v) {
    uint32_t mixed = (u & 0x80000000u) | (v & 0x7fffffffu);
    return (mixed >> 1) ^ ((v & 1u) ? 0x9908b0dfu : 0u);
}

static void next_state(TorchGenerator *g) {
    uint32_t *s = g->state;
    g->left = MT_N;
    g->next = 0;
    int i = 0;
    for (; i < MT_N - MT_M; i++)
        s[i] = s[i + MT_M] ^ twist(s[i], s[i + 1]);
    for (; i < MT_N - 1; i++)
        s[i] = s[i + MT_M - MT_N] ^ twist(s[i], s[i + 1]);
    s[MT_N - 1] = s[MT_M - 1] ^ twist(s[MT_N - 1], s[0]);
}

uint32_t torch_rng_random32(TorchGenerator *g) {
    if (--g->left <= 0)
        next_state(g);
    uint32_t y = g->state[g->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

uint64_t torch_rng_random64(TorchGenerator *g) {
    uint64_t hi = torch_rng_random32(g);
    uint64_t lo = torch_rng_random32(g);
    return (hi << 32) | lo;
}

/* ------------------------------------------------------------------ uniform */

/* uniform_real_distribution<float>(0, 1): the low 24 bits of one draw, times 2^-24. */
static float uniform_float(TorchGenerator *g) {
    return (float)(torch_rng_random32(g) & 0xffffffu) * 0x1p-24f;
}

/* uniform_real_distribution<double>(0, 1): the low 53 bits of a 64-bit draw, times 2^-53. */
static double uniform_double(TorchGenerator *g) {
    return (double)(torch_rng_random64(g) & ((UINT64_C(1) << 53) - 1)) * 0x1p-53;
}

void torch_rand(TorchGenerator *g, float *out, size_t numel) {
    for (size_t i = 0; i < numel; i++)
        out[i] = uniform_float(g);
}

/* ------------------------------------------------------------------ normal */

/* normal_distribution<double>(0, 1): Box-Muller on two 53-bit uniforms, returning the cosine
 * sample and caching the sine one for the next call. */
static double normal_double(TorchGenerator *g) {
    const double mean = 0.0, stdv = 1.0;
    double ret;
    if (g->has_next_double_normal) {
        g->has_next_double_normal = false;
        ret = g->next_double_normal;
    } else {
        double u1 = uniform_double(g);
        double u2 = uniform_double(g);
        double r = sqrt(-2.0 * log1p(-u2));
        double theta = 2.0 * 3.14159265358979323846 * u1;
        g->next_double_normal = r * sin(theta);
        g->has_next_double_normal = true;
        ret = r * cos(theta);
    }
    /* transformation::normal; kept as written so a -0.0 becomes +0.0 as in torch */
    return ret * stdv + mean;
}

static void box_muller16(TorchNormalKernel kernel, float *data) {
    if (kernel == TORCH_KERNEL_AVX2)
        torch_box_muller16_avx2(data);
    else
        torch_box_muller16_scalar(data);
}

void torch_randn(TorchGenerator *g, float *out, size_t numel) {
    if (numel < 16) {
        /* torch's serial kernel for small tensors: one double sample per element */
        for (size_t i = 0; i < numel; i++)
            out[i] = (float)normal_double(g);
        return;
    }
    /* normal_fill: all the uniforms first, then 16 at a time in place ... */
    for (size_t i = 0; i < numel; i++)
        out[i] = uniform_float(g);
    for (size_t i = 0; i + 16 <= numel; i += 16)
        box_muller16(g->kernel, out + i);
    /* ... and a ragged end is redone from 16 fresh uniforms over the last 16 elements */
    if (numel % 16 != 0) {
        float *tail = out + numel - 16;
        for (size_t i = 0; i < 16; i++)
            tail[i] = uniform_float(g);
        box_muller16(g->kernel, tail);
    }
}

/* ------------------------------------------------------------------ integers */

int torch_randint(TorchGenerator *g, int64_t low, int64_t high, int64_t *out, size_t numel,
                  Error *err) {
    if (low >= high)
        return error_set(err,
                         "randint: low (%lld) must be less than high (%lld), as torch requires",
                         (long long)low, (long long)high);
    uint64_t range = (uint64_t)high - (uint64_t)low;
    for (size_t i = 0; i < numel; i++) {
        /* uniform_int_from_to_distribution: 64-bit draws from a range of 2^28 up, so the
         * modulo skew stays small */
        uint64_t v =
            range >= (UINT64_C(1) << 28) ? torch_rng_random64(g) : (uint64_t)torch_rng_random32(g);
        out[i] = (int64_t)(v % range + (uint64_t)low);
    }
    return 0;
}

int64_t torch_random_int64(TorchGenerator *g) {
    return (int64_t)(torch_rng_random64(g) % (UINT64_C(1) << 63));
}

int torch_randperm(TorchGenerator *g, int64_t n, int64_t *out, Error *err) {
    if (n < 0)
        return error_set(err, "randperm: n must be non-negative, got %lld", (long long)n);
    if (n < (int64_t)(UINT32_MAX / 20)) {
        /* torch's "small n" shuffle: swap each slot with a later one picked by random() %
         * (n - i); the last slot is never drawn for */
        for (int64_t i = 0; i < n; i++)
            out[i] = i;
        for (int64_t i = 0; i < n - 1; i++) {
            int64_t z = (int64_t)torch_rng_random32(g) % (n - i);
            int64_t t = out[i];
            out[i] = out[z + i];
            out[z + i] = t;
        }
        return 0;
    }
    /* from 214748364 elements up: the "inside-out" Fisher-Yates with 64-bit draws */
    for (int64_t i = 0; i < n; i++) {
        int64_t z = (int64_t)(torch_rng_random64(g) % (uint64_t)(i + 1));
        out[i] = out[z];
        out[z] = i;
    }
    return 0;
}

/* ------------------------------------------------------------------ state bytes */

/* Offsets in CPUGeneratorImplState (x86-64 / aarch64 layout): the legacy THGenerator fields,
 * the mt19937 words widened to uint64, then the float cache. Padding bytes are zero. */
enum {
    OFF_SEED = 0,
    OFF_LEFT = 8,
    OFF_SEEDED = 12,
    OFF_NEXT = 16,
    OFF_STATE = 24,
    OFF_NORMAL_X = OFF_STATE + 8 * MT_N, /* 5016 */
    OFF_NORMAL_Y = OFF_NORMAL_X + 8,
    OFF_NORMAL_RHO = OFF_NORMAL_Y + 8,
    OFF_NORMAL_VALID = OFF_NORMAL_RHO + 8, /* 5040 */
    OFF_FLOAT_NORMAL = 5048,
    OFF_FLOAT_VALID = 5052,
};

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

void torch_rng_get_state(const TorchGenerator *g, uint8_t out[TORCH_RNG_STATE_SIZE]) {
    memset(out, 0, TORCH_RNG_STATE_SIZE);
    put_u64(out + OFF_SEED, g->seed);
    put_u32(out + OFF_LEFT, (uint32_t)g->left);
    put_u32(out + OFF_SEEDED, 1);
    put_u64(out + OFF_NEXT, g->next);
    for (int i = 0; i < MT_N; i++)
        put_u64(out + OFF_STATE + 8 * i, g->state[i]);
    if (g->has_next_double_normal) {
        uint64_t bits;
        memcpy(&bits, &g->next_double_normal, sizeof bits);
        put_u64(out + OFF_NORMAL_Y, bits);
        put_u32(out + OFF_NORMAL_VALID, 1);
    }
    if (g->has_next_float_normal) {
        uint32_t bits;
        memcpy(&bits, &g->next_float_normal, sizeof bits);
        put_u32(out + OFF_FLOAT_NORMAL, bits);
        out[OFF_FLOAT_VALID] = 1;
    }
}

int torch_rng_set_state(TorchGenerator *g, const uint8_t *bytes, size_t size, const char *what,
                        Error *err) {
    if (!what)
        what = "generator state";
    if (!bytes || size != TORCH_RNG_STATE_SIZE)
        return error_set(err,
                         "%s: a torch CPU generator state is %d bytes, this one has %zu; "
                         "pass the bytes of torch.Generator().get_state()",
                         what, TORCH_RNG_STATE_SIZE, bytes ? size : 0);
    int32_t left = (int32_t)get_u32(bytes + OFF_LEFT);
    uint32_t seeded = get_u32(bytes + OFF_SEEDED);
    uint64_t next = get_u64(bytes + OFF_NEXT);
    if (seeded == 0)
        return error_set(err, "%s: byte %d: the 'seeded' flag is 0: invalid mt19937 state", what,
                         OFF_SEEDED);
    if (left < 1 || left > MT_N)
        return error_set(err, "%s: byte %d: 'left' is %d, outside 1..%d: invalid mt19937 state",
                         what, OFF_LEFT, left, MT_N);
    /* torch only checks next <= 624; we also need every read before the next twist to stay
     * inside the array (next + left - 2 <= 623), which torch's own states always satisfy */
    if (next > MT_N || next + (uint64_t)left > MT_N + 1)
        return error_set(err,
                         "%s: byte %d: 'next' is %llu with 'left' %d: the position is past the "
                         "%d state words: invalid mt19937 state",
                         what, OFF_NEXT, (unsigned long long)next, left, MT_N);

    TorchGenerator n = *g;
    n.seed = get_u64(bytes + OFF_SEED);
    n.left = left;
    n.next = (uint32_t)next;
    for (int i = 0; i < MT_N; i++) /* torch keeps the low 32 bits of each legacy word */
        n.state[i] = (uint32_t)get_u64(bytes + OFF_STATE + 8 * i);
    n.has_next_double_normal = get_u32(bytes + OFF_NORMAL_VALID) != 0;
    uint64_t dbits = n.has_next_double_normal ? get_u64(bytes + OFF_NORMAL_Y) : 0;
    memcpy(&n.next_double_normal, &dbits, sizeof dbits);
    n.has_next_float_normal = bytes[OFF_FLOAT_VALID] != 0;
    uint32_t fbits = n.has_next_float_normal ? get_u32(bytes + OFF_FLOAT_NORMAL) : 0;
    memcpy(&n.next_float_normal, &fbits, sizeof fbits);
    if (n.kernel != TORCH_KERNEL_SCALAR && n.kernel != TORCH_KERNEL_AVX2)
        n.kernel = torch_rng_default_kernel();
    *g = n;
    return 0;
}
