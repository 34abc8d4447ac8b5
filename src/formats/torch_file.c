/* Reading torch checkpoint files (zip and legacy layouts); see torch_file.h. */
#define _POSIX_C_SOURCE 200809L
#include "formats/torch_file.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "base/file_util.h"

/* One storage's bytes, read once however many tensors view it. */
typedef struct LoadedStorage {
    const char *key;
    DType dtype;
    unsigned char *bytes; /* owned by the TensorSet once read */
    size_t nbytes;
    uint64_t needed; /* bytes the pickle's references require */
} LoadedStorage;

typedef struct Loader {
    const char *name;
    const unsigned char *data;
    size_t size;
    PickleDoc *doc;
    TensorSet *set;
    LoadedStorage *storages;
    size_t storage_count;
    Error *err;
} Loader;

static int fail(Loader *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(Loader *l, const char *fmt, ...) {
    char msg[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return error_set(l->err, "%s: %s", l->name, msg);
}

/* Collects the distinct storage keys the pickle refers to (from every storage value, so no
 * tree walk is needed) with the bytes each reference needs. */
static int collect_storages(Loader *l) {
    for (size_t i = 0; i < l->doc->value_count; i++) {
        const PickleValue *v = l->doc->values[i];
        if (v->kind != PICKLE_STORAGE)
            continue;
        const PickleStorage *s = &v->storage;
        uint64_t need;
        if (__builtin_mul_overflow((uint64_t)s->view_offset + (uint64_t)s->numel,
                                   (uint64_t)dtype_size(s->dtype), &need))
            return fail(l, "storage '%s' claims an impossible size", s->key);
        LoadedStorage *hit = NULL;
        for (size_t k = 0; k < l->storage_count && !hit; k++)
            if (strcmp(l->storages[k].key, s->key) == 0)
                hit = &l->storages[k];
        if (hit) {
            if (hit->dtype != s->dtype)
                return fail(l, "storage '%s' is used as both %s and %s", s->key,
                            dtype_display_name(hit->dtype), dtype_display_name(s->dtype));
            if (need > hit->needed)
                hit->needed = need;
            continue;
        }
        LoadedStorage *grown = realloc(l->storages, (l->storage_count + 1) * sizeof *l->storages);
        if (!grown)
            return fail(l, "out of memory");
        l->storages = grown;
        l->storages[l->storage_count++] = (LoadedStorage){s->key, s->dtype, NULL, 0, need};
    }
    return 0;
}

static LoadedStorage *find_storage(Loader *l, const char *key) {
    for (size_t k = 0; k < l->storage_count; k++)
        if (strcmp(l->storages[k].key, key) == 0)
            return &l->storages[k];
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Tensors: named by their path, copied out of their storage when not contiguous. */

typedef struct PathBuf {
    char text[1024];
    size_t len;
} PathBuf;

static bool is_contiguous(const PickleTensor *t) {
    int64_t expected = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != expected)
            return false;
        expected *= t->shape[d];
    }
    return true;
}

static void gather(const unsigned char *base, const PickleTensor *t, size_t elem,
                   unsigned char *out) {
    int64_t index[TENSOR_MAX_DIMS] = {0};
    int64_t numel = 1;
    for (int d = 0; d < t->ndim; d++)
        numel *= t->shape[d];
    for (int64_t n = 0; n < numel; n++) {
        int64_t off = 0;
        for (int d = 0; d < t->ndim; d++)
            off += index[d] * t->stride[d];
        memcpy(out + (size_t)n * elem, base + (size_t)off * elem, elem);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++index[d] < t->shape[d])
                break;
            index[d] = 0;
        }
    }
}

