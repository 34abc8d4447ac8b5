// labels: unit
/* torch checkpoint reader and writer against files written by torch.save
 * (tools/reference/make_torch_fixtures.py): every tensor and value equals what torch read
 * back (expected.json), state-dict flattening gives the expected dotted names, our writer
 * gives torch.save's bytes for the same object and reads back equal, and damaged or
 * malicious files give an error naming the file and the reason. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "formats/pickle.h"
#include "formats/tensor_set.h"
#include "formats/torch_file.h"
#include "test_util.h"

#define FIXTURE_DIR "formats/torch/"

static const char *tmp_dir;

static char *read_file(const char *path, size_t *size) {
    char *data = NULL;
    Error err = {{0}};
    if (file_read_all(path, &data, size, &err) != 0) {
        CHECKF(false, "%s", err.message);
        return NULL;
    }
    return data;
}

static int hex_value(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static unsigned char *from_hex(const char *hex, size_t *size) {
    size_t n = strlen(hex) / 2;
    unsigned char *out = malloc(n ? n : 1);
    for (size_t i = 0; out && i < n; i++)
        out[i] = (unsigned char)(hex_value(hex[2 * i]) * 16 + hex_value(hex[2 * i + 1]));
    *size = n;
    return out;
}

static const char *fixture(const char *name) {
    static char path[1024];
    snprintf(path, sizeof path, "%s", test_fixture(FIXTURE_DIR));
    strncat(path, name, sizeof path - strlen(path) - 1);
    return path;
}

/* Follows dict keys (ints by their decimal text); an object is looked through to its state,
 * as torch.load gives back the module whose attributes the state holds. */
static const PickleValue *navigate(const PickleValue *v, const cJSON *path) {
    const cJSON *part;
    cJSON_ArrayForEach(part, path) {
        while (v && v->kind == PICKLE_OBJECT)
            v = v->state;
        if (!v || v->kind != PICKLE_DICT)
            return NULL;
        const PickleValue *next = NULL;
        for (size_t i = 0; i < v->count && !next; i++) {
            char key[64];
            const PickleValue *k = v->keys[i];
            if (k->kind == PICKLE_INT)
                snprintf(key, sizeof key, "%lld", (long long)k->integer);
            if ((k->kind == PICKLE_STR && strcmp(k->data, part->valuestring) == 0) ||
                (k->kind == PICKLE_INT && strcmp(key, part->valuestring) == 0))
                next = v->items[i];
        }
        v = next;
    }
    return v;
}

