/* What every C benchmark needs: a monotonic clock and deterministic fill values (no model
 * files: the benchmarks build random SD-shaped weights and inputs). */
#ifndef SDTI_BENCH_UTIL_H
#define SDTI_BENCH_UTIL_H

#include <stddef.h>
#include <time.h>

/* Seconds on the monotonic clock. */
static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* x[i] uniform in [-1, 1) from a 64-bit LCG seeded by `seed`: the same values on every run. */
static inline void bench_fill(float *x, size_t n, unsigned seed) {
    unsigned long long s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((s >> 40) / 8388608.0 - 1.0);
    }
}

#endif