static int add_tensor(Loader *l, PickleValue *v, const char *path) {
    PickleTensor *t = &v->tensor;
    const PickleStorage *s = &t->storage->storage;
    LoadedStorage *ls = find_storage(l, s->key);
    if (!ls || (!ls->bytes && ls->needed))
        return fail(l, "tensor '%s': storage '%s' was not read", path, s->key);
    char name[1100];
    snprintf(name, sizeof name, "%s", path);
    for (int n = 2; tensor_set_find(l->set, name); n++)
        snprintf(name, sizeof name, "%s#%d", path, n);
    size_t elem = dtype_size(s->dtype);
    int64_t numel = 1;
    for (int d = 0; d < t->ndim; d++)
        numel *= t->shape[d];
    const unsigned char *base =
        numel ? ls->bytes + (size_t)(s->view_offset + t->storage_offset) * elem : NULL;
    int rc;
    if (numel == 0) {
        rc = tensor_set_add(l->set, name, s->dtype, t->ndim, t->shape, NULL, l->err);
    } else if (is_contiguous(t)) {
        rc = tensor_set_add(l->set, name, s->dtype, t->ndim, t->shape, base, l->err);
    } else {
        /* A strided view (stride 0 broadcasts) may name more elements than its storage holds;
         * bound the copy so a tiny file cannot ask for terabytes. */
        uint64_t bytes;
        if (__builtin_mul_overflow((uint64_t)numel, (uint64_t)elem, &bytes) ||
            bytes > (uint64_t)l->size * 64 + ((uint64_t)64 << 20))
            return fail(l,
                        "tensor '%s': a strided view of %lld elements is implausibly large "
                        "for this file",
                        path, (long long)numel);
        unsigned char *copy = tensor_set_alloc(l->set, (size_t)bytes, l->err);
        if (!copy)
            return -1;
        gather(base, t, elem, copy);
        rc = tensor_set_add(l->set, name, s->dtype, t->ndim, t->shape, copy, l->err);
    }
    if (rc != 0)
        return error_prefix(l->err, "%s: ", l->name);
    t->name = strdup(name);
    return t->name ? 0 : fail(l, "out of memory");
}

static void path_push(PathBuf *p, size_t *saved, const char *part) {
    *saved = p->len;
    int n = snprintf(p->text + p->len, sizeof p->text - p->len, "%s%s", p->len ? "." : "", part);
    if (n > 0)
        p->len += (size_t)n < sizeof p->text - p->len ? (size_t)n : sizeof p->text - p->len - 1;
}

/* Other key kinds (tuples, floats) get their position, so their names stay distinct. */
static void key_text(const PickleValue *key, size_t index, char *buf, size_t size) {
    if (key->kind == PICKLE_STR)
        snprintf(buf, size, "%s", key->data);
    else if (key->kind == PICKLE_INT && !key->big_integer)
        snprintf(buf, size, "%lld", (long long)key->integer);
    else
        snprintf(buf, size, "<%s key %zu>", pickle_kind_name(key), index);
}

/* pickle_parse bounded the depth and the expanded size, so this walk terminates quickly. */
static int name_tensors(Loader *l, PickleValue *v, PathBuf *path) {
    size_t saved;
    char part[256];
    switch (v->kind) {
    case PICKLE_TENSOR:
        return v->tensor.name ? 0 : add_tensor(l, v, path->len ? path->text : "tensor");
    case PICKLE_DICT:
        for (size_t i = 0; i < v->count; i++) {
            key_text(v->keys[i], i, part, sizeof part);
            path_push(path, &saved, part);
            int rc = name_tensors(l, v->items[i], path);
            path->len = saved;
            path->text[saved] = '\0';
            if (rc != 0)
                return -1;
        }
        return 0;
    case PICKLE_LIST:
    case PICKLE_TUPLE:
        for (size_t i = 0; i < v->count; i++) {
            snprintf(part, sizeof part, "%zu", i);
            path_push(path, &saved, part);
            int rc = name_tensors(l, v->items[i], path);
            path->len = saved;
            path->text[saved] = '\0';
            if (rc != 0)
                return -1;
        }
        return 0;
    case PICKLE_OBJECT:
        if (v->args && name_tensors(l, v->args, path) != 0)
            return -1;
        return v->state ? name_tensors(l, v->state, path) : 0;
    default:
        return 0;
    }
}

