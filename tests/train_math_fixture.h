/* Shared by the training-math tests: the fixtures written by
 * tools/reference/make_train_math_fixtures.py (train_math.json + train_math.safetensors) and
 * the error measure every comparison uses: max|ours - ref| / max|ref|. */
#ifndef SDTI_TESTS_TRAIN_MATH_FIXTURE_H
#define SDTI_TESTS_TRAIN_MATH_FIXTURE_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "formats/safetensors.h"
#include "test_util.h"

typedef struct TrainMathFixture {
    cJSON *json;
    TensorSet tensors;
} TrainMathFixture;

static inline int fixture_open(TrainMathFixture *f) {
    Error err = {0};
    tensor_set_init(&f->tensors);
    f->json = NULL;
    if (safetensors_open(test_fixture("train_math/train_math.safetensors"), &f->tensors, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    FILE *fp = fopen(test_fixture("train_math/train_math.json"), "rb");
    if (!fp)
        return -1;
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    if (!text || fread(text, 1, (size_t)size, fp) != (size_t)size) {
        fclose(fp);
        free(text);
        return -1;
    }
    fclose(fp);
    text[size] = '\0';
    f->json = cJSON_Parse(text);
    free(text);
    return f->json ? 0 : -1;
}

static inline void fixture_close(TrainMathFixture *f) {
    cJSON_Delete(f->json);
    tensor_set_free(&f->tensors);
}

/* The float32 data of a fixture tensor (NULL, and a failed check, when absent). */
static inline const float *fixture_tensor(const TrainMathFixture *f, const char *name,
                                          size_t *numel) {
    const NamedTensor *t = tensor_set_find(&f->tensors, name);
    CHECKF(t != NULL && t->dtype == DTYPE_F32, "fixture tensor %s missing", name);
    if (!t || t->dtype != DTYPE_F32)
        return NULL;
    if (numel)
        *numel = (size_t)tensor_numel(t);
    return (const float *)t->data;
}

static inline const cJSON *json_get(const cJSON *obj, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static inline double json_num(const cJSON *obj, const char *key, double fallback) {
    const cJSON *v = json_get(obj, key);
    if (cJSON_IsNumber(v))
        return v->valuedouble;
    if (cJSON_IsBool(v))
        return cJSON_IsTrue(v) ? 1.0 : 0.0;
    return fallback;
}

static inline bool json_has(const cJSON *obj, const char *key) {
    const cJSON *v = json_get(obj, key);
    return v != NULL && !cJSON_IsNull(v);
}

static inline const char *json_str(const cJSON *obj, const char *key) {
    const cJSON *v = json_get(obj, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* max|a - ref| / max|ref| (0 when both are all zero). */
static inline double rel_err(const float *a, const float *ref, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        if (d > num || d != d)
            num = d != d ? INFINITY : d;
        if (fabs((double)ref[i]) > den)
            den = fabs((double)ref[i]);
    }
    return den > 0.0 ? num / den : num;
}

/* Number of elements whose bits differ. */
static inline size_t bits_differ(const float *a, const float *ref, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += memcmp(&a[i], &ref[i], sizeof(float)) != 0;
    return bad;
}

#endif