static void check_tensor_bytes(const char *file, const char *name, const NamedTensor *t,
                               const cJSON *want) {
    CHECKF(strcmp(dtype_safetensors_name(t->dtype),
                  cJSON_GetObjectItem(want, "dtype")->valuestring) == 0,
           "%s %s: dtype %s", file, name, dtype_safetensors_name(t->dtype));
    const cJSON *shape = cJSON_GetObjectItem(want, "shape");
    bool same_shape = t->ndim == cJSON_GetArraySize(shape);
    for (int d = 0; same_shape && d < t->ndim; d++)
        same_shape = t->shape[d] == (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble;
    CHECKF(same_shape, "%s %s: shape differs", file, name);
    size_t n = 0;
    unsigned char *raw = from_hex(cJSON_GetObjectItem(want, "hex")->valuestring, &n);
    CHECKF(raw && t->nbytes == n && (n == 0 || memcmp(t->data, raw, n) == 0),
           "%s %s: bytes differ from torch's", file, name);
    free(raw);
}

static void check_value(const char *file, const PickleValue *v, const cJSON *want) {
    char *path = cJSON_PrintUnformatted(cJSON_GetObjectItem(want, "path"));
    const char *kind = cJSON_GetObjectItem(want, "kind")->valuestring;
    const cJSON *value = cJSON_GetObjectItem(want, "value");
    bool ok = v != NULL;
    if (ok && strcmp(kind, "none") == 0)
        ok = v->kind == PICKLE_NONE;
    else if (ok && strcmp(kind, "bool") == 0)
        ok = v->kind == PICKLE_BOOL && v->boolean == cJSON_IsTrue(value);
    else if (ok && strcmp(kind, "int") == 0)
        ok = v->kind == PICKLE_INT && !v->big_integer && (double)v->integer == value->valuedouble;
    else if (ok && strcmp(kind, "float") == 0)
        ok = v->kind == PICKLE_FLOAT && v->real == value->valuedouble;
    else if (ok && strcmp(kind, "str") == 0)
        ok = v->kind == PICKLE_STR && strcmp(v->data, value->valuestring) == 0;
    CHECKF(ok, "%s %s: value differs from torch's (%s)", file, path, kind);
    free(path);
}

/* torch_file_load: the tree holds every value and tensor torch read back. */
static void check_file(const char *file, const cJSON *want) {
    TensorSet set;
    tensor_set_init(&set);
    PickleDoc doc;
    Error err = {{0}};
    if (torch_file_load(fixture(file), &set, &doc, &err) != 0) {
        CHECKF(false, "%s", err.message);
        return;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(want, "tensors")) {
        const PickleValue *v = navigate(doc.root, cJSON_GetObjectItem(e, "path"));
        char *path = cJSON_PrintUnformatted(cJSON_GetObjectItem(e, "path"));
        const NamedTensor *t =
            v && v->kind == PICKLE_TENSOR ? tensor_set_find(&set, v->tensor.name) : NULL;
        CHECKF(t != NULL, "%s %s: no tensor there", file, path);
        if (t)
            check_tensor_bytes(file, path, t, e);
        free(path);
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(want, "values")) {
        check_value(file, navigate(doc.root, cJSON_GetObjectItem(e, "path")), e);
    }
    pickle_doc_free(&doc);
    tensor_set_free(&set);
}

/* torch_file_load_state_dict: exactly the tensors with a flat name, under that name. */
static void check_state_dict(const char *file, const cJSON *want) {
    TensorSet set;
    tensor_set_init(&set);
    Error err = {{0}};
    if (torch_file_load_state_dict(fixture(file), &set, &err) != 0) {
        CHECKF(false, "%s", err.message);
        return;
    }
    size_t expected = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(want, "tensors")) {
        const cJSON *flat = cJSON_GetObjectItem(e, "flat");
        if (!cJSON_IsString(flat))
            continue;
        expected++;
        const NamedTensor *t = tensor_set_find(&set, flat->valuestring);
        CHECKF(t != NULL, "%s: state dict lacks '%s'", file, flat->valuestring);
        if (t)
            check_tensor_bytes(file, flat->valuestring, t, e);
    }
    CHECKF(set.count == expected, "%s: state dict has %zu tensors, expected %zu", file, set.count,
           expected);
    tensor_set_free(&set);
}

/* Our writer on a tree read from a torch.save file gives that file's bytes back. */
static void check_writer_bytes(const char *file) {
    TensorSet set;
    tensor_set_init(&set);
    PickleDoc doc;
    Error err = {{0}};
    if (torch_file_load(fixture(file), &set, &doc, &err) != 0) {
        CHECKF(false, "%s", err.message);
        return;
    }
    char out[1024];
    snprintf(out, sizeof out, "%s/%s", tmp_dir, file);
    CHECK_OK(torch_file_save(out, doc.root, &set, &err), &err);
    size_t na = 0, nb = 0;
    char *a = read_file(fixture(file), &na), *b = read_file(out, &nb);
    CHECKF(a && b && na == nb && memcmp(a, b, na) == 0,
           "%s: our writer's bytes differ from torch.save's (%zu vs %zu bytes)", file, nb, na);
    free(a);
    free(b);
    pickle_doc_free(&doc);
    tensor_set_free(&set);
}

