// labels: unit
/* The restricted unpickler and the pickle writer: Python's own pickles of every protocol
 * (tools/reference/make_torch_fixtures.py) read as Python wrote them, a built tree survives
 * write -> read, and damaged or hostile pickles give one-line errors with the byte offset. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "formats/pickle.h"
#include "test_util.h"

static const PickleValue *navigate(const PickleValue *v, const cJSON *path) {
    const cJSON *part;
    cJSON_ArrayForEach(part, path) {
        if (!v || v->kind != PICKLE_DICT)
            return NULL;
        const PickleValue *next = NULL;
        for (size_t i = 0; i < v->count && !next; i++) {
            char key[64] = "";
            if (v->keys[i]->kind == PICKLE_INT)
                snprintf(key, sizeof key, "%lld", (long long)v->keys[i]->integer);
            if (pickle_is_str(v->keys[i], part->valuestring) || strcmp(key, part->valuestring) == 0)
                next = v->items[i];
        }
        v = next;
    }
    return v;
}

static void check_protocols(void) {
    char *text = NULL;
    size_t size = 0;
    Error err = {{0}};
    if (file_read_all(test_fixture("formats/torch/expected.json"), &text, &size, &err) != 0) {
        CHECKF(false, "%s", err.message);
        return;
    }
    cJSON *json = cJSON_Parse(text);
    free(text);
    const cJSON *values = cJSON_GetObjectItem(json, "pickle_values");
    CHECK(cJSON_GetArraySize(values) > 5);
    for (int proto = 0; proto <= 5; proto++) {
        char rel[64];
        snprintf(rel, sizeof rel, "formats/torch/proto%d.pkl", proto);
        char *data = NULL;
        if (file_read_all(test_fixture(rel), &data, &size, &err) != 0) {
            CHECKF(false, "%s", err.message);
            continue;
        }
        PickleDoc doc;
        pickle_doc_init(&doc);
        size_t used = 0;
        if (pickle_parse(rel, data, size, &doc, &used, &err) != 0) {
            CHECKF(false, "%s", err.message);
        } else {
            CHECKF(used == size, "protocol %d: read %zu of %zu bytes", proto, used, size);
            const cJSON *e;
            cJSON_ArrayForEach(e, values) {
                const PickleValue *v = navigate(doc.root, cJSON_GetObjectItem(e, "path"));
                const char *kind = cJSON_GetObjectItem(e, "kind")->valuestring;
                const cJSON *want = cJSON_GetObjectItem(e, "value");
                bool ok = v != NULL;
                if (ok && strcmp(kind, "str") == 0)
                    ok = v->kind == PICKLE_STR && strcmp(v->data, want->valuestring) == 0;
                else if (ok && strcmp(kind, "int") == 0)
                    ok = v->kind == PICKLE_INT && (double)v->integer == want->valuedouble;
                else if (ok && strcmp(kind, "float") == 0)
                    ok = v->kind == PICKLE_FLOAT && v->real == want->valuedouble;
                else if (ok && strcmp(kind, "bool") == 0)
                    ok = v->kind == PICKLE_BOOL && v->boolean == cJSON_IsTrue(want);
                else if (ok && strcmp(kind, "none") == 0)
                    ok = v->kind == PICKLE_NONE;
                char *path = cJSON_PrintUnformatted(cJSON_GetObjectItem(e, "path"));
                CHECKF(ok, "protocol %d: %s differs from what Python pickled", proto, path);
                free(path);
            }
            const PickleValue *od = pickle_dict_get(doc.root, "od");
            CHECKF(od && od->kind == PICKLE_DICT && od->ordered && od->count == 2 &&
                       pickle_is_str(od->keys[0], "z"),
                   "protocol %d: OrderedDict lost its order or kind", proto);
        }
        pickle_doc_free(&doc);
        free(data);
    }
    cJSON_Delete(json);
}

static void check_fails(const char *label, const void *data, size_t size, const char *needle) {
    PickleDoc doc;
    pickle_doc_init(&doc);
    Error err = {{0}};
    int rc = pickle_parse("test.pkl", data, size, &doc, NULL, &err);
    CHECKF(rc != 0 && strstr(err.message, needle) && !strchr(err.message, '\n'),
           "%s: expected an error containing '%s', got rc %d '%s'", label, needle, rc, err.message);
    pickle_doc_free(&doc);
}

static void check_bad_pickles(void) {
    static const unsigned char truncated[] = {0x80, 0x02, '}', 'q', 0x00, 'X', 5, 0, 0, 0, 'a'};
    check_fails("truncated", truncated, sizeof truncated,
                "test.pkl byte 5: BINUNICODE of 5 bytes runs past the end");
    static const unsigned char no_stop[] = {0x80, 0x02, 'N'};
    check_fails("no STOP", no_stop, sizeof no_stop, "byte 3: truncated: the pickle ends");
    static const unsigned char unknown[] = {0x80, 0x02, 0xff, '.'};
    check_fails("unknown opcode", unknown, sizeof unknown, "byte 2: unknown opcode 0xff");
    static const unsigned char underflow[] = {0x80, 0x02, 'N', 's', '.'};
    check_fails("underflow", underflow, sizeof underflow, "byte 3: SETITEM: stack underflow");
    static const unsigned char empty_stop[] = {'.'};
    check_fails("STOP on empty stack", empty_stop, 1, "byte 0: STOP: stack underflow");
    static const unsigned char memo[] = {0x80, 0x02, 'h', 7, '.'};
    check_fails("memo", memo, sizeof memo, "byte 2: memo slot 7 was never stored");
    static const unsigned char evil[] = "\x80\x02"
                                        "cos\nsystem\nX\x02\x00\x00\x00lsR.";
    check_fails("os.system", evil, sizeof evil - 1,
                "byte 2: refusing to load global 'os.system': not part of a torch state dict "
                "(this file may be malicious)");
    static const unsigned char eval[] = "\x80\x04\x8c\x08"
                                        "builtins"
                                        "\x8c\x04"
                                        "eval"
                                        "\x93.";
    check_fails("builtins.eval", eval, sizeof eval - 1, "global 'builtins.eval'");
    /* BINBYTES8 with a length of 2^60: an error, never a malloc */
    static const unsigned char huge[] = {0x80, 0x04, 0x8e, 0, 0, 0, 0, 0, 0, 0, 0x10, '.'};
    check_fails("huge length", huge, sizeof huge, "BINBYTES8 of 1152921504606846976 bytes");
    /* 100 nested lists */
    unsigned char deep[2 + 100 * 2 + 1];
    size_t n = 0;
    deep[n++] = 0x80;
    deep[n++] = 0x02;
    for (int i = 0; i < 100; i++)
        deep[n++] = ']';
    for (int i = 0; i < 99; i++)
        deep[n++] = 'a';
    deep[n++] = '.';
    check_fails("deep nesting", deep, n, "values nest deeper than 64 levels");
    /* a list that contains itself */
    static const unsigned char cycle[] = {0x80, 0x02, ']', 'q', 0, 'h', 0, 'a', '.'};
    check_fails("cycle", cycle, sizeof cycle, "a cycle");
    static const unsigned char bad_key[] = {0x80, 0x02, '}', ']', 'N', 's', '.'};
    check_fails("unhashable key", bad_key, sizeof bad_key, "a list cannot be a dict key");
    /* a tensor reaching past its storage: 4 elements, offset 2, size 3 */
    static const unsigned char past[] =
        "\x80\x02"
        "ctorch._utils\n_rebuild_tensor_v2\n("
        "(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00"
        "0X\x03\x00\x00\x00"
        "cpuK\x04tQ"
        "K\x02K\x03\x85K\x01\x85\x89"
        "ccollections\nOrderedDict\n)RtR.";
    check_fails("storage too small", past, sizeof past - 1,
                "tensor reaches element 4 of storage '0', which holds 4 elements");
}

