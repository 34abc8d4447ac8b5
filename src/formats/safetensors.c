#define _POSIX_C_SOURCE 200809L
#include "formats/safetensors.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"

#define LENGTH_BYTES 8
/* The deepest a valid header nests: root object -> tensor entry -> shape array. */
#define HEADER_MAX_DEPTH 3
/* Real files carry tens of metadata entries; the cap bounds the quadratic cost of the
 * set's linear metadata lookup on hostile input. */
#define MAX_METADATA_ENTRIES 10000
/* cJSON keeps numbers as doubles, which hold every integer below 2^53 exactly. */
#define JSON_EXACT_INT_LIMIT 9007199254740992.0

/* ------------------------------------------------------------------------------------------
 * Messages */

/* Tensor names come from the file: cut long ones and hide control characters so the error
 * stays one readable line. */
static const char *printable(const char *s, char *buf, size_t size) {
    size_t limit = size - 4, n = 0;
    for (; s[n] && n < limit; n++)
        buf[n] = ((unsigned char)s[n] < 0x20 || s[n] == 0x7f) ? '?' : s[n];
    if (s[n]) {
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--; /* do not cut a UTF-8 sequence in half */
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

static int fail(Error *err, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(Error *err, const char *file, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return error_set(err, "%s: %s", file, msg);
}

static int tensor_fail(Error *err, const char *file, const char *tensor, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int tensor_fail(Error *err, const char *file, const char *tensor, const char *fmt, ...) {
    char msg[640], name[120];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return error_set(err, "%s: tensor '%s': %s", file, printable(tensor, name, sizeof name), msg);
}

/* ------------------------------------------------------------------------------------------
 * Lexical checks on the raw header */

/* Index of the first byte that is not well-formed UTF-8 (no overlong forms, surrogates or
 * code points above U+10FFFF), or `size` when all of it is. */
static size_t utf8_invalid_at(const unsigned char *s, size_t size) {
    size_t i = 0;
    while (i < size) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return i;
        }
        if (size - i < len)
            return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += len;
    }
    return size;
}

/* What a pass over the raw header bytes finds. cJSON accepts a few things JSON forbids (raw
 * control characters in strings, "01"), turns "\u0000" into a silently shortened C string,
 * and says nothing about how a number was spelled; it also allocates a node per value, so
 * the shape limits are checked here before it runs. */
typedef struct HeaderScan {
    size_t fail_at; /* offset in the header */
    char reason[160];
    bool odd_number; /* a number not written as a plain non-negative integer */
    size_t number_at, number_len;
} HeaderScan;

static int scan_fail(HeaderScan *scan, size_t at, const char *reason) {
    scan->fail_at = at;
    snprintf(scan->reason, sizeof scan->reason, "%s", reason);
    return -1;
}

static bool is_number_char(unsigned char c) {
    return (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.' || c == 'e' || c == 'E';
}

static int scan_header(const unsigned char *h, size_t n, HeaderScan *scan) {
    int depth = 0;
    bool in_array[HEADER_MAX_DEPTH + 1] = {false};
    int commas[HEADER_MAX_DEPTH + 1] = {0};
    memset(scan, 0, sizeof *scan);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = h[i];
        if (c == '"') {
            for (i++; i < n && h[i] != '"'; i++) {
                if (h[i] < 0x20)
                    return scan_fail(scan, i, "raw control character inside a string");
                if (h[i] == '\\') {
                    if (n - i >= 6 && memcmp(h + i + 1, "u0000", 5) == 0)
                        return scan_fail(scan, i,
                                         "\\u0000 inside a string (names and "
                                         "metadata cannot hold NUL characters)");
                    i++;
                }
            }
        } else if (c == '{' || c == '[') {
            if (depth == HEADER_MAX_DEPTH)
                return scan_fail(scan, i, "JSON nested deeper than a safetensors header is");
            depth++;
            in_array[depth] = c == '[';
            commas[depth] = 0;
        } else if (c == '}' || c == ']') {
            if (depth > 0)
                depth--;
        } else if (c == ',') {
            if (depth > 0 && in_array[depth] && ++commas[depth] >= TENSOR_MAX_DIMS) {
                char reason[96];
                snprintf(reason, sizeof reason,
                         "array longer than %d elements (shapes have at most %d dimensions)",
                         TENSOR_MAX_DIMS, TENSOR_MAX_DIMS);
                return scan_fail(scan, i, reason);
            }
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t start = i;
            while (i + 1 < n && is_number_char(h[i + 1]))
                i++;
            size_t len = i - start + 1;
            bool plain = !(h[start] == '0' && len > 1);
            for (size_t k = start; k <= i; k++)
                plain = plain && h[k] >= '0' && h[k] <= '9';
            if (!plain && !scan->odd_number) {
                scan->odd_number = true;
                scan->number_at = start;
                scan->number_len = len;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Header validation */

typedef struct Span {
    uint64_t begin, end;
    const char *name;
} Span;

static int compare_spans(const void *a, const void *b) {
    const Span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

static const char *json_kind(const cJSON *v) {
    if (cJSON_IsObject(v))
        return "an object";
    if (cJSON_IsArray(v))
        return "an array";
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsBool(v))
        return "a boolean";
    return "null";
}

/* A JSON number that is an exact non-negative integer a double holds exactly. */
static int json_to_u64(const cJSON *v, uint64_t *out, char *why, size_t why_size) {
    if (!cJSON_IsNumber(v)) {
        snprintf(why, why_size, "is %s, not an integer", json_kind(v));
        return -1;
    }
    double d = v->valuedouble;
    if (d < 0) {
        snprintf(why, why_size, "is negative (%g)", d);
        return -1;
    }
    if (!(d < JSON_EXACT_INT_LIMIT)) {
        snprintf(why, why_size, "is too large (%g)", d);
        return -1;
    }
    if ((double)(uint64_t)d != d) {
        snprintf(why, why_size, "is not an integer (%g)", d);
        return -1;
    }
    *out = (uint64_t)d;
    return 0;
}

static const char *dtype_list(void) {
    return "BOOL, U8, I8, I16, I32, I64, F16, BF16, F32, F64";
}

/* Checks one tensor entry and returns its dtype, shape and data offsets. */
static int parse_tensor_entry(const char *file, const cJSON *entry, size_t data_size, DType *dtype,
                              int *ndim, int64_t *shape, Span *span, Error *err) {
    const char *name = entry->string;
    if (!cJSON_IsObject(entry))
        return tensor_fail(err, file, name,
                           "entry is %s, not an object with dtype, shape and "
                           "data_offsets",
                           json_kind(entry));
    const cJSON *dt = NULL, *sh = NULL, *off = NULL, *field;
    cJSON_ArrayForEach(field, entry) {
        const cJSON **slot = strcmp(field->string, "dtype") == 0          ? &dt
                             : strcmp(field->string, "shape") == 0        ? &sh
                             : strcmp(field->string, "data_offsets") == 0 ? &off
                                                                          : NULL;
        char key[80];
        if (!slot)
            return tensor_fail(err, file, name,
                               "unexpected key '%s' (an entry has only dtype, "
                               "shape and data_offsets)",
                               printable(field->string, key, sizeof key));
        if (*slot)
            return tensor_fail(err, file, name, "key '%s' appears twice", field->string);
        *slot = field;
    }
    if (!dt || !sh || !off)
        return tensor_fail(err, file, name, "missing '%s'",
                           !dt   ? "dtype"
                           : !sh ? "shape"
                                 : "data_offsets");

    if (!cJSON_IsString(dt))
        return tensor_fail(err, file, name, "dtype is %s, not a string", json_kind(dt));
    if (dtype_from_safetensors_name(dt->valuestring, dtype) != 0) {
        char shown[40];
        return tensor_fail(err, file, name, "unsupported dtype '%s' (sdti reads %s)",
                           printable(dt->valuestring, shown, sizeof shown), dtype_list());
    }

    if (!cJSON_IsArray(sh))
        return tensor_fail(err, file, name, "shape is %s, not an array of integers", json_kind(sh));
    int dims = cJSON_GetArraySize(sh);
    if (dims > TENSOR_MAX_DIMS)
        return tensor_fail(err, file, name, "shape has %d dimensions (at most %d supported)", dims,
                           TENSOR_MAX_DIMS);
    uint64_t numel = 1;
    bool overflow = false;
    const cJSON *dim;
    int d = 0;
    cJSON_ArrayForEach(dim, sh) {
        uint64_t v;
        char why[64];
        if (json_to_u64(dim, &v, why, sizeof why) != 0)
            return tensor_fail(err, file, name, "shape[%d] %s", d, why);
        /* Same bound as tensor_set_add: numel * 16 must fit in 64 bits at every step. */
        if (v != 0 && numel > UINT64_MAX / 16 / v)
            overflow = true;
        numel *= v;
        shape[d++] = (int64_t)v;
    }
    *ndim = dims;
    if (overflow)
        return tensor_fail(err, file, name, "shape has too many elements (overflows 64 bits)");

    char why[64];
    uint64_t begin, end;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return tensor_fail(err, file, name, "data_offsets is not an array [begin, end]");
    if (json_to_u64(off->child, &begin, why, sizeof why) != 0)
        return tensor_fail(err, file, name, "data_offsets begin %s", why);
    if (json_to_u64(off->child->next, &end, why, sizeof why) != 0)
        return tensor_fail(err, file, name, "data_offsets end %s", why);
    if (begin > end)
        return tensor_fail(err, file, name, "data_offsets [%llu, %llu] begin after end",
                           (unsigned long long)begin, (unsigned long long)end);
    if (end > data_size)
        return tensor_fail(err, file, name,
                           "data_offsets [%llu, %llu] out of range: the data "
                           "after the header is %zu bytes (file truncated?)",
                           (unsigned long long)begin, (unsigned long long)end, data_size);
    uint64_t need = numel * dtype_size(*dtype);
    if (end - begin != need) {
        NamedTensor shown = {.ndim = dims};
        memcpy(shown.shape, shape, sizeof(int64_t) * (size_t)dims);
        char shape_text[128];
        return tensor_fail(err, file, name,
                           "data_offsets [%llu, %llu] hold %llu bytes but "
                           "%s with shape %s needs %llu",
                           (unsigned long long)begin, (unsigned long long)end,
                           (unsigned long long)(end - begin), dtype_safetensors_name(*dtype),
                           tensor_shape_string(&shown, shape_text, sizeof shape_text),
                           (unsigned long long)need);
    }
    *span = (Span){begin, end, name};
    return 0;
}

static int parse_metadata(const char *file, const cJSON *meta, TensorSet *set, Error *err) {
    if (!cJSON_IsObject(meta))
        return fail(err, file, "__metadata__ is %s, not an object of strings", json_kind(meta));
    if (cJSON_GetArraySize(meta) > MAX_METADATA_ENTRIES)
        return fail(err, file, "__metadata__ has more than %d entries", MAX_METADATA_ENTRIES);
    const cJSON *item;
    cJSON_ArrayForEach(item, meta) {
        char key[120];
        printable(item->string, key, sizeof key);
        if (!cJSON_IsString(item))
            return fail(err, file, "__metadata__ '%s' is %s, not a string", key, json_kind(item));
        if (tensor_set_get_meta(set, item->string))
            return fail(err, file, "__metadata__ key '%s' appears twice", key);
        if (tensor_set_set_meta(set, item->string, item->valuestring, err) != 0)
            return error_prefix(err, "%s: ", file);
    }
    return 0;
}

/* Rejects tensors sharing bytes. Empty tensors hold no bytes and overlap nothing. */
static int check_overlaps(const char *file, Span *spans, size_t count, Error *err) {
    qsort(spans, count, sizeof *spans, compare_spans);
    const Span *widest = NULL;
    for (size_t i = 0; i < count; i++) {
        if (spans[i].begin == spans[i].end)
            continue;
        if (widest && spans[i].begin < widest->end) {
            char a[100], b[100];
            return fail(err, file,
                        "tensors '%s' (data_offsets [%llu, %llu]) and '%s' "
                        "([%llu, %llu]) overlap",
                        printable(widest->name, a, sizeof a), (unsigned long long)widest->begin,
                        (unsigned long long)widest->end, printable(spans[i].name, b, sizeof b),
                        (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end);
        }
        if (!widest || spans[i].end > widest->end)
            widest = &spans[i];
    }
    return 0;
}

static int parse_header_json(const char *file, const cJSON *root, const unsigned char *data,
                             size_t data_size, TensorSet *set, Error *err) {
    size_t count = (size_t)cJSON_GetArraySize(root);
    Span *spans = malloc((count ? count : 1) * sizeof *spans);
    if (!spans)
        return fail(err, file, "out of memory reading the header");
    size_t nspans = 0;
    bool seen_metadata = false;
    int rc = 0;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, root) {
        if (strcmp(entry->string, "__metadata__") == 0) {
            if (seen_metadata) {
                rc = fail(err, file, "header: key '__metadata__' appears twice");
                break;
            }
            seen_metadata = true;
            if ((rc = parse_metadata(file, entry, set, err)) != 0)
                break;
            continue;
        }
        DType dtype;
        int ndim = 0;
        int64_t shape[TENSOR_MAX_DIMS];
        Span span;
        if ((rc = parse_tensor_entry(file, entry, data_size, &dtype, &ndim, shape, &span, err)) !=
            0)
            break;
        const void *bytes = span.end > span.begin ? data + span.begin : NULL;
        if ((rc = tensor_set_add(set, entry->string, dtype, ndim, shape, bytes, err)) != 0) {
            error_prefix(err, "%s: ", file);
            break;
        }
        spans[nspans++] = span;
    }
    if (rc == 0)
        rc = check_overlaps(file, spans, nspans, err);
    free(spans);
    return rc;
}

/* Validates the whole file and fills the (empty) `set`. */
static int parse_into(const char *file, const unsigned char *bytes, size_t size, TensorSet *set,
                      Error *err) {
    if (size == 0)
        return fail(err, file, "empty file (0 bytes), not a safetensors file");
    if (size < LENGTH_BYTES)
        return fail(err, file,
                    "file is %zu bytes, shorter than the 8-byte header length "
                    "(truncated?)",
                    size);
    uint64_t n = 0;
    for (int i = LENGTH_BYTES - 1; i >= 0; i--)
        n = (n << 8) | bytes[i];
    if (n > SAFETENSORS_MAX_HEADER)
        return fail(err, file,
                    "header length %llu at byte offset 0 is over the 100 MB "
                    "safetensors limit (not a safetensors file?)",
                    (unsigned long long)n);
    if (n > size - LENGTH_BYTES)
        return fail(err, file,
                    "header length %llu at byte offset 0 runs past the end of the "
                    "file (%zu bytes; truncated?)",
                    (unsigned long long)n, size);
    if (n == 0)
        return fail(err, file, "header length at byte offset 0 is 0 (no JSON header)");

    const unsigned char *h = bytes + LENGTH_BYTES;
    size_t bad = utf8_invalid_at(h, (size_t)n);
    if (bad < n)
        return fail(err, file, "header, byte offset %zu: invalid UTF-8", bad + LENGTH_BYTES);
    if (n >= 3 && memcmp(h, "\xEF\xBB\xBF", 3) == 0)
        return fail(err, file,
                    "header, byte offset 8: starts with a UTF-8 byte order mark, "
                    "which JSON does not allow");
    HeaderScan scan;
    if (scan_header(h, (size_t)n, &scan) != 0)
        return fail(err, file, "header, byte offset %zu: %s", scan.fail_at + LENGTH_BYTES,
                    scan.reason);

    /* cJSON gets a NUL-terminated copy: some cJSON versions read one byte past the given
     * length on truncated input, which in a mapped file can be past the last page. */
    char *json = malloc((size_t)n + 1);
    if (!json)
        return fail(err, file, "out of memory copying the %llu-byte header", (unsigned long long)n);
    memcpy(json, h, (size_t)n);
    json[n] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)n, &end, false);
    size_t at = end ? (size_t)(end - json) : 0;
    free(json);
    if (!root)
        return fail(err, file, "header is not valid JSON (error at byte offset %zu)",
                    at + LENGTH_BYTES);
    size_t tail = at;
    while (tail < n && (h[tail] == ' ' || h[tail] == '\t' || h[tail] == '\n' || h[tail] == '\r'))
        tail++;
    int rc = 0;
    if (tail < n)
        rc = fail(err, file, "header, byte offset %zu: unexpected bytes after the JSON object",
                  tail + LENGTH_BYTES);
    else if (!cJSON_IsObject(root))
        rc = fail(err, file, "header JSON is %s, not an object", json_kind(root));
    else
        rc = parse_header_json(file, root, h + n, size - LENGTH_BYTES - (size_t)n, set, err);
    cJSON_Delete(root);
    if (rc == 0 && scan.odd_number)
        rc = fail(err, file,
                  "header, byte offset %zu: number '%.*s' is not a plain "
                  "non-negative integer (shapes and offsets must be)",
                  scan.number_at + LENGTH_BYTES, (int)(scan.number_len > 40 ? 40 : scan.number_len),
                  (const char *)h + scan.number_at);
    return rc;
}

/* Moves a parsed file into the caller's set. The backings go first, so the entries never
 * point at memory nobody owns even if adding one fails half-way. */
static int move_into(TensorSet *to, TensorSet *from, const char *file, Error *err) {
    if (to->count == 0 && to->meta_count == 0 && to->backing_count == 0) {
        tensor_set_free(to);
        *to = *from;
        tensor_set_init(from);
        return 0;
    }
    if (tensor_set_take_backings(to, from, err) != 0)
        return error_prefix(err, "%s: ", file);
    for (size_t i = 0; i < from->count; i++) {
        const NamedTensor *t = &from->items[i];
        if (tensor_set_add(to, t->name, t->dtype, t->ndim, t->shape, t->data, err) != 0)
            return error_prefix(err, "%s: ", file);
    }
    for (size_t i = 0; i < from->meta_count; i++)
        if (tensor_set_set_meta(to, from->meta[i].key, from->meta[i].value, err) != 0)
            return error_prefix(err, "%s: ", file);
    return 0;
}

int safetensors_parse(const char *name, const void *data, size_t size, TensorSet *set, Error *err) {
    TensorSet local;
    tensor_set_init(&local);
    int rc = parse_into(name, data, size, &local, err);
    if (rc == 0)
        rc = move_into(set, &local, name, err);
    tensor_set_free(&local);
    return rc;
}

int safetensors_open(const char *path, TensorSet *set, Error *err) {
    if (file_is_dir(path))
        return fail(err, path, "is a directory, not a safetensors file");
    const void *data = NULL;
    size_t size = 0;
    if (file_map(path, &data, &size, err) != 0)
        return -1;
    TensorSet local;
    tensor_set_init(&local);
    if (size > 0 && tensor_set_adopt(&local, BACKING_MMAP, (void *)data, size, err) != 0) {
        file_unmap(data, size);
        return error_prefix(err, "%s: ", path);
    }
    int rc = parse_into(path, data, size, &local, err);
    if (rc == 0)
        rc = move_into(set, &local, path, err);
    tensor_set_free(&local);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Writer */

typedef struct ByteBuf {
    char *data;
    size_t len, cap;
    bool failed;
} ByteBuf;

static void buf_put(ByteBuf *b, const void *p, size_t n) {
    if (b->failed)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = true;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void buf_puts(ByteBuf *b, const char *s) {
    buf_put(b, s, strlen(s));
}

static void buf_put_u64(ByteBuf *b, uint64_t v) {
    char text[24];
    snprintf(text, sizeof text, "%llu", (unsigned long long)v);
    buf_puts(b, text);
}

/* A JSON string escaped exactly as serde_json (the library's serializer) does: the two
 * mandatory escapes, short forms for \b \t \n \f \r, \u00xx (lowercase hex) for other control
 * characters, everything else (DEL, non-ASCII UTF-8) as is. */
static void buf_put_json_string(ByteBuf *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    buf_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *esc = NULL;
        switch (*p) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\r':
            esc = "\\r";
            break;
        default:
            break;
        }
        if (esc) {
            buf_puts(b, esc);
        } else if (*p < 0x20) {
            char u[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
            buf_put(b, u, sizeof u);
        } else {
            buf_put(b, p, 1);
        }
    }
    buf_put(b, "\"", 1);
}

/* Position of each dtype in the library's Dtype enum. It stores tensors in descending enum
 * order, then by name in byte order; the enum is not sorted by width alone (I64 comes before
 * F64, I32 before BF16), so only this table gives the same order. */
static int library_dtype_rank(DType dtype) {
    switch (dtype) {
    case DTYPE_BOOL:
        return 0;
    case DTYPE_U8:
        return 1;
    case DTYPE_I8:
        return 2;
    case DTYPE_I16:
        return 3;
    case DTYPE_F16:
        return 4;
    case DTYPE_BF16:
        return 5;
    case DTYPE_I32:
        return 6;
    case DTYPE_F32:
        return 7;
    case DTYPE_F64:
        return 8;
    case DTYPE_I64:
        return 9;
    default:
        return -1;
    }
}

static int compare_for_file(const void *a, const void *b) {
    const NamedTensor *x = *(const NamedTensor *const *)a, *y = *(const NamedTensor *const *)b;
    int rx = library_dtype_rank(x->dtype), ry = library_dtype_rank(y->dtype);
    if (rx != ry)
        return rx > ry ? -1 : 1;
    return strcmp(x->name, y->name);
}

static bool valid_utf8(const char *s) {
    size_t n = strlen(s);
    return utf8_invalid_at((const unsigned char *)s, n) == n;
}

static int check_entry_for_write(const char *path, const NamedTensor *t, Error *err) {
    if (!valid_utf8(t->name))
        return tensor_fail(err, path, t->name, "name is not valid UTF-8");
    if (library_dtype_rank(t->dtype) < 0)
        return tensor_fail(err, path, t->name, "invalid dtype");
    if (t->ndim < 0 || t->ndim > TENSOR_MAX_DIMS)
        return tensor_fail(err, path, t->name, "%d dimensions", t->ndim);
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0)
            return tensor_fail(err, path, t->name, "negative dimension");
        uint64_t v = (uint64_t)t->shape[d];
        if (v != 0 && numel > UINT64_MAX / 16 / v)
            return tensor_fail(err, path, t->name, "shape too large");
        numel *= v;
    }
    if (numel * dtype_size(t->dtype) != t->nbytes || (t->nbytes && !t->data))
        return tensor_fail(err, path, t->name,
                           "byte size %zu does not match its shape and "
                           "dtype",
                           t->nbytes);
    return 0;
}

/* The JSON header (without padding) for tensors in file order. */
static int build_header(const char *path, const TensorSet *set, const NamedTensor **order,
                        ByteBuf *b, Error *err) {
    buf_put(b, "{", 1);
    bool first = true;
    if (set->meta_count > 0) {
        buf_puts(b, "\"__metadata__\":{");
        for (size_t i = 0; i < set->meta_count; i++) {
            char key[120];
            if (!valid_utf8(set->meta[i].key) || !valid_utf8(set->meta[i].value))
                return fail(err, path, "__metadata__ '%s' is not valid UTF-8",
                            printable(set->meta[i].key, key, sizeof key));
            if (i)
                buf_put(b, ",", 1);
            buf_put_json_string(b, set->meta[i].key);
            buf_put(b, ":", 1);
            buf_put_json_string(b, set->meta[i].value);
        }
        buf_put(b, "}", 1);
        first = false;
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < set->count; i++) {
        const NamedTensor *t = order[i];
        if (!first)
            buf_put(b, ",", 1);
        first = false;
        buf_put_json_string(b, t->name);
        buf_puts(b, ":{\"dtype\":");
        buf_put_json_string(b, dtype_safetensors_name(t->dtype));
        buf_puts(b, ",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d)
                buf_put(b, ",", 1);
            buf_put_u64(b, (uint64_t)t->shape[d]);
        }
        buf_puts(b, "],\"data_offsets\":[");
        buf_put_u64(b, offset);
        buf_put(b, ",", 1);
        offset += t->nbytes;
        buf_put_u64(b, offset);
        buf_puts(b, "]}");
    }
    buf_put(b, "}", 1);
    while (b->len % LENGTH_BYTES)
        buf_put(b, " ", 1);
    if (b->failed)
        return fail(err, path, "out of memory building the header");
    if (b->len > SAFETENSORS_MAX_HEADER)
        return fail(err, path, "header would be %zu bytes, over the 100 MB safetensors limit",
                    b->len);
    return 0;
}

static int write_file(const char *path, const ByteBuf *header, const NamedTensor **order,
                      size_t count, Error *err) {
    AtomicFile af;
    if (atomic_file_open(&af, path, err) != 0)
        return -1;
    unsigned char length[LENGTH_BYTES];
    for (int i = 0; i < LENGTH_BYTES; i++)
        length[i] = (unsigned char)((uint64_t)header->len >> (8 * i));
    bool ok = fwrite(length, 1, sizeof length, af.fp) == sizeof length &&
              fwrite(header->data, 1, header->len, af.fp) == header->len;
    for (size_t i = 0; ok && i < count; i++)
        if (order[i]->nbytes)
            ok = fwrite(order[i]->data, 1, order[i]->nbytes, af.fp) == order[i]->nbytes;
    if (!ok) {
        atomic_file_abort(&af);
        return fail(err, path, "write failed (disk full?)");
    }
    return atomic_file_commit(&af, err);
}

int safetensors_write(const char *path, const TensorSet *set, Error *err) {
    for (size_t i = 0; i < set->count; i++)
        if (check_entry_for_write(path, &set->items[i], err) != 0)
            return -1;
    const NamedTensor **order = malloc((set->count ? set->count : 1) * sizeof *order);
    if (!order)
        return fail(err, path, "out of memory");
    for (size_t i = 0; i < set->count; i++)
        order[i] = &set->items[i];
    qsort(order, set->count, sizeof *order, compare_for_file);
    ByteBuf header = {0};
    int rc = build_header(path, set, order, &header, err);
    if (rc == 0)
        rc = write_file(path, &header, order, set->count, err);
    free(header.data);
    free(order);
    return rc;
}