/* ------------------------------------------------------------------------------------------
 * Storage bytes */

static int check_storage_size(Loader *l, const LoadedStorage *ls, size_t nbytes) {
    if (nbytes < ls->needed)
        return fail(l,
                    "storage '%s' holds %zu bytes but its tensors need %llu (truncated or "
                    "corrupt file)",
                    ls->key, nbytes, (unsigned long long)ls->needed);
    return 0;
}

/* bytes already belong to l->set (read_zip_record into_set). */
static int adopt_bytes(Loader *l, LoadedStorage *ls, unsigned char *bytes, size_t nbytes) {
    if (check_storage_size(l, ls, nbytes) != 0)
        return -1;
    ls->nbytes = nbytes;
    ls->bytes = nbytes ? bytes : NULL;
    return 0;
}

static int store_bytes(Loader *l, LoadedStorage *ls, const void *src, size_t nbytes) {
    if (check_storage_size(l, ls, nbytes) != 0)
        return -1;
    ls->nbytes = nbytes;
    if (nbytes == 0)
        return 0;
    ls->bytes = tensor_set_alloc(l->set, nbytes, l->err);
    if (!ls->bytes)
        return error_prefix(l->err, "%s: ", l->name);
    memcpy(ls->bytes, src, nbytes);
    return 0;
}

/* Reads a whole record into a malloc'd buffer, or, with into_set, into memory owned by l->set
 * (storages: read once straight into their final place, never copied: on a 4 GB checkpoint a
 * second buffer doubles the page-fault and page-clearing work, which dominated load time). */
static int read_zip_record(Loader *l, zip_t *zip, const char *name, unsigned char **out,
                           size_t *size, bool required, bool into_set) {
    zip_stat_t st;
    zip_stat_init(&st);
    zip_int64_t index = zip_name_locate(zip, name, 0);
    if (index < 0) {
        if (!required)
            return 1;
        return fail(l, "the archive has no record '%s' (truncated or corrupt file)", name);
    }
    if (zip_stat_index(zip, (zip_uint64_t)index, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE))
        return fail(l, "record '%s': %s", name, zip_strerror(zip));
    if (st.size > l->size * (uint64_t)1032 + 64) /* deflate expands at most ~1032x */
        return fail(l, "record '%s' claims %llu bytes in a %zu-byte file", name,
                    (unsigned long long)st.size, l->size);
    unsigned char *buf = into_set ? tensor_set_alloc(l->set, (size_t)st.size, l->err)
                                  : malloc(st.size ? (size_t)st.size : 1);
    if (!buf)
        return fail(l, "out of memory reading record '%s' (%llu bytes)", name,
                    (unsigned long long)st.size);
    zip_file_t *f = zip_fopen_index(zip, (zip_uint64_t)index, 0);
    zip_int64_t got = f ? zip_fread(f, buf, st.size) : -1;
    const char *why = f ? zip_file_strerror(f) : zip_strerror(zip);
    char reason[200];
    snprintf(reason, sizeof reason, "%s", why);
    if (f)
        zip_fclose(f);
    if (got < 0 || (zip_uint64_t)got != st.size) {
        if (!into_set)
            free(buf);
        return fail(l, "record '%s' cannot be read: %s", name, reason);
    }
    *out = buf;
    *size = (size_t)st.size;
    return 0;
}

/* The archive folder ("archive", "model", the saved file's stem) is whatever directory holds
 * data.pkl. */
static int find_prefix(Loader *l, zip_t *zip, char *prefix, size_t size) {
    zip_int64_t n = zip_get_num_entries(zip, 0);
    for (zip_int64_t i = 0; i < n; i++) {
        const char *name = zip_get_name(zip, (zip_uint64_t)i, 0);
        if (!name)
            continue;
        const char *slash = strchr(name, '/');
        if (slash && strcmp(slash, "/data.pkl") == 0 && (size_t)(slash - name) < size) {
            memcpy(prefix, name, (size_t)(slash - name));
            prefix[slash - name] = '\0';
            return 0;
        }
    }
    return fail(l, "zip archive without a <name>/data.pkl record: not a torch checkpoint");
}

