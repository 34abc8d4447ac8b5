/* Python's `random` module (CPython's Mersenne Twister and the methods kohya's dataset code
 * calls), reproduced bit for bit: kohya shuffles captions, picks wildcards and templates,
 * flips, crops and orders batches with the global `random` generator, so a seeded stream
 * here gives the same choices as CPython given the same seed and the same call order.
 *
 * Covered: random.seed(int) (init_by_array over the 32-bit words of |n|), random(),
 * getrandbits(k <= 64), randbelow, randint, randrange, choice, shuffle, uniform. The state is
 * a plain struct: copy it to save or restore the position. */
#ifndef SDTI_TRAIN_PY_RANDOM_H
#define SDTI_TRAIN_PY_RANDOM_H

#include <stddef.h>
#include <stdint.h>

#define PY_MT_N 624

typedef struct PyRandom {
    uint32_t mt[PY_MT_N];
    int index; /* next word, PY_MT_N = twist before the next draw */
} PyRandom;

/* random.seed(n) for an int n (sign ignored, as CPython takes abs(n)). */
void py_random_seed(PyRandom *r, int64_t n);
uint32_t py_random_u32(PyRandom *r);
/* random.random(): 53-bit float in [0, 1). */
double py_random_random(PyRandom *r);
/* random.getrandbits(k), 1 <= k <= 64. */
uint64_t py_random_getrandbits(PyRandom *r, int k);
/* random._randbelow(n), n >= 1: uniform in [0, n) by rejection on bit_length(n) bits. */
uint64_t py_random_randbelow(PyRandom *r, uint64_t n);
/* random.randint(a, b), a <= b. */
int64_t py_random_randint(PyRandom *r, int64_t a, int64_t b);
/* random.uniform(a, b) = a + (b - a) * random(). */
double py_random_uniform(PyRandom *r, double a, double b);
/* random.shuffle(x) over `count` elements of `size` bytes. */
void py_random_shuffle(PyRandom *r, void *items, size_t count, size_t size);

#endif
