/* Python pickles as torch checkpoints use them: a restricted unpickler that builds a small
 * value tree, and a writer (protocol 2, as torch.save) for such trees.
 *
 * The unpickler is a security boundary. It never calls anything: the globals it accepts are
 * a fixed list of what torch state dicts need (OrderedDict, torch's tensor rebuild functions,
 * storage classes, dtypes, torch.Size) and a few classes real checkpoints carry, which are
 * kept as inert objects (class name, arguments, state) and never interpreted. Every other
 * global ("os.system", "builtins.eval") is refused by name with the byte offset. Lengths,
 * stack, memo and nesting are bounded; any input gives a tree or a one-line error.
 *
 * Values are owned by a PickleDoc and freed together, since a pickle may reference one value
 * from several places (the memo). A tree from a hostile file may even contain cycles, so code
 * that walks it must bound its depth (PICKLE_MAX_DEPTH; pickle_parse checks it for you). */
#ifndef SDTI_FORMATS_PICKLE_H
#define SDTI_FORMATS_PICKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/error.h"
#include "formats/tensor_set.h"

/* The deepest container nesting pickle_parse accepts (real checkpoints: under 10). */
#define PICKLE_MAX_DEPTH 64

typedef enum PickleKind {
    PICKLE_NONE,
    PICKLE_BOOL,
    PICKLE_INT,
    PICKLE_FLOAT,
    PICKLE_STR,   /* UTF-8 (not validated), may hold NULs: use `len` */
    PICKLE_BYTES, /* also protocol 0/1 byte strings */
    PICKLE_TUPLE,
    PICKLE_LIST,
    PICKLE_DICT,    /* dict or collections.OrderedDict (`ordered`), insertion order kept */
    PICKLE_GLOBAL,  /* a reference to an allowed global, not called: `module`, `name` */
    PICKLE_OBJECT,  /* an inert instance of an allowed class: `module`, `name`, `args`, `state` */
    PICKLE_STORAGE, /* a torch storage named by a persistent id */
    PICKLE_TENSOR
} PickleKind;

/* What an allowed global is, decided once when GLOBAL/STACK_GLOBAL names it. */
typedef enum PickleGlobalRole {
    GLOBAL_INERT, /* a class kept as PICKLE_OBJECT when called/instantiated */
    GLOBAL_ORDERED_DICT,
    GLOBAL_REBUILD_TENSOR,    /* torch._utils._rebuild_tensor / _rebuild_tensor_v2 */
    GLOBAL_REBUILD_PARAMETER, /* torch._utils._rebuild_parameter(_with_state) */
    GLOBAL_REBUILD_FROM_TYPE, /* torch._tensor._rebuild_from_type_v2 */
    GLOBAL_TENSOR_CLASS,      /* torch.Tensor, torch.nn.parameter.Parameter */
    GLOBAL_STORAGE_CLASS,     /* torch.FloatStorage, ...: `dtype` */
    GLOBAL_DTYPE,             /* torch.float32, ...: `dtype`, or `dtype_known` false */
    GLOBAL_SIZE               /* torch.Size */
} PickleGlobalRole;

typedef struct PickleValue PickleValue;

typedef struct PickleTensor {
    PickleValue *storage;   /* PICKLE_STORAGE */
    int64_t storage_offset; /* in elements */
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t stride[TENSOR_MAX_DIMS]; /* in elements */
    bool requires_grad;
    bool is_parameter; /* came through _rebuild_parameter (nn.Parameter) */
    /* The TensorSet entry holding its contiguous bytes: set by torch_file_load for tensors
     * read from a file; set by the caller (pickle_new_tensor) for trees to write. */
    char *name;
} PickleTensor;

typedef struct PickleStorage {
    DType dtype;
    char *key;      /* record "data/<key>" (zip) or storage key (legacy) */
    char *location; /* "cpu", "cuda:0": ignored, everything loads to the CPU */
    int64_t numel;  /* elements */
    /* Legacy storage views (torch < 0.4): this storage starts `view_offset` elements into
     * storage `key`. Zero otherwise. */
    int64_t view_offset;
} PickleStorage;