static int load_zip(Loader *l) {
    zip_error_t zerr;
    zip_error_init(&zerr);
    /* Without data in memory the archive is read from the file by name, so big checkpoints
     * are not mapped as well as copied. */
    zip_source_t *src = l->data ? zip_source_buffer_create(l->data, l->size, 0, &zerr)
                                : zip_source_file_create(l->name, 0, -1, &zerr);
    /* Not ZIP_CHECKCONS: torch (miniz) leaves sizes to data descriptors, which libzip
     * reports as inconsistent; every record read is still CRC-checked. */
    zip_t *zip = src ? zip_open_from_source(src, ZIP_RDONLY, &zerr) : NULL;
    if (!zip) {
        int rc = fail(l, "not a readable zip archive (%s): the file may be truncated or corrupt",
                      zip_error_strerror(&zerr));
        if (src)
            zip_source_free(src);
        zip_error_fini(&zerr);
        return rc;
    }
    zip_error_fini(&zerr);
    char prefix[512], record[1200];
    unsigned char *buf = NULL;
    size_t size = 0;
    int rc = find_prefix(l, zip, prefix, sizeof prefix);
    if (rc == 0) {
        snprintf(record, sizeof record, "%s/byteorder", prefix);
        int got = read_zip_record(l, zip, record, &buf, &size, false, false);
        if (got < 0)
            rc = -1;
        else if (got == 0 && !(size == 6 && memcmp(buf, "little", 6) == 0)) {
            char shown[17];
            size_t n = 0;
            for (; n < size && n + 1 < sizeof shown; n++) /* file bytes: keep the line clean */
                shown[n] = buf[n] >= 0x20 && buf[n] < 0x7f ? (char)buf[n] : '?';
            shown[n] = '\0';
            rc = fail(l,
                      "byteorder record says '%s': only little-endian checkpoints are "
                      "supported (re-save it on a little-endian machine)",
                      shown);
        }
        free(buf);
        buf = NULL;
    }
    if (rc == 0) {
        snprintf(record, sizeof record, "%s/data.pkl", prefix);
        rc = read_zip_record(l, zip, record, &buf, &size, true, false);
    }
    if (rc == 0) {
        char name[700];
        snprintf(name, sizeof name, "%s: data.pkl", l->name);
        rc = pickle_parse(name, buf, size, l->doc, NULL, l->err);
        free(buf);
        buf = NULL;
        if (rc == 0)
            rc = collect_storages(l);
    }
    for (size_t k = 0; rc == 0 && k < l->storage_count; k++) {
        LoadedStorage *ls = &l->storages[k];
        snprintf(record, sizeof record, "%s/data/%s", prefix, ls->key);
        rc = read_zip_record(l, zip, record, &buf, &size, true, true);
        if (rc == 0)
            rc = adopt_bytes(l, ls, buf, size);
        buf = NULL;
    }
    zip_discard(zip);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Legacy layout */

/* torch's legacy magic number 0x1950a86a20f9469cfc6c as protocol-2 LONG1 bytes. */
static const unsigned char LEGACY_MAGIC[] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                             0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

static int parse_part(Loader *l, size_t *pos, PickleDoc *doc, const char *what) {
    char name[700];
    snprintf(name, sizeof name, "%s: %s (byte %zu)", l->name, what, *pos);
    size_t used = 0;
    if (pickle_parse(name, l->data + *pos, l->size - *pos, doc, &used, l->err) != 0)
        return -1;
    *pos += used;
    return 0;
}

static int load_legacy(Loader *l) {
    size_t pos = 0;
    if (l->size < 2 + sizeof LEGACY_MAGIC ||
        memcmp(l->data + 2, LEGACY_MAGIC, sizeof LEGACY_MAGIC) != 0)
        return fail(l, "a pickle but not a torch checkpoint (no torch magic number); refusing "
                       "to read arbitrary pickles");
    PickleDoc head;
    const char *what[] = {"magic number", "protocol version", "sys_info"};
    for (int i = 0; i < 3; i++) {
        pickle_doc_init(&head);
        int rc = parse_part(l, &pos, &head, what[i]);
        if (rc == 0 && i == 1 && !(head.root->kind == PICKLE_INT && head.root->integer == 1001))
            rc = fail(l, "legacy protocol version is not 1001");
        if (rc == 0 && i == 2) {
            const PickleValue *le = pickle_dict_get(head.root, "little_endian");
            if (le && le->kind == PICKLE_BOOL && !le->boolean)
                rc = fail(l, "saved on a big-endian machine: only little-endian checkpoints "
                             "are supported");
        }
        pickle_doc_free(&head);
        if (rc != 0)
            return -1;
    }
    if (parse_part(l, &pos, l->doc, "pickle") != 0 || collect_storages(l) != 0)
        return -1;
    pickle_doc_init(&head);
    int rc = parse_part(l, &pos, &head, "storage keys");
    if (rc == 0 && head.root->kind != PICKLE_LIST)
        rc = fail(l, "storage key list is a %s", pickle_kind_name(head.root));
    for (size_t i = 0; rc == 0 && i < head.root->count; i++) {
        const PickleValue *key = head.root->items[i];
        LoadedStorage *ls = key->kind == PICKLE_STR ? find_storage(l, key->data) : NULL;
        if (!ls) {
            rc = fail(l, "storage key %zu is not used by the pickle", i);
            break;
        }
        if (ls->bytes || ls->nbytes) {
            rc = fail(l, "storage '%s' is listed twice", ls->key);
            break;
        }
        uint64_t count = 0;
        if (l->size - pos < 8) {
            rc = fail(l, "truncated: storage '%s' at byte %zu has no size", ls->key, pos);
            break;
        }
        for (int b = 0; b < 8; b++)
            count |= (uint64_t)l->data[pos + (size_t)b] << (8 * b);
        pos += 8;
        size_t elem = dtype_size(ls->dtype);
        if (count > (l->size - pos) / elem) {
            rc = fail(l,
                      "truncated: storage '%s' at byte %zu claims %llu elements, the file "
                      "has %zu bytes left",
                      ls->key, pos - 8, (unsigned long long)count, l->size - pos);
            break;
        }
        rc = store_bytes(l, ls, l->data + pos, (size_t)count * elem);
        pos += (size_t)count * elem;
    }
    pickle_doc_free(&head);
    for (size_t k = 0; rc == 0 && k < l->storage_count; k++)
        if (!l->storages[k].bytes && l->storages[k].needed)
            rc = fail(l, "storage '%s' is missing from the key list", l->storages[k].key);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Entry points */

/* Messages quote names from the file (records, keys, storages): keep them one clean line. */
static void one_line(Error *err) {
    if (!err)
        return;
    for (char *p = err->message; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

/* `data` NULL: a zip archive read from the file `name` (of `size` bytes). */
static int load_any(const char *name, const void *data, size_t size, TensorSet *tensors,
                    PickleDoc *doc, Error *err) {
    TensorSet local;
    tensor_set_init(&local);
    pickle_doc_init(doc);
    Loader l = {name, data, size, doc, &local, NULL, 0, err};
    const unsigned char *p = data;
    int rc;
    if (!p || (size >= 4 && memcmp(p, "PK\x03\x04", 4) == 0))
        rc = load_zip(&l);
    else if (size >= 2 && p[0] == 0x80)
        rc = load_legacy(&l);
    else if (size >= 262 && memcmp(p + 257, "ustar", 5) == 0)
        rc = fail(&l, "a tar-format torch file (torch < 0.4): re-save it with a newer torch");
    else
        rc = fail(&l, "not a torch checkpoint (neither a zip archive nor a legacy torch pickle)");
    if (rc == 0) {
        PathBuf path = {{0}, 0};
        rc = name_tensors(&l, doc->root, &path);
    }
    free(l.storages);
    if (rc == 0) {
        for (size_t i = 0; rc == 0 && i < local.count; i++) {
            const NamedTensor *t = &local.items[i];
            rc = tensor_set_add(tensors, t->name, t->dtype, t->ndim, t->shape, t->data, err);
        }
        if (rc == 0)
            rc = tensor_set_take_backings(tensors, &local, err);
        if (rc != 0)
            error_prefix(err, "%s: ", name);
    }
    tensor_set_free(&local);
    if (rc != 0) {
        pickle_doc_free(doc);
        one_line(err);
    }
    return rc;
}

int torch_file_load_buffer(const char *name, const void *data, size_t size, TensorSet *tensors,
                           PickleDoc *doc, Error *err) {
    static const unsigned char empty[1] = {0};
    return load_any(name, data ? data : empty, data ? size : 0, tensors, doc, err);
}

int torch_file_load(const char *path, TensorSet *tensors, PickleDoc *doc, Error *err) {
    const void *data = NULL;
    size_t size = 0;
    pickle_doc_init(doc);
    unsigned char head[4] = {0};
    FILE *fp = fopen(path, "rb");
    size_t got = fp ? fread(head, 1, sizeof head, fp) : 0;
    long end = fp && fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
    if (fp)
        fclose(fp);
    if (got == 4 && memcmp(head, "PK\x03\x04", 4) == 0 && end > 0)
        return load_any(path, NULL, (size_t)end, tensors, doc, err);
    if (file_map(path, &data, &size, err) != 0)
        return -1;
    int rc = torch_file_load_buffer(path, data, size, tensors, doc, err);
    if (data)
        file_unmap(data, size);
    return rc;
}

/* Dicts only, as state dicts nest; recursion depth is bounded by pickle_parse. */
static int flatten(const char *file, const PickleValue *dict, const char *prefix,
                   const TensorSet *from, TensorSet *to, Error *err) {
    for (size_t i = 0; i < dict->count; i++) {
        const PickleValue *v = dict->items[i];
        char part[256], name[1200];
        key_text(dict->keys[i], i, part, sizeof part);
        snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", part);
        if (v->kind == PICKLE_DICT) {
            if (flatten(file, v, name, from, to, err) != 0)
                return -1;
        } else if (v->kind == PICKLE_TENSOR) {
            const NamedTensor *t = tensor_set_find(from, v->tensor.name);
            if (!t)
                return error_set(err, "%s: tensor '%s' was not loaded", file, name);
            if (tensor_set_add(to, name, t->dtype, t->ndim, t->shape, t->data, err) != 0)
                return error_prefix(err, "%s: ", file);
        }
    }
    return 0;
}

int torch_file_load_state_dict(const char *path, TensorSet *set, Error *err) {
    TensorSet all, flat;
    tensor_set_init(&all);
    tensor_set_init(&flat);
    PickleDoc doc;
    if (torch_file_load(path, &all, &doc, err) != 0)
        return -1;
    const PickleValue *root = doc.root;
    const PickleValue *inner = pickle_dict_get(root, "state_dict");
    if (inner && inner->kind == PICKLE_DICT)
        root = inner;
    int rc;
    if (root->kind != PICKLE_DICT)
        rc = error_set(err, "%s: holds a %s, not a state dict (a dict of tensors)", path,
                       pickle_kind_name(root));
    else
        rc = flatten(path, root, "", &all, &flat, err);
    for (size_t i = 0; rc == 0 && i < flat.count; i++) {
        const NamedTensor *t = &flat.items[i];
        rc = tensor_set_add(set, t->name, t->dtype, t->ndim, t->shape, t->data, err);
    }
    if (rc == 0)
        rc = tensor_set_take_backings(set, &all, err);
    pickle_doc_free(&doc);
    tensor_set_free(&flat);
    tensor_set_free(&all);
    return rc;
}