/* Read -> write -> read gives the same tree of tensors (views become contiguous copies). */
static void check_round_trip(const char *file, const cJSON *want) {
    TensorSet set;
    tensor_set_init(&set);
    PickleDoc doc;
    Error err = {{0}};
    if (torch_file_load(fixture(file), &set, &doc, &err) != 0) {
        CHECKF(false, "%s", err.message);
        return;
    }
    char out[1024];
    snprintf(out, sizeof out, "%s/roundtrip_%s", tmp_dir, file);
    if (torch_file_save(out, doc.root, &set, &err) == 0) {
        TensorSet back;
        tensor_set_init(&back);
        PickleDoc doc2;
        if (torch_file_load(out, &back, &doc2, &err) == 0) {
            const cJSON *e;
            cJSON_ArrayForEach(e, cJSON_GetObjectItem(want, "tensors")) {
                const PickleValue *v = navigate(doc2.root, cJSON_GetObjectItem(e, "path"));
                const NamedTensor *t =
                    v && v->kind == PICKLE_TENSOR ? tensor_set_find(&back, v->tensor.name) : NULL;
                CHECKF(t != NULL, "round trip of %s: a tensor went missing", file);
                if (t)
                    check_tensor_bytes(out, v->tensor.name, t, e);
            }
            cJSON_ArrayForEach(e, cJSON_GetObjectItem(want, "values")) {
                check_value(out, navigate(doc2.root, cJSON_GetObjectItem(e, "path")), e);
            }
            pickle_doc_free(&doc2);
        } else {
            CHECKF(false, "%s", err.message);
        }
        tensor_set_free(&back);
    } else {
        CHECKF(false, "%s", err.message);
    }
    pickle_doc_free(&doc);
    tensor_set_free(&set);
}

static void check_fails(const char *path, const char *needle) {
    TensorSet set;
    tensor_set_init(&set);
    PickleDoc doc;
    Error err = {{0}};
    CHECK_FAILS_WITH(torch_file_load(path, &set, &doc, &err), &err, needle);
    CHECKF(strstr(err.message, path_basename(path)) != NULL, "message lacks the file name: %s",
           err.message);
    CHECK(set.count == 0 && doc.root == NULL);
    tensor_set_free(&set);
}

static void check_bad_inputs(void) {
    check_fails(fixture("malicious.pt"), "data.pkl byte 2: refusing to load global 'os.system'");
    check_fails(fixture("missing_record.pt"), "no record 'missing_record/data/3'");
    check_fails(fixture("storage_too_small.pt"), "storage '0' holds 60 bytes but its tensors "
                                                 "need 64");
    /* A zip cut in half, and a legacy file cut inside its storages. */
    static const struct {
        const char *file, *needle;
        double keep;
    } cuts[] = {{"plain.pt", "not a readable zip archive", 0.5},
                {"plain_legacy.pt", "truncated", 0.9},
                {"plain_legacy.pt", "truncated", 0.3}};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        size_t n = 0;
        char *data = read_file(fixture(cuts[i].file), &n);
        char path[1024];
        snprintf(path, sizeof path, "%s/cut%zu_%s", tmp_dir, i, cuts[i].file);
        if (data && test_write_file(path, data, (size_t)((double)n * cuts[i].keep)) == 0)
            check_fails(path, cuts[i].needle);
        free(data);
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/not_torch.ckpt", tmp_dir);
    test_write_file(path, "hello, world\n", 13);
    check_fails(path, "not a torch checkpoint");
    /* A plain pickle (no torch magic number) is not read as a legacy checkpoint. */
    check_fails(fixture("proto2.pkl"), "not a torch checkpoint");

    TensorSet set;
    tensor_set_init(&set);
    Error err = {{0}};
    CHECK_FAILS_WITH(torch_file_load_state_dict(fixture("malicious.pt"), &set, &err), &err,
                     "this file may be malicious");
    tensor_set_free(&set);
}

int main(void) {
    tmp_dir = test_tmp_dir("test_torch_file");
    size_t size = 0;
    char *text = read_file(fixture("expected.json"), &size);
    cJSON *json = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!json) {
        CHECKF(false, "expected.json missing or unreadable");
        return test_finish();
    }
    const cJSON *file;
    cJSON_ArrayForEach(file, cJSON_GetObjectItem(json, "files")) {
        check_file(file->string, file);
        check_state_dict(file->string, file);
        /* Checkpoints holding inert objects (Lightning callbacks, ParameterDict) are read-only:
         * the writer only writes plain containers and tensors. */
        if (!strstr(file->string, "nested") && !strstr(file->string, "old"))
            check_round_trip(file->string, file);
    }
    /* files whose every value our writer can write, stored as torch.save would */
    check_writer_bytes("kohya_emb.pt");
    check_writer_bytes("a1111_emb.pt");
    check_writer_bytes("diffusers_emb.bin");
    check_bad_inputs();
    cJSON_Delete(json);
    return test_finish();
}
