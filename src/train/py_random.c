/* CPython's _randommodule.c algorithm (Matsumoto & Nishimura's mt19937ar with
 * init_by_array), and Lib/random.py's methods on top of it. */
#include "train/py_random.h"

/* Python rounds a * b + c twice; clang -march=native would fuse it into one FMA. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <string.h>

static void init_genrand(PyRandom *r, uint32_t s) {
    r->mt[0] = s;
    for (int i = 1; i < PY_MT_N; i++)
        r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
    r->index = PY_MT_N;
}

static void init_by_array(PyRandom *r, const uint32_t *key, int len) {
    init_genrand(r, 19650218u);
    int i = 1, j = 0;
    for (int k = PY_MT_N > len ? PY_MT_N : len; k; k--) {
        r->mt[i] =
            (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1664525u)) + key[j] + (uint32_t)j;
        i++;
        j++;
        if (i >= PY_MT_N) {
            r->mt[0] = r->mt[PY_MT_N - 1];
            i = 1;
        }
        if (j >= len)
            j = 0;
    }
    for (int k = PY_MT_N - 1; k; k--) {
        r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1566083941u)) - (uint32_t)i;
        i++;
        if (i >= PY_MT_N) {
            r->mt[0] = r->mt[PY_MT_N - 1];
            i = 1;
        }
    }
    r->mt[0] = 0x80000000u;
}

void py_random_seed(PyRandom *r, int64_t n) {
    uint64_t u = n < 0 ? (uint64_t)0 - (uint64_t)n : (uint64_t)n;
    uint32_t key[2] = {(uint32_t)u, (uint32_t)(u >> 32)};
    init_by_array(r, key, key[1] ? 2 : 1);
}

uint32_t py_random_u32(PyRandom *r) {
    if (r->index >= PY_MT_N) {
        static const uint32_t mag01[2] = {0u, 0x9908b0dfu};
        int kk;
        for (kk = 0; kk < PY_MT_N - 397; kk++) {
            uint32_t y = (r->mt[kk] & 0x80000000u) | (r->mt[kk + 1] & 0x7fffffffu);
            r->mt[kk] = r->mt[kk + 397] ^ (y >> 1) ^ mag01[y & 1u];
        }
        for (; kk < PY_MT_N - 1; kk++) {
            uint32_t y = (r->mt[kk] & 0x80000000u) | (r->mt[kk + 1] & 0x7fffffffu);
            r->mt[kk] = r->mt[kk + (397 - PY_MT_N)] ^ (y >> 1) ^ mag01[y & 1u];
        }
        uint32_t y = (r->mt[PY_MT_N - 1] & 0x80000000u) | (r->mt[0] & 0x7fffffffu);
        r->mt[PY_MT_N - 1] = r->mt[396] ^ (y >> 1) ^ mag01[y & 1u];
        r->index = 0;
    }
    uint32_t y = r->mt[r->index++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

double py_random_random(PyRandom *r) {
    uint32_t a = py_random_u32(r) >> 5, b = py_random_u32(r) >> 6;
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

/* getrandbits fills 32-bit words from the least significant end; the last (most
 * significant) word keeps its top bits. */
uint64_t py_random_getrandbits(PyRandom *r, int k) {
    if (k <= 0)
        return 0; /* CPython: getrandbits(0) is 0 and draws nothing */
    if (k <= 32)
        return py_random_u32(r) >> (32 - k);
    uint64_t lo = py_random_u32(r);
    uint64_t hi = py_random_u32(r) >> (64 - k);
    return lo | hi << 32;
}

uint64_t py_random_randbelow(PyRandom *r, uint64_t n) {
    if (n == 0)
        return 0; /* CPython would loop forever; callers check their ranges (randrange raises) */
    int k = 0;
    for (uint64_t t = n; t; t >>= 1)
        k++;
    uint64_t v = py_random_getrandbits(r, k);
    while (v >= n)
        v = py_random_getrandbits(r, k);
    return v;
}

int64_t py_random_randint(PyRandom *r, int64_t a, int64_t b) {
    return a + (int64_t)py_random_randbelow(r, (uint64_t)(b - a) + 1);
}

double py_random_uniform(PyRandom *r, double a, double b) {
    return a + (b - a) * py_random_random(r);
}

void py_random_shuffle(PyRandom *r, void *items, size_t count, size_t size) {
    unsigned char *p = items, tmp[64];
    for (size_t i = count; i-- > 1;) {
        size_t j = (size_t)py_random_randbelow(r, i + 1);
        for (size_t off = 0; off < size; off += sizeof tmp) {
            size_t n = size - off < sizeof tmp ? size - off : sizeof tmp;
            memcpy(tmp, p + i * size + off, n);
            memcpy(p + i * size + off, p + j * size + off, n);
            memcpy(p + j * size + off, tmp, n);
        }
    }
}