struct PickleValue {
    PickleKind kind;
    bool boolean;
    int64_t integer;
    bool big_integer; /* an int beyond 64 bits: `integer` is meaningless */
    double real;
    char *data; /* STR (NUL-terminated too), BYTES */
    size_t len;
    /* TUPLE, LIST: items; DICT: keys[i] -> items[i] */
    PickleValue **items, **keys;
    size_t count, capacity;
    bool ordered; /* DICT made by collections.OrderedDict */
    /* GLOBAL and OBJECT */
    char *module, *name;
    PickleGlobalRole role;
    DType dtype;
    bool dtype_known;
    PickleValue *args;  /* OBJECT: the arguments it was called with (a tuple) */
    PickleValue *state; /* OBJECT: what BUILD gave it, or NULL */
    PickleStorage storage;
    PickleTensor tensor;
    /* Scratch of pickle_parse's final check (0 unvisited, 1 in progress, 2 done). */
    int walk_state, walk_height;
    uint64_t walk_expanded;
};

typedef struct PickleDoc {
    PickleValue *root;
    PickleValue **values; /* every value, for freeing */
    size_t value_count, value_capacity;
} PickleDoc;

void pickle_doc_init(PickleDoc *doc);
void pickle_doc_free(PickleDoc *doc);

/* Unpickles `data` into doc->root (doc must be freshly initialised). `name` names the input
 * in messages ("model.ckpt: data.pkl"). Stops at the first STOP; bytes after it are left
 * for the caller (*consumed says how many were used; may be NULL). */
int pickle_parse(const char *name, const void *data, size_t size, PickleDoc *doc, size_t *consumed,
                 Error *err);

/* ---- reading a tree ---- */

/* The value of `key` in a DICT (the last one if the file repeats a key), or NULL. */
const PickleValue *pickle_dict_get(const PickleValue *dict, const char *key);
bool pickle_is_str(const PickleValue *v, const char *s);
/* "dict", "tensor", "collections.OrderedDict object", ... for messages. */
const char *pickle_kind_name(const PickleValue *v);

/* ---- building a tree (for the writer); each returns NULL when out of memory ---- */

PickleValue *pickle_new(PickleDoc *doc, PickleKind kind);
PickleValue *pickle_new_int(PickleDoc *doc, int64_t v);
PickleValue *pickle_new_float(PickleDoc *doc, double v);
PickleValue *pickle_new_bool(PickleDoc *doc, bool v);
PickleValue *pickle_new_str(PickleDoc *doc, const char *s);
PickleValue *pickle_new_strn(PickleDoc *doc, const char *s, size_t len);
/* A tensor leaf for the writer: the TensorSet entry `name` (its dtype and shape come from
 * there). `parameter` writes it as torch.nn.Parameter. */
PickleValue *pickle_new_tensor(PickleDoc *doc, const char *name, bool parameter,
                               bool requires_grad);
/* Appends to a TUPLE or LIST. Returns 0, or -1 when out of memory. */
int pickle_append(PickleValue *seq, PickleValue *item);
/* Appends key -> value to a DICT (no duplicate check). */
int pickle_dict_append(PickleValue *dict, PickleValue *key, PickleValue *value);
/* Appends a str key. */
int pickle_dict_set(PickleDoc *doc, PickleValue *dict, const char *key, PickleValue *value);

/* ---- writing ---- */

/* A storage the writer assigned to a tensor: record data/<index> holds tensor `name`. */
typedef struct PickleWrittenStorage {
    const NamedTensor *tensor;
} PickleWrittenStorage;

/* Pickles `root` with protocol 2 as torch.save does (tensors as _rebuild_tensor_v2 /
 * _rebuild_parameter with persistent ids ('storage', torch.<X>Storage, '<index>', 'cpu',
 * numel)). Tensor leaves are looked up in `tensors` by name; each distinct name gets one
 * storage, listed in *storages (malloc'd, index = storage key). Writes a malloc'd buffer.
 * Values it cannot write (bytes, globals, objects, storages) are an error. */
int pickle_write(const PickleValue *root, const TensorSet *tensors, unsigned char **out,
                 size_t *out_size, PickleWrittenStorage **storages, size_t *storage_count,
                 Error *err);

#endif