/* A tree with every writable kind: write, read back, compare. */
static void check_writer_round_trip(void) {
    TensorSet set;
    tensor_set_init(&set);
    Error err = {{0}};
    const float vec[6] = {1, -2, 3.5f, 0, 1e-3f, 7};
    int64_t shape[2] = {2, 3};
    CHECK_OK(tensor_set_add(&set, "vec", DTYPE_F32, 2, shape, vec, &err), &err);
    PickleDoc doc;
    pickle_doc_init(&doc);
    PickleValue *root = pickle_new(&doc, PICKLE_DICT);
    PickleValue *tokens = pickle_new(&doc, PICKLE_DICT), *params = pickle_new(&doc, PICKLE_DICT);
    PickleValue *list = pickle_new(&doc, PICKLE_LIST), *tuple = pickle_new(&doc, PICKLE_TUPLE);
    pickle_dict_set(&doc, tokens, "*", pickle_new_int(&doc, 265));
    pickle_dict_set(&doc, params, "*", pickle_new_tensor(&doc, "vec", true, true));
    pickle_dict_set(&doc, root, "string_to_token", tokens);
    pickle_dict_set(&doc, root, "string_to_param", params);
    pickle_dict_set(&doc, root, "again", pickle_new_tensor(&doc, "vec", false, false));
    pickle_dict_set(&doc, root, "name", pickle_new_str(&doc, "emb"));
    pickle_dict_set(&doc, root, "big", pickle_new_int(&doc, -(INT64_C(1) << 40)));
    pickle_dict_set(&doc, root, "ratio", pickle_new_float(&doc, 0.1));
    pickle_dict_set(&doc, root, "none", pickle_new(&doc, PICKLE_NONE));
    pickle_dict_set(&doc, root, "flag", pickle_new_bool(&doc, true));
    for (int i = 0; i < 5; i++)
        pickle_append(tuple, pickle_new_int(&doc, 70000 * i - 3));
    pickle_append(list, tuple);
    pickle_dict_set(&doc, root, "list", list);

    unsigned char *bytes = NULL;
    size_t size = 0, storage_count = 0;
    PickleWrittenStorage *storages = NULL;
    CHECK_OK(pickle_write(root, &set, &bytes, &size, &storages, &storage_count, &err), &err);
    CHECK(storage_count == 1 && storages && storages[0].tensor == tensor_set_find(&set, "vec"));
    PickleDoc back;
    pickle_doc_init(&back);
    if (bytes && pickle_parse("written", bytes, size, &back, NULL, &err) == 0) {
        const PickleValue *r = back.root;
        const PickleValue *p = pickle_dict_get(pickle_dict_get(r, "string_to_param"), "*");
        const PickleValue *again = pickle_dict_get(r, "again");
        CHECK(p && p->kind == PICKLE_TENSOR && p->tensor.is_parameter && p->tensor.requires_grad);
        CHECK(p && p->tensor.ndim == 2 && p->tensor.shape[1] == 3 && p->tensor.stride[0] == 3 &&
              p->tensor.storage->storage.dtype == DTYPE_F32 &&
              p->tensor.storage->storage.numel == 6);
        /* the same tensor twice is one value, as Python's memo makes it */
        CHECK(again && again->kind == PICKLE_TENSOR && again->tensor.is_parameter);
        const PickleValue *tok = pickle_dict_get(pickle_dict_get(r, "string_to_token"), "*");
        CHECK(tok && tok->kind == PICKLE_INT && tok->integer == 265);
        CHECK(pickle_is_str(pickle_dict_get(r, "name"), "emb"));
        const PickleValue *big = pickle_dict_get(r, "big");
        CHECK(big && big->integer == -(INT64_C(1) << 40));
        const PickleValue *ratio = pickle_dict_get(r, "ratio");
        CHECK(ratio && ratio->kind == PICKLE_FLOAT && ratio->real == 0.1);
        CHECK(pickle_dict_get(r, "none") && pickle_dict_get(r, "none")->kind == PICKLE_NONE);
        CHECK(pickle_dict_get(r, "flag") && pickle_dict_get(r, "flag")->boolean);
        const PickleValue *l = pickle_dict_get(r, "list");
        CHECK(l && l->kind == PICKLE_LIST && l->count == 1 && l->items[0]->count == 5 &&
              l->items[0]->items[4]->integer == 70000 * 4 - 3);
    } else {
        CHECKF(false, "%s", err.message);
    }
    /* a tensor missing from the set is an error, not a crash */
    PickleValue *stray = pickle_new_tensor(&doc, "nope", false, false);
    unsigned char *none_bytes = NULL;
    CHECK_FAILS_WITH(pickle_write(stray, &set, &none_bytes, &size, &storages, &storage_count, &err),
                     &err, "tensor 'nope' is not in the tensor set");
    free(bytes);
    free(storages);
    pickle_doc_free(&back);
    pickle_doc_free(&doc);
    tensor_set_free(&set);
}

int main(void) {
    check_protocols();
    check_bad_pickles();
    check_writer_round_trip();
    return test_finish();
}
