/* The globals torch checkpoints name. Anything not listed here is refused by the unpickler;
 * listed classes that are not torch's own are kept as inert objects and never interpreted,
 * so listing one more never lets a file run code. */
#include "formats/pickle_globals.h"

#include <string.h>

typedef struct NamedDType {
    const char *name;
    DType dtype;
} NamedDType;

/* torch's legacy typed storage classes (what torch.save still writes in persistent ids). */
static const NamedDType STORAGES[] = {
    {"FloatStorage", DTYPE_F32},  {"HalfStorage", DTYPE_F16},   {"BFloat16Storage", DTYPE_BF16},
    {"DoubleStorage", DTYPE_F64}, {"LongStorage", DTYPE_I64},   {"IntStorage", DTYPE_I32},
    {"ShortStorage", DTYPE_I16},  {"CharStorage", DTYPE_I8},    {"ByteStorage", DTYPE_U8},
    {"BoolStorage", DTYPE_BOOL},  {"UntypedStorage", DTYPE_U8},
};

/* torch.dtype objects pickle as GLOBAL 'torch <name>'. */
static const NamedDType DTYPES[] = {
    {"float32", DTYPE_F32},   {"float", DTYPE_F32},   {"float16", DTYPE_F16}, {"half", DTYPE_F16},
    {"bfloat16", DTYPE_BF16}, {"float64", DTYPE_F64}, {"double", DTYPE_F64},  {"int64", DTYPE_I64},
    {"long", DTYPE_I64},      {"int32", DTYPE_I32},   {"int", DTYPE_I32},     {"int16", DTYPE_I16},
    {"short", DTYPE_I16},     {"int8", DTYPE_I8},     {"uint8", DTYPE_U8},    {"bool", DTYPE_BOOL},
};

/* dtypes sdti cannot hold, still fine to name (as a value) in a checkpoint. */
static const char *const OTHER_DTYPES[] = {
    "complex32",       "complex64", "complex128", "cfloat",        "cdouble",     "chalf",
    "uint16",          "uint32",    "uint64",     "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
    "float8_e5m2fnuz", "qint8",     "quint8",     "qint32",        "quint4x2",
};

/* Classes real checkpoints carry that we keep as opaque objects. */
static const char *const INERT[][2] = {
    {"torch.nn.modules.container", "ParameterDict"},
    {"torch.nn.modules.container", "ParameterList"},
    {"pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"},
    {"numpy.core.multiarray", "scalar"},
    {"numpy._core.multiarray", "scalar"},
    {"numpy", "dtype"},
    {"_codecs", "encode"},
    {"__builtin__", "set"},
    {"builtins", "set"},
    {"__builtin__", "frozenset"},
    {"builtins", "frozenset"},
};

static bool lookup_dtype(const NamedDType *table, size_t n, const char *name, DType *out) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(table[i].name, name) == 0) {
            *out = table[i].dtype;
            return true;
        }
    return false;
}

bool pickle_global_lookup(const char *module, const char *name, PickleGlobalRole *role,
                          DType *dtype, bool *dtype_known) {
    *dtype = DTYPE_U8;
    *dtype_known = false;
    if (strcmp(module, "collections") == 0 && strcmp(name, "OrderedDict") == 0) {
        *role = GLOBAL_ORDERED_DICT;
        return true;
    }
    if (strcmp(module, "torch._utils") == 0) {
        if (strcmp(name, "_rebuild_tensor") == 0 || strcmp(name, "_rebuild_tensor_v2") == 0) {
            *role = GLOBAL_REBUILD_TENSOR;
            return true;
        }
        if (strcmp(name, "_rebuild_parameter") == 0 ||
            strcmp(name, "_rebuild_parameter_with_state") == 0) {
            *role = GLOBAL_REBUILD_PARAMETER;
            return true;
        }
        return false;
    }
    if (strcmp(module, "torch._tensor") == 0 && strcmp(name, "_rebuild_from_type_v2") == 0) {
        *role = GLOBAL_REBUILD_FROM_TYPE;
        return true;
    }
    if ((strcmp(module, "torch") == 0 || strcmp(module, "torch._tensor") == 0) &&
        strcmp(name, "Tensor") == 0) {
        *role = GLOBAL_TENSOR_CLASS;
        return true;
    }
    if (strcmp(module, "torch.nn.parameter") == 0 && strcmp(name, "Parameter") == 0) {
        *role = GLOBAL_TENSOR_CLASS;
        return true;
    }
    bool torch_module = strcmp(module, "torch") == 0;
    if (torch_module || strcmp(module, "torch.cuda") == 0 || strcmp(module, "torch.storage") == 0) {
        if (lookup_dtype(STORAGES, sizeof STORAGES / sizeof *STORAGES, name, dtype)) {
            *role = GLOBAL_STORAGE_CLASS;
            *dtype_known = true;
            return true;
        }
    }
    if (torch_module && strcmp(name, "Size") == 0) {
        *role = GLOBAL_SIZE;
        return true;
    }
    if (torch_module) {
        *role = GLOBAL_DTYPE;
        if (lookup_dtype(DTYPES, sizeof DTYPES / sizeof *DTYPES, name, dtype)) {
            *dtype_known = true;
            return true;
        }
        for (size_t i = 0; i < sizeof OTHER_DTYPES / sizeof *OTHER_DTYPES; i++)
            if (strcmp(OTHER_DTYPES[i], name) == 0)
                return true;
        return false;
    }
    for (size_t i = 0; i < sizeof INERT / sizeof *INERT; i++)
        if (strcmp(INERT[i][0], module) == 0 && strcmp(INERT[i][1], name) == 0) {
            *role = GLOBAL_INERT;
            return true;
        }
    return false;
}
