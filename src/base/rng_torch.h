/* An exact emulation of PyTorch's CPU random generator (CPUGeneratorImpl: mt19937 with torch's
 * seeding, plus the cached second Box-Muller sample) and of the CPU kernels behind
 * torch.randn / rand / randint / randperm for contiguous tensors, so that a seed gives the same
 * bits as `torch.Generator("cpu").manual_seed(seed)` (or `torch.manual_seed(seed)`).
 *
 * torch.randn has two float32 kernels whose last bits differ (see docs/rng.md):
 *   TORCH_KERNEL_SCALAR  torch's "default" CPU capability: libm logf / sincosf per element;
 *   TORCH_KERNEL_AVX2    torch's AVX2 capability (also what AVX-512 CPUs run): Cephes-style
 *                        vector log / sincos with the FMAs torch's compiler fused in.
 * Both are plain C here and run on any CPU; `kernel` picks which one torch would have used.
 *
 * The generator is a plain struct: copying it saves the exact stream position (that is how
 * training resumes bit-exactly). torch_rng_get_state / torch_rng_set_state convert to and from
 * the 5056 bytes of torch's `Generator.get_state()`, so states move both ways with torch. */
#ifndef SDTI_BASE_RNG_TORCH_H
#define SDTI_BASE_RNG_TORCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define TORCH_MT_STATE_WORDS 624
/* sizeof(CPUGeneratorImplState) on x86-64 / aarch64: what Generator.get_state() returns. */
#define TORCH_RNG_STATE_SIZE 5056

typedef enum TorchNormalKernel {
    TORCH_KERNEL_SCALAR = 0,
    TORCH_KERNEL_AVX2 = 1,
} TorchNormalKernel;

typedef struct TorchGenerator {
    uint64_t seed;                        /* as given to manual_seed; only its low 32 bits seed */
    uint32_t state[TORCH_MT_STATE_WORDS]; /* mt19937 words */
    uint32_t next;                        /* index of the next word to temper, 0..624 */
    int32_t left;                         /* draws until the next twist, plus one: 1..624 */
    bool has_next_double_normal;          /* torch caches the second sample of a pair ... */
    double next_double_normal;            /* ... for tensors of fewer than 16 elements */
    bool has_next_float_normal;           /* kept for state round trips; unused on CPU */
    float next_float_normal;
    TorchNormalKernel kernel; /* which torch.randn kernel to reproduce */
} TorchGenerator;

/* The kernel torch would pick on this machine: ATEN_CPU_CAPABILITY=default -> scalar,
 * =avx2 / =avx512 -> AVX2; otherwise AVX2 when the CPU has AVX2 and FMA, else scalar. */
TorchNormalKernel torch_rng_default_kernel(void);
const char *torch_rng_kernel_name(TorchNormalKernel kernel);
/* "default" or "scalar", "avx2", "avx512" (torch runs its AVX2 kernel there), "auto". */
int torch_rng_kernel_from_name(const char *name, TorchNormalKernel *out, Error *err);

/* A new generator: = torch.Generator("cpu").manual_seed(seed), kernel from
 * torch_rng_default_kernel(). */
void torch_rng_init(TorchGenerator *g, uint64_t seed);
/* = generator.manual_seed(seed) on an existing generator: keeps g->kernel. */
void torch_rng_seed(TorchGenerator *g, uint64_t seed);

uint32_t torch_rng_random32(TorchGenerator *g);
/* Two 32-bit draws, the first one in the high half (CPUGeneratorImpl::random64). */
uint64_t torch_rng_random64(TorchGenerator *g);

/* torch.randn(numel) as float32 (any shape with that many elements; also randn_like and
 * Tensor.normal_()), with g->kernel. Draws numel uniforms (+16 when numel >= 16 and numel % 16
 * != 0) or, below 16 elements, pairs of 53-bit uniforms through the cached-sample path. */
void torch_randn(TorchGenerator *g, float *out, size_t numel);
/* torch.rand(numel) as float32: uniform on [0, 1) with 24 random bits, one draw each. */
void torch_rand(TorchGenerator *g, float *out, size_t numel);
/* torch.randint(low, high, (numel,)) as int64. Fails when low >= high. */
int torch_randint(TorchGenerator *g, int64_t low, int64_t high, int64_t *out, size_t numel,
                  Error *err);
/* torch.randperm(n) as int64 into out[n]. Fails when n < 0. */
int torch_randperm(TorchGenerator *g, int64_t n, int64_t *out, Error *err);
/* torch.empty((), dtype=torch.int64).random_(): uniform on [0, 2^63). DataLoader draws its
 * base seed and RandomSampler its private generator's seed this way (see docs/rng.md). */
int64_t torch_random_int64(TorchGenerator *g);

/* Generator.get_state(): the 5056 bytes of torch's CPUGeneratorImplState, little-endian. */
void torch_rng_get_state(const TorchGenerator *g, uint8_t out[TORCH_RNG_STATE_SIZE]);
/* Generator.set_state(bytes): checks size and the engine fields as torch does (plus the bound
 * that keeps reads inside the state array). Keeps g->kernel when it is valid, else sets the
 * default; on failure g is unchanged. `what` names the source in error messages. */
int torch_rng_set_state(TorchGenerator *g, const uint8_t *bytes, size_t size, const char *what,
                        Error *err);

#endif
