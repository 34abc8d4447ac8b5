// labels: unit
/* safetensors reader and writer against files written by the Python library
 * (tools/reference/make_safetensors_fixtures.py): decoded values equal what torch read from
 * them (expected.json), our writer gives back the same bytes, and every kind of damaged file
 * gives an error naming the file, the place and the reason. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/dtype.h"
#include "base/file_util.h"
#include "formats/safetensors.h"
#include "formats/tensor_set.h"
#include "test_util.h"

#define FIXTURE_DIR "formats/safetensors/"

static const char *tmp_dir;

/* ------------------------------------------------------------------------------------------
 * Helpers */

static char *read_file(const char *path, size_t *size) {
    char *data = NULL;
    Error err = {{0}};
    if (file_read_all(path, &data, size, &err) != 0) {
        CHECKF(false, "%s", err.message);
        return NULL;
    }
    return data;
}

static bool same_file_bytes(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *da = read_file(a, &na), *db = read_file(b, &nb);
    bool same = da && db && na == nb && memcmp(da, db, na) == 0;
    free(da);
    free(db);
    return same;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes the sidecar's hex into a malloc'd buffer. */
static unsigned char *from_hex(const char *hex, size_t *size) {
    size_t n = strlen(hex) / 2;
    unsigned char *out = malloc(n ? n : 1);
    for (size_t i = 0; out && i < n; i++)
        out[i] = (unsigned char)(hex_value(hex[2 * i]) * 16 + hex_value(hex[2 * i + 1]));
    *size = n;
    return out;
}

/* Element i of a stored tensor as a double, read the plain way (independent of the code under
 * test, which only points at bytes). */
static double element(const NamedTensor *t, size_t i) {
    const unsigned char *p = (const unsigned char *)t->data + i * dtype_size(t->dtype);
    switch (t->dtype) {
    case DTYPE_BOOL:
        return p[0] ? 1 : 0;
    case DTYPE_U8:
        return p[0];
    case DTYPE_I8:
        return (int8_t)p[0];
    case DTYPE_I16: {
        int16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    case DTYPE_I32: {
        int32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    case DTYPE_I64: {
        int64_t v;
        memcpy(&v, p, 8);
        return (double)v;
    }
    case DTYPE_F16: {
        uint16_t v;
        memcpy(&v, p, 2);
        return f16_to_f32(v);
    }
    case DTYPE_BF16: {
        uint16_t v;
        memcpy(&v, p, 2);
        return bf16_to_f32(v);
    }
    case DTYPE_F32: {
        float v;
        memcpy(&v, p, 4);
        return v;
    }
    case DTYPE_F64: {
        double v;
        memcpy(&v, p, 8);
        return v;
    }
    default:
        return -1e300;
    }
}

/* ------------------------------------------------------------------------------------------
 * Fixtures written by the Python library */

static void check_tensor(const char *file, const NamedTensor *t, const cJSON *want) {
    const char *dtype = cJSON_GetObjectItem(want, "dtype")->valuestring;
    CHECKF(strcmp(dtype_safetensors_name(t->dtype), dtype) == 0, "%s %s: dtype %s, want %s", file,
           t->name, dtype_safetensors_name(t->dtype), dtype);
    const cJSON *shape = cJSON_GetObjectItem(want, "shape");
    CHECKF(t->ndim == cJSON_GetArraySize(shape), "%s %s: ndim %d", file, t->name, t->ndim);
    for (int d = 0; d < t->ndim && d < cJSON_GetArraySize(shape); d++)
        CHECKF(t->shape[d] == (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble,
               "%s %s: shape[%d] = %lld", file, t->name, d, (long long)t->shape[d]);
    size_t raw_size = 0;
    unsigned char *raw = from_hex(cJSON_GetObjectItem(want, "hex")->valuestring, &raw_size);
    CHECKF(t->nbytes == raw_size, "%s %s: %zu bytes, want %zu", file, t->name, t->nbytes, raw_size);
    CHECKF(t->nbytes == raw_size && (raw_size == 0 || memcmp(t->data, raw, raw_size) == 0),
           "%s %s: bytes differ", file, t->name);
    free(raw);

    const cJSON *values = cJSON_GetObjectItem(want, "values");
    size_t numel = (size_t)tensor_numel(t);
    CHECKF((size_t)cJSON_GetArraySize(values) == numel, "%s %s: %zu elements, torch has %d", file,
           t->name, numel, cJSON_GetArraySize(values));
    size_t i = 0, mismatches = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, values) {
        if (i < numel && element(t, i) != v->valuedouble)
            mismatches++;
        i++;
    }
    CHECKF(mismatches == 0, "%s %s: %zu values differ from torch's", file, t->name, mismatches);

    /* The float widening used by the models agrees with torch too. */
    if (t->dtype == DTYPE_F16 || t->dtype == DTYPE_BF16 || t->dtype == DTYPE_F32) {
        float *f = malloc((numel ? numel : 1) * sizeof *f);
        Error err = {{0}};
        CHECK_OK(tensor_to_f32(t, f, &err), &err);
        i = 0;
        mismatches = 0;
        cJSON_ArrayForEach(v, values) {
            if (i < numel && f[i] != (float)v->valuedouble)
                mismatches++;
            i++;
        }
        CHECKF(mismatches == 0, "%s %s: tensor_to_f32 differs from torch", file, t->name);
        free(f);
    }
}

static void check_against_sidecar(const char *file, const TensorSet *set, const cJSON *want) {
    const cJSON *order = cJSON_GetObjectItem(want, "order");
    const cJSON *tensors = cJSON_GetObjectItem(want, "tensors");
    CHECKF(set->count == (size_t)cJSON_GetArraySize(order), "%s: %zu tensors, want %d", file,
           set->count, cJSON_GetArraySize(order));
    size_t i = 0;
    const cJSON *name;
    cJSON_ArrayForEach(name, order) {
        if (i < set->count)
            CHECKF(strcmp(set->items[i].name, name->valuestring) == 0,
                   "%s: entry %zu is '%s', header order has '%s'", file, i, set->items[i].name,
                   name->valuestring);
        const NamedTensor *t = tensor_set_find(set, name->valuestring);
        CHECKF(t != NULL, "%s: tensor '%s' missing", file, name->valuestring);
        if (t)
            check_tensor(file, t, cJSON_GetObjectItem(tensors, name->valuestring));
        i++;
    }
    const cJSON *meta = cJSON_GetObjectItem(want, "metadata");
    CHECKF(set->meta_count == (size_t)cJSON_GetArraySize(meta), "%s: %zu metadata entries", file,
           set->meta_count);
    const cJSON *m;
    cJSON_ArrayForEach(m, meta) {
        const char *got = tensor_set_get_meta(set, m->string);
        CHECKF(got && strcmp(got, m->valuestring) == 0, "%s: metadata '%s' = '%s'", file, m->string,
               got ? got : "(missing)");
    }
}

/* Every fixture: open it, compare with what torch read; write it back and compare bytes;
 * parse it from memory too. */
static void test_fixtures(const cJSON *files) {
    const cJSON *f;
    cJSON_ArrayForEach(f, files) {
        char rel[256], out[1024];
        snprintf(rel, sizeof rel, FIXTURE_DIR "%s", f->string);
        char path[1024];
        snprintf(path, sizeof path, "%s", test_fixture(rel));
        Error err = {{0}};
        TensorSet set;
        tensor_set_init(&set);
        CHECK_OK(safetensors_open(path, &set, &err), &err);
        check_against_sidecar(f->string, &set, f);

        snprintf(out, sizeof out, "%s/roundtrip-%s", tmp_dir, f->string);
        CHECK_OK(safetensors_write(out, &set, &err), &err);
        CHECKF(same_file_bytes(out, path), "%s: written bytes differ from the Python file",
               f->string);
        TensorSet again;
        tensor_set_init(&again);
        CHECK_OK(safetensors_open(out, &again, &err), &err);
        check_against_sidecar(out, &again, f);
        tensor_set_free(&again);
        tensor_set_free(&set);

        size_t size = 0;
        char *bytes = read_file(path, &size);
        tensor_set_init(&set);
        CHECK_OK(safetensors_parse(f->string, bytes, size, &set, &err), &err);
        check_against_sidecar(f->string, &set, f);
        tensor_set_free(&set);
        free(bytes);
    }
}

/* Builds a set from the sidecar alone (no reader involved), entries in reverse header order,
 * and checks the writer sorts and formats it into the Python library's exact bytes. */
static void test_write_from_scratch(const cJSON *files, const char *file) {
    const cJSON *want = cJSON_GetObjectItem(files, file);
    const cJSON *order = cJSON_GetObjectItem(want, "order");
    const cJSON *tensors = cJSON_GetObjectItem(want, "tensors");
    TensorSet set;
    tensor_set_init(&set);
    Error err = {{0}};
    for (int i = cJSON_GetArraySize(order) - 1; i >= 0; i--) {
        const char *name = cJSON_GetArrayItem(order, i)->valuestring;
        const cJSON *t = cJSON_GetObjectItem(tensors, name);
        DType dtype = DTYPE_F32;
        CHECK(dtype_from_safetensors_name(cJSON_GetObjectItem(t, "dtype")->valuestring, &dtype) ==
              0);
        const cJSON *shape = cJSON_GetObjectItem(t, "shape");
        int64_t dims[TENSOR_MAX_DIMS] = {0};
        int ndim = cJSON_GetArraySize(shape);
        for (int d = 0; d < ndim; d++)
            dims[d] = (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble;
        size_t size = 0;
        unsigned char *raw = from_hex(cJSON_GetObjectItem(t, "hex")->valuestring, &size);
        CHECK_OK(tensor_set_add_copy(&set, name, dtype, ndim, dims, raw, &err), &err);
        free(raw);
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(want, "metadata"))
        CHECK_OK(tensor_set_set_meta(&set, m->string, m->valuestring, &err), &err);
    char out[1024];
    snprintf(out, sizeof out, "%s/scratch-%s", tmp_dir, file);
    CHECK_OK(safetensors_write(out, &set, &err), &err);
    char rel[256];
    snprintf(rel, sizeof rel, FIXTURE_DIR "%s", file);
    CHECKF(same_file_bytes(out, test_fixture(rel)),
           "%s built from scratch: bytes differ from the Python file", file);
    tensor_set_free(&set);
}

/* Opening into a set that already holds tensors adds to it; a clash leaves a valid set. */
static void test_open_into_nonempty_set(void) {
    const char *path = test_fixture(FIXTURE_DIR "numpy_plain.safetensors");
    TensorSet set;
    tensor_set_init(&set);
    Error err = {{0}};
    float one = 1.0f;
    int64_t shape[1] = {1};
    CHECK_OK(tensor_set_add(&set, "other", DTYPE_F32, 1, shape, &one, &err), &err);
    CHECK_OK(tensor_set_set_meta(&set, "mine", "yes", &err), &err);
    CHECK_OK(safetensors_open(path, &set, &err), &err);
    CHECK(set.count == 4 && tensor_set_find(&set, "other") && tensor_set_find(&set, "ids"));
    CHECK(tensor_set_get_meta(&set, "mine") != NULL);
    const NamedTensor *ids = tensor_set_find(&set, "ids");
    CHECK(ids && ids->dtype == DTYPE_I64 && element(ids, 1) == -6);
    CHECK_FAILS_WITH(safetensors_open(path, &set, &err), &err, "tensor 'ids' appears twice");
    CHECK(strstr(err.message, "numpy_plain.safetensors") != NULL);
    tensor_set_free(&set);
}

/* ------------------------------------------------------------------------------------------
 * Damaged files, built here by changing a valid one */

typedef struct Buf {
    unsigned char *data;
    size_t size;
} Buf;

/* A file with `header` (padded with spaces to 8 bytes) and `data_len` data bytes. */
static Buf make_file(const char *header, size_t data_len) {
    size_t n = strlen(header), padded = (n + 7) / 8 * 8;
    Buf b = {malloc(8 + padded + data_len + 1), 8 + padded + data_len};
    for (int i = 0; i < 8; i++)
        b.data[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(b.data + 8, header, n);
    memset(b.data + 8 + n, ' ', padded - n);
    for (size_t i = 0; i < data_len; i++)
        b.data[8 + padded + i] = (unsigned char)(i * 7 + 1);
    return b;
}

static void set_length(Buf *b, uint64_t n) {
    for (int i = 0; i < 8; i++)
        b->data[i] = (unsigned char)(n >> (8 * i));
}

static const char *const BASE_HEADER =
    "{\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,"
    "8]},\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]}}";

static int case_counter;

/* Parses `b` from memory and from a file; both must fail with `place` and `reason` in the
 * message (and the file's path when opened), leaving a set that holds one earlier tensor. */
static void expect_bad(const char *label, Buf b, const char *place, const char *reason) {
    TensorSet set;
    tensor_set_init(&set);
    Error err = {{0}};
    float keep = 3.0f;
    CHECK_OK(tensor_set_add(&set, "kept", DTYPE_F32, 0, NULL, &keep, &err), &err);

    int rc = safetensors_parse("bad.safetensors", b.data, b.size, &set, &err);
    CHECKF(rc != 0, "%s: parse succeeded", label);
    CHECKF(rc == 0 || (strstr(err.message, place) && strstr(err.message, reason) &&
                       strstr(err.message, "bad.safetensors")),
           "%s: message '%s' lacks '%s' / '%s'", label, err.message, place, reason);
    CHECKF(!strchr(err.message, '\n'), "%s: message is not one line", label);

    char path[1024];
    snprintf(path, sizeof path, "%s/bad-%02d.safetensors", tmp_dir, ++case_counter);
    CHECK(test_write_file(path, b.data, b.size) == 0);
    rc = safetensors_open(path, &set, &err);
    CHECKF(rc != 0, "%s: open succeeded", label);
    CHECKF(rc == 0 || (strstr(err.message, place) && strstr(err.message, reason) &&
                       strstr(err.message, path)),
           "%s (file): message '%s' lacks '%s' / '%s' / path", label, err.message, place, reason);
    CHECKF(set.count == 1 && set.meta_count == 0, "%s: failed parse changed the set", label);
    tensor_set_free(&set);
    free(b.data);
}

static Buf with_header(const char *header) {
    return make_file(header, 16);
}

/* BASE_HEADER with the first `from` replaced by `to`. */
static Buf mutated(const char *from, const char *to) {
    char header[1024];
    const char *at = strstr(BASE_HEADER, from);
    if (!at) {
        CHECKF(false, "test bug: '%s' not in the base header", from);
        return make_file(BASE_HEADER, 16);
    }
    snprintf(header, sizeof header, "%.*s%s%s", (int)(at - BASE_HEADER), BASE_HEADER, to,
             at + strlen(from));
    return make_file(header, 16);
}

static void test_base_is_valid(void) {
    Buf b = make_file(BASE_HEADER, 16);
    TensorSet set;
    tensor_set_init(&set);
    Error err = {{0}};
    CHECK_OK(safetensors_parse("base", b.data, b.size, &set, &err), &err);
    CHECK(set.count == 2 && set.meta_count == 1);
    const NamedTensor *a = tensor_set_find(&set, "a");
    CHECK(a && a->nbytes == 8 && a->data == b.data + b.size - 16);
    tensor_set_free(&set);
    free(b.data);
}

static void test_truncation_and_length(void) {
    Buf full = make_file(BASE_HEADER, 16);
    size_t header_end = full.size - 16;

    Buf b = {malloc(1), 0};
    expect_bad("empty file", b, "bad", "empty file");

    b = (Buf){malloc(5), 5};
    memcpy(b.data, full.data, 5);
    expect_bad("truncated inside the length", b, "8-byte header length", "truncated");

    b = (Buf){malloc(header_end / 2), header_end / 2};
    memcpy(b.data, full.data, b.size);
    expect_bad("truncated inside the header", b, "byte offset 0", "runs past the end");

    b = (Buf){malloc(full.size - 4), full.size - 4};
    memcpy(b.data, full.data, b.size);
    expect_bad("truncated inside the data", b, "tensor 'b'", "out of range");

    b = make_file(BASE_HEADER, 16);
    set_length(&b, b.size);
    expect_bad("header length past EOF", b, "byte offset 0", "runs past the end");

    b = make_file(BASE_HEADER, 16);
    set_length(&b, (uint64_t)1 << 40);
    expect_bad("absurd header length", b, "byte offset 0", "100 MB");

    b = make_file(BASE_HEADER, 16);
    set_length(&b, UINT64_MAX);
    expect_bad("header length 2^64-1", b, "byte offset 0", "100 MB");

    b = make_file(BASE_HEADER, 16);
    set_length(&b, 0);
    expect_bad("header length 0", b, "byte offset 0", "is 0");

    b = make_file(BASE_HEADER, 16);
    set_length(&b, 16); /* cuts the JSON short, inside the file */
    expect_bad("header length too short", b, "byte offset", "not valid JSON");
    free(full.data);
}

static void test_bad_json(void) {
    expect_bad("invalid JSON", with_header("{\"a\": {\"dtype\""), "byte offset", "not valid JSON");
    expect_bad("JSON array", with_header("[1, 2]"), "header", "is an array, not an object");
    expect_bad("JSON string", with_header("\"x\""), "header", "not an object");
    expect_bad("trailing bytes", with_header("{} x"), "byte offset 11", "unexpected bytes");
    expect_bad("invalid UTF-8", with_header("{\"\xC3\x28\":1}"), "byte offset 10", "invalid UTF-8");
    expect_bad("overlong UTF-8", with_header("{\"\xC0\xAF\":1}"), "byte offset 10",
               "invalid UTF-8");
    expect_bad("UTF-8 surrogate", with_header("{\"\xED\xA0\x80\":1}"), "byte offset 10",
               "invalid UTF-8");
    expect_bad("byte order mark", with_header("\xEF\xBB\xBF{}"), "byte offset 8",
               "byte order mark");
    expect_bad("raw control character", with_header("{\"a\tb\":{}}"), "byte offset 11",
               "control character");
    expect_bad("escaped NUL", mutated("\"a\"", "\"a\\u0000b\""), "byte offset", "\\u0000");
    expect_bad("deep nesting", with_header("{\"a\":{\"b\":[[1]]}}"), "byte offset",
               "nested deeper");
    expect_bad("long shape", mutated("[2]", "[1,1,1,1,1,1,1,1,2]"), "byte offset",
               "array longer than 8");
    expect_bad("lone surrogate escape", mutated("\"a\"", "\"\\udc00\""), "byte offset",
               "not valid JSON");
}

static void test_bad_entries(void) {
    expect_bad("unknown dtype", mutated("F32", "F8_E4M3"), "tensor 'a'",
               "unsupported dtype 'F8_E4M3'");
    expect_bad("lowercase dtype", mutated("F32", "f32"), "tensor 'a'", "unsupported dtype");
    expect_bad("dtype not a string", mutated("\"F32\"", "4"), "tensor 'a'", "dtype is a number");
    expect_bad("shape fraction", mutated("[2]", "[2.5]"), "tensor 'a'",
               "shape[0] is not an integer");
    expect_bad("shape string", mutated("[2]", "[\"2\"]"), "tensor 'a'", "shape[0] is a string");
    expect_bad("shape negative", mutated("[2]", "[-2]"), "tensor 'a'", "shape[0] is negative");
    expect_bad("shape not an array", mutated("[2]", "2"), "tensor 'a'", "shape is a number");
    expect_bad("shape 2.0", mutated("[2]", "[2.0]"), "byte offset", "number '2.0'");
    expect_bad("shape 2e0", mutated("[2]", "[2e0]"), "byte offset", "number '2e0'");
    expect_bad("shape 02", mutated("[2]", "[02]"), "byte offset", "number '02'");
    expect_bad("shape huge", mutated("[2]", "[1e300]"), "tensor 'a'", "shape[0] is too large");
    expect_bad("shape overflow", mutated("[2]", "[4294967296,4294967296,4294967296]"), "tensor 'a'",
               "overflows");
    expect_bad("size mismatch", mutated("[2]", "[3]"), "tensor 'a'",
               "hold 8 bytes but F32 with shape [3] needs 12");
    expect_bad("scalar size mismatch", mutated("[2]", "[]"), "tensor 'a'", "needs 4");
    expect_bad("overlapping offsets", mutated("[8,16]", "[4,12]"), "'a'",
               "and 'b' ([4, 12]) overlap");
    expect_bad("same offsets", mutated("[0,8]", "[8,16]"), "'a'", "overlap");
    expect_bad("offsets out of range", mutated("[8,16]", "[16,24]"), "tensor 'b'", "out of range");
    expect_bad("offsets reversed", mutated("[8,16]", "[16,8]"), "tensor 'b'", "begin after end");
    expect_bad("offsets negative", mutated("[8,16]", "[-8,16]"), "tensor 'b'",
               "data_offsets begin is negative");
    expect_bad("offsets one number", mutated("[8,16]", "[8]"), "tensor 'b'",
               "not an array [begin, end]");
    expect_bad("offsets fraction", mutated("[8,16]", "[8,16.5]"), "tensor 'b'",
               "end is not an integer");
    expect_bad("entry not an object",
               mutated("{\"dtype\":\"I64\",\"shape\":[1],"
                       "\"data_offsets\":[8,16]}",
                       "[]"),
               "tensor 'b'", "entry is an array");
    expect_bad("missing key", mutated("\"shape\":[2],", ""), "tensor 'a'", "missing 'shape'");
    expect_bad("unexpected key", mutated("\"shape\":[2],", "\"shape\":[2],\"extra\":1,"),
               "tensor 'a'", "unexpected key 'extra'");
    expect_bad("duplicate key in entry", mutated("\"shape\":[2],", "\"shape\":[2],\"shape\":[2],"),
               "tensor 'a'", "key 'shape' appears twice");
    expect_bad("duplicate tensor", mutated("\"b\"", "\"a\""), "tensor 'a'", "appears twice");
    expect_bad("metadata number", mutated("\"v\"", "1"), "__metadata__ 'k'",
               "is a number, not a string");
    expect_bad("metadata null", mutated("\"v\"", "null"), "__metadata__ 'k'", "is null");
    expect_bad("metadata not an object", mutated("{\"k\":\"v\"}", "[\"k\"]"), "__metadata__",
               "is an array, not an object");
    expect_bad("metadata duplicate key", mutated("\"k\":\"v\"", "\"k\":\"v\",\"k\":\"w\""),
               "__metadata__ key 'k'", "appears twice");
    expect_bad("metadata twice", mutated("\"a\":", "\"__metadata__\":{},\"a\":"), "header",
               "'__metadata__' appears twice");
    expect_bad("bad dtype, newline name",
               mutated("\"a\":{\"dtype\":\"F32\"", "\"x\\ny\":{\"dtype\":\"Q\""), "tensor 'x?y'",
               "unsupported dtype 'Q'");
}

/* A long name is cut in the message, never inside a UTF-8 sequence. */
static void test_long_name_message(void) {
    char name[400] = "", header[1024];
    for (int i = 0; i < 150; i++)
        strcat(name, "\xC3\xA9"); /* e with acute accent */
    snprintf(header, sizeof header,
             "{\"%s\":{\"dtype\":\"F8_E5M2\",\"shape\":[],\"data_offsets\":[0,1]}}", name);
    Buf b = make_file(header, 1);
    TensorSet set;
    tensor_set_init(&set);
    Error err = {{0}};
    CHECK_FAILS_WITH(safetensors_parse("long", b.data, b.size, &set, &err), &err,
                     "\xC3\xA9...': unsupported dtype 'F8_E5M2'");
    tensor_set_free(&set);
    free(b.data);
}

static void test_not_a_file(void) {
    TensorSet set;
    tensor_set_init(&set);
    Error err = {{0}};
    CHECK_FAILS_WITH(safetensors_open(tmp_dir, &set, &err), &err, "is a directory");
    CHECK(strstr(err.message, tmp_dir) != NULL);
    char missing[1024];
    snprintf(missing, sizeof missing, "%s/missing.safetensors", tmp_dir);
    CHECK_FAILS_WITH(safetensors_open(missing, &set, &err), &err, "missing.safetensors");
    CHECK(set.count == 0);
    tensor_set_free(&set);
}

/* Zero-byte tensors sit anywhere; gaps between tensors and trailing bytes are tolerated (the
 * Python library refuses them, but they harm nothing and sdti never writes them). */
static void test_tolerated(void) {
    const char *header = "{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                         "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[8,10]}}";
    Buf b = make_file(header, 16);
    TensorSet set;
    tensor_set_init(&set);
    Error err = {{0}};
    CHECK_OK(safetensors_parse("gaps", b.data, b.size, &set, &err), &err);
    CHECK(set.count == 3 && strcmp(set.items[0].name, "z") == 0);
    const NamedTensor *z = tensor_set_find(&set, "z");
    CHECK(z && z->nbytes == 0 && z->ndim == 1 && z->shape[0] == 0);
    const NamedTensor *bt = tensor_set_find(&set, "b");
    CHECK(bt && bt->data == b.data + b.size - 16 + 8);
    tensor_set_free(&set);
    free(b.data);
}

static void test_write_errors(void) {
    TensorSet set;
    tensor_set_init(&set);
    Error err = {{0}};
    float v = 1.0f;
    int64_t shape[1] = {1};
    CHECK_OK(tensor_set_add(&set, "ok", DTYPE_F32, 1, shape, &v, &err), &err);
    char path[1024];
    snprintf(path, sizeof path, "%s/no-such-dir/out.safetensors", tmp_dir);
    CHECK_FAILS_WITH(safetensors_write(path, &set, &err), &err, "no-such-dir/out.safetensors");

    snprintf(path, sizeof path, "%s/bad-name.safetensors", tmp_dir);
    CHECK_OK(tensor_set_add(&set, "bad\xFFname", DTYPE_F32, 1, shape, &v, &err), &err);
    CHECK_FAILS_WITH(safetensors_write(path, &set, &err), &err, "not valid UTF-8");
    CHECK(!file_exists(path));
    tensor_set_free(&set);

    /* Metadata only: still a valid file the reader takes back. */
    tensor_set_init(&set);
    CHECK_OK(tensor_set_set_meta(&set, "only", "meta", &err), &err);
    snprintf(path, sizeof path, "%s/meta-only.safetensors", tmp_dir);
    CHECK_OK(safetensors_write(path, &set, &err), &err);
    tensor_set_free(&set);
    tensor_set_init(&set);
    CHECK_OK(safetensors_open(path, &set, &err), &err);
    CHECK(set.count == 0 && set.meta_count == 1 &&
          strcmp(tensor_set_get_meta(&set, "only"), "meta") == 0);
    tensor_set_free(&set);
}

int main(void) {
    tmp_dir = test_tmp_dir("test_safetensors");
    size_t size = 0;
    char *text = read_file(test_fixture(FIXTURE_DIR "expected.json"), &size);
    cJSON *expected = text ? cJSON_ParseWithLength(text, size) : NULL;
    free(text);
    const cJSON *files = cJSON_GetObjectItem(expected, "files");
    CHECK(cJSON_GetArraySize(files) >= 4);
    if (files) {
        test_fixtures(files);
        test_write_from_scratch(files, "mixed.safetensors");
        test_write_from_scratch(files, "numpy_plain.safetensors");
        test_write_from_scratch(files, "empty_set.safetensors");
    }
    cJSON_Delete(expected);
    test_open_into_nonempty_set();
    test_base_is_valid();
    test_truncation_and_length();
    test_bad_json();
    test_bad_entries();
    test_long_name_message();
    test_not_a_file();
    test_tolerated();
    test_write_errors();
    return test_finish();
}
