// labels: unit
/* The PyTorch CPU generator emulation against torch 2.15 itself (fixtures written by
 * tools/reference/make_rng_fixtures.py): every case seeds one generator and runs a list of
 * steps (randn / rand / randint / randperm / random_ / DataLoader sampler), comparing the
 * output bytes with memcmp (or, for big outputs, a 64-bit FNV-1a of all bytes plus the first
 * and last 64 elements), and, where torch recorded it, our get_state bytes with torch's. After
 * each state check the run continues from torch's bytes imported with set_state, so import is
 * tested by every later step. randn cases exist for both kernels ("default" and "avx2"). */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "base/rng_torch.h"
#include "test_util.h"

typedef struct Blob {
    const uint8_t *data;
    size_t size;
} Blob;

static const char *g_data;
static size_t g_data_size;

static bool blob_at(const cJSON *ref, Blob *out) {
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(ref, "offset");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(ref, "size");
    if (!cJSON_IsNumber(off) || !cJSON_IsNumber(size))
        return false;
    size_t o = (size_t)off->valuedouble, s = (size_t)size->valuedouble;
    if (o > g_data_size || s > g_data_size - o)
        return false;
    out->data = (const uint8_t *)g_data + o;
    out->size = s;
    return true;
}

static uint64_t fnv1a64(const uint8_t *p, size_t n) {
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

static int64_t json_int(const cJSON *step, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(step, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

/* Index of the first differing element, for the failure message. */
static size_t first_diff(const uint8_t *a, const uint8_t *b, size_t n, size_t elem) {
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return i / elem;
    return (size_t)-1;
}

/* Compares `got` (bytes of one step's output) with the step's expectation. */
static bool check_output(const char *name, int step_no, const cJSON *step, const uint8_t *got,
                         size_t size, size_t elem) {
    Blob want;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(step, "data");
    if (data) {
        if (!blob_at(data, &want) || want.size != size) {
            CHECKF(false, "%s step %d: bad fixture entry or size %zu vs %zu", name, step_no,
                   want.size, size);
            return false;
        }
        bool same = memcmp(got, want.data, size) == 0;
        CHECKF(same, "%s step %d: output differs from torch from element %zu on", name, step_no,
               first_diff(got, want.data, size, elem));
        return same;
    }
    const cJSON *hash = cJSON_GetObjectItemCaseSensitive(step, "hash");
    Blob head, tail;
    if (!cJSON_IsString(hash) || !blob_at(cJSON_GetObjectItemCaseSensitive(step, "head"), &head) ||
        !blob_at(cJSON_GetObjectItemCaseSensitive(step, "tail"), &tail) || head.size > size ||
        tail.size > size) {
        CHECKF(false, "%s step %d: bad fixture entry", name, step_no);
        return false;
    }
    bool head_ok = memcmp(got, head.data, head.size) == 0;
    bool tail_ok = memcmp(got + size - tail.size, tail.data, tail.size) == 0;
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, fnv1a64(got, size));
    bool hash_ok = strcmp(hex, hash->valuestring) == 0;
    CHECKF(head_ok, "%s step %d: first elements differ from torch from element %zu on", name,
           step_no, first_diff(got, head.data, head.size, elem));
    CHECKF(tail_ok, "%s step %d: last elements differ from torch", name, step_no);
    CHECKF(hash_ok, "%s step %d: FNV-1a of the output is %s, torch's is %s", name, step_no, hex,
           hash->valuestring);
    return head_ok && tail_ok && hash_ok;
}

/* Runs one case; returns true when every step matched. */
static bool run_case(const cJSON *c) {
    const char *name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
    const char *kernel_name = cJSON_GetObjectItemCaseSensitive(c, "kernel")->valuestring;
    uint64_t seed = strtoull(cJSON_GetObjectItemCaseSensitive(c, "seed")->valuestring, NULL, 10);
    TorchGenerator g;
    torch_rng_init(&g, seed);
    Error err = {{0}};
    if (strcmp(kernel_name, "any") != 0)
        CHECK_OK(torch_rng_kernel_from_name(kernel_name, &g.kernel, &err), &err);
    TorchNormalKernel kernel = g.kernel;

    bool ok = true;
    int step_no = 0;
    const cJSON *step;
    cJSON_ArrayForEach(step, cJSON_GetObjectItemCaseSensitive(c, "steps")) {
        const char *op = cJSON_GetObjectItemCaseSensitive(step, "op")->valuestring;
        int64_t n = json_int(step, "n");
        size_t count = n < 0 ? 1 : (size_t)n;
        void *buf = malloc(count ? count * 8 : 8);
        size_t elem = 8;
        if (strcmp(op, "randn") == 0) {
            torch_randn(&g, buf, count);
            elem = 4;
        } else if (strcmp(op, "rand") == 0) {
            torch_rand(&g, buf, count);
            elem = 4;
        } else if (strcmp(op, "randint") == 0) {
            CHECK_OK(
                torch_randint(&g, json_int(step, "low"), json_int(step, "high"), buf, count, &err),
                &err);
        } else if (strcmp(op, "randperm") == 0) {
            CHECK_OK(torch_randperm(&g, n, buf, &err), &err);
        } else if (strcmp(op, "random_int64") == 0) {
            ((int64_t *)buf)[0] = torch_random_int64(&g);
        } else if (strcmp(op, "sampler_perm") == 0) {
            TorchGenerator private_gen = g; /* keeps the kernel; seeded below */
            torch_rng_seed(&private_gen, (uint64_t)torch_random_int64(&g));
            CHECK_OK(torch_randperm(&private_gen, n, buf, &err), &err);
        } else {
            CHECKF(false, "%s: unknown op %s", name, op);
        }
        ok = check_output(name, step_no, step, buf, count * elem, elem) && ok;
        free(buf);

        const cJSON *state = cJSON_GetObjectItemCaseSensitive(step, "state");
        Blob want;
        if (state && blob_at(state, &want)) {
            uint8_t mine[TORCH_RNG_STATE_SIZE];
            torch_rng_get_state(&g, mine);
            bool same = want.size == sizeof mine && memcmp(mine, want.data, sizeof mine) == 0;
            CHECKF(same, "%s step %d: get_state differs from torch's from byte %zu on", name,
                   step_no, first_diff(mine, want.data, sizeof mine, 1));
            ok = ok && same;
            /* continue from torch's own bytes */
            TorchGenerator imported;
            torch_rng_init(&imported, 12345);
            imported.kernel = kernel;
            CHECK_OK(torch_rng_set_state(&imported, want.data, want.size, name, &err), &err);
            g = imported;
        }
        step_no++;
    }
    return ok;
}

/* Struct copies resume exactly, and set_state refuses what would break the engine. */
static void test_copy_and_bad_states(void) {
    TorchGenerator a;
    torch_rng_init(&a, 42);
    float x[40];
    torch_randn(&a, x, 3); /* leaves a cached normal sample */
    CHECK(a.has_next_double_normal);
    TorchGenerator b = a;
    float ya[40], yb[40];
    torch_randn(&a, ya, 40);
    torch_randn(&b, yb, 40);
    CHECK(memcmp(ya, yb, sizeof ya) == 0);

    uint8_t st[TORCH_RNG_STATE_SIZE];
    torch_rng_get_state(&a, st);
    TorchGenerator c;
    torch_rng_init(&c, 0);
    Error err = {{0}};
    CHECK_FAILS_WITH(torch_rng_set_state(&c, st, 100, "ckpt.state", &err), &err, "5056 bytes");
    CHECK_FAILS_WITH(torch_rng_set_state(&c, NULL, 0, "ckpt.state", &err), &err, "ckpt.state");
    uint8_t bad[TORCH_RNG_STATE_SIZE];
    memcpy(bad, st, sizeof bad);
    memset(bad + 12, 0, 4); /* seeded = 0 */
    CHECK_FAILS_WITH(torch_rng_set_state(&c, bad, sizeof bad, "ckpt.state", &err), &err, "byte 12");
    memcpy(bad, st, sizeof bad);
    memset(bad + 8, 0, 4); /* left = 0 */
    CHECK_FAILS_WITH(torch_rng_set_state(&c, bad, sizeof bad, "ckpt.state", &err), &err,
                     "'left' is 0");
    memcpy(bad, st, sizeof bad);
    bad[8] = 5, bad[9] = 0, bad[10] = 0, bad[11] = 0; /* left = 5 ... */
    bad[16] = 0x70, bad[17] = 0x02;                   /* ... next = 624 */
    memset(bad + 18, 0, 6);
    CHECK_FAILS_WITH(torch_rng_set_state(&c, bad, sizeof bad, "ckpt.state", &err), &err, "byte 16");
    /* a failed import leaves the generator as it was */
    TorchGenerator before = c;
    CHECK(torch_rng_set_state(&c, bad, sizeof bad, "x", &err) != 0);
    CHECK(memcmp(&before, &c, sizeof c) == 0);

    /* the bytes were taken from a after its first 40: both continue alike (with the cache) */
    CHECK_OK(torch_rng_set_state(&c, st, sizeof st, "ckpt.state", &err), &err);
    float za[5], zc[5];
    torch_randn(&a, za, 5);
    torch_randn(&c, zc, 5);
    CHECK(memcmp(za, zc, sizeof za) == 0);

    int64_t out[4];
    CHECK_FAILS_WITH(torch_randint(&c, 5, 5, out, 4, &err), &err, "low (5)");
    CHECK_FAILS_WITH(torch_randperm(&c, -1, out, &err), &err, "-1");
    TorchNormalKernel k;
    CHECK_FAILS_WITH(torch_rng_kernel_from_name("sse", &k, &err), &err, "'sse'");
    CHECK(torch_rng_kernel_from_name("avx512", &k, &err) == 0 && k == TORCH_KERNEL_AVX2);
}

int main(void) {
    Error err = {{0}};
    char *json = NULL, *data = NULL;
    size_t json_size = 0;
    CHECK_OK(file_read_all(test_fixture("rng/cases.json"), &json, &json_size, &err), &err);
    CHECK_OK(file_read_all(test_fixture("rng/data.bin"), &data, &g_data_size, &err), &err);
    g_data = data;
    cJSON *root = json ? cJSON_ParseWithLength(json, json_size) : NULL;
    CHECK(root != NULL);
    if (root) {
        CHECK(json_int(root, "state_size") == TORCH_RNG_STATE_SIZE);
        int total = 0, passed = 0, per_kernel[2] = {0, 0};
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "cases")) {
            total++;
            if (run_case(c))
                passed++;
            const char *k = cJSON_GetObjectItemCaseSensitive(c, "kernel")->valuestring;
            if (strcmp(k, "default") == 0)
                per_kernel[0]++;
            else if (strcmp(k, "avx2") == 0)
                per_kernel[1]++;
        }
        printf("%d of %d torch cases bit-exact (%d default-kernel, %d avx2-kernel randn cases)\n",
               passed, total, per_kernel[0], per_kernel[1]);
        CHECK(total > 300 && per_kernel[0] > 100 && per_kernel[1] > 100);
        cJSON_Delete(root);
    }
    test_copy_and_bad_states();
    free(json);
    free(data);
    return test_finish();
}
