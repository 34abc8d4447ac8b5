/* Reading TI embedding files of every SD1/SD2 layout into an Embedding. The layouts and the
 * order of the checks follow A1111's EmbeddingDatabase.load_from_file
 * (modules/textual_inversion/textual_inversion.py) and kohya's TextualInversionTrainer
 * .load_weights (train_textual_inversion.py); writers are in embedding_write.c. */
#define _POSIX_C_SOURCE 200809L
#include "text/embedding_file.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/file_util.h"
#include "formats/pickle.h"
#include "formats/safetensors.h"
#include "formats/torch_file.h"

void embedding_init(Embedding *e) {
    memset(e, 0, sizeof *e);
}

void embedding_free(Embedding *e) {
    free(e->name);
    free(e->key);
    free(e->data);
    free(e->stored_name);
    free(e->sd_checkpoint);
    free(e->sd_checkpoint_name);
    for (size_t i = 0; i < e->meta_count; i++) {
        free(e->meta[i].key);
        free(e->meta[i].value);
    }
    free(e->meta);
    embedding_init(e);
}

const char *embedding_format_name(EmbeddingFormat format) {
    switch (format) {
    case EMBEDDING_KOHYA_SAFETENSORS:
        return "kohya .safetensors ({\"emb_params\": tensor})";
    case EMBEDDING_KOHYA_PT:
        return "kohya .pt (torch.save {\"emb_params\": tensor})";
    case EMBEDDING_A1111_PT:
        return "A1111 .pt (torch.save, string_to_param)";
    case EMBEDDING_DIFFUSERS_BIN:
        return "diffusers learned_embeds .bin (torch.save {token: tensor})";
    case EMBEDDING_DIFFUSERS_SAFETENSORS:
        return "single-tensor .safetensors ({token: tensor}, diffusers / A1111)";
    default:
        return "unknown";
    }
}

int embedding_set_meta(Embedding *e, const char *key, const char *value, Error *err) {
    for (size_t i = 0; i < e->meta_count; i++)
        if (strcmp(e->meta[i].key, key) == 0) {
            char *v = strdup(value);
            if (!v)
                return error_set(err, "out of memory");
            free(e->meta[i].value);
            e->meta[i].value = v;
            return 0;
        }
    EmbeddingMeta *grown = realloc(e->meta, (e->meta_count + 1) * sizeof *grown);
    if (!grown)
        return error_set(err, "out of memory");
    e->meta = grown;
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return error_set(err, "out of memory");
    }
    e->meta[e->meta_count].key = k;
    e->meta[e->meta_count].value = v;
    e->meta_count++;
    return 0;
}

const char *embedding_get_meta(const Embedding *e, const char *key) {
    for (size_t i = 0; i < e->meta_count; i++)
        if (strcmp(e->meta[i].key, key) == 0)
            return e->meta[i].value;
    return NULL;
}

/* The file stem, as A1111 names an embedding (os.path.splitext(filename)[0]). */
static char *file_stem(const char *path) {
    const char *base = path_basename(path);
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    return strndup(base, n);
}

/* Fills shape, dtype and float data from one stored tensor. */
static int take_tensor(Embedding *e, const char *key, const NamedTensor *t, Error *err) {
    char shape[128];
    tensor_shape_string(t, shape, sizeof shape);
    if (t->dtype != DTYPE_F32 && t->dtype != DTYPE_F16 && t->dtype != DTYPE_BF16 &&
        t->dtype != DTYPE_F64)
        return error_set(err, "tensor '%s' is %s; an embedding is float32, float16 or bfloat16",
                         key, dtype_display_name(t->dtype));
    if (t->ndim == 1) {
        e->num_vectors = 1;
        e->one_dim = true;
        if (t->shape[0] < 1 || t->shape[0] > EMBEDDING_MAX_DIM)
            return error_set(err, "tensor '%s' has shape %s; expected [dim] or [vectors, dim]", key,
                             shape);
        e->dim = (int)t->shape[0];
    } else if (t->ndim == 2) {
        if (t->shape[0] < 1)
            return error_set(err, "tensor '%s' has shape %s: no vectors", key, shape);
        if (t->shape[0] > EMBEDDING_MAX_VECTORS || t->shape[1] < 1 ||
            t->shape[1] > EMBEDDING_MAX_DIM)
            return error_set(err,
                             "tensor '%s' has shape %s; expected [vectors, dim] with at "
                             "most %d vectors of width 1..%d",
                             key, shape, EMBEDDING_MAX_VECTORS, EMBEDDING_MAX_DIM);
        e->num_vectors = (int)t->shape[0];
        e->dim = (int)t->shape[1];
    } else {
        return error_set(err, "tensor '%s' has shape %s; expected [dim] or [vectors, dim]", key,
                         shape);
    }
    e->dtype = t->dtype;
    size_t n = (size_t)e->num_vectors * (size_t)e->dim;
    if (!(e->key = strdup(key)) || !(e->data = malloc(n * sizeof(float))))
        return error_set(err, "out of memory");
    if (tensor_to_f32(t, e->data, err) != 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(e->data[i]))
            return error_set(err,
                             "vector %zu, element %zu of '%s' is %s: the embedding is broken "
                             "(a diverged training run?)",
                             i / (size_t)e->dim, i % (size_t)e->dim, key,
                             isnan(e->data[i]) ? "NaN" : "infinite");
    return 0;
}

static int sdxl_error(Error *err) {
    return error_set(err, "an SDXL embedding (clip_l/clip_g): SDXL is not supported; sdti trains "
                          "and uses SD1.x/SD2.x embeddings");
}

/* keys: the first `shown` of `total` names. */
static int list_keys_error(const char *what, char **keys, size_t shown, size_t total, Error *err) {
    char list[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < shown && used + 8 < sizeof list; i++) {
        int w = snprintf(list + used, sizeof list - used, "%s'%.60s'", i ? ", " : "", keys[i]);
        if (w < 0)
            break;
        used += (size_t)w < sizeof list - used ? (size_t)w : sizeof list - used - 1;
    }
    return error_set(err,
                     "%s %zu tensors (%s); an embedding file holds one (A1111: \"embedding "
                     "file has multiple terms in it\")",
                     what, total, list);
}

static int load_safetensors(const char *path, const void *data, size_t size, Embedding *e,
                            Error *err) {
    TensorSet set;
    tensor_set_init(&set);
    int rc = -1;
    if (safetensors_parse(path, data, size, &set, err) != 0)
        return -1;
    if (tensor_set_find(&set, "clip_l") || tensor_set_find(&set, "clip_g")) {
        sdxl_error(err);
        goto done;
    }
    if (set.count == 0) {
        error_set(err, "the file holds no tensors; expected one embedding tensor "
                       "(kohya: \"emb_params\")");
        goto done;
    }
    if (set.count > 1) {
        char *keys[8];
        size_t n = set.count < 8 ? set.count : 8;
        for (size_t i = 0; i < n; i++)
            keys[i] = set.items[i].name;
        list_keys_error("the file holds", keys, n, set.count, err);
        goto done;
    }
    const NamedTensor *t = &set.items[0];
    e->format = strcmp(t->name, "emb_params") == 0 ? EMBEDDING_KOHYA_SAFETENSORS
                                                   : EMBEDDING_DIFFUSERS_SAFETENSORS;
    if (take_tensor(e, t->name, t, err) != 0)
        goto done;
    for (size_t i = 0; i < set.meta_count; i++)
        if (embedding_set_meta(e, set.meta[i].key, set.meta[i].value, err) != 0)
            goto done;
    rc = 0;
done:
    tensor_set_free(&set);
    return rc;
}

static char *pickle_string_copy(const PickleValue *v) {
    return v && v->kind == PICKLE_STR ? strndup(v->data, v->len) : NULL;
}

/* A1111's string_to_param: a dict, or (files from torch 1.11 and older A1111) a
 * torch.nn.ParameterDict whose state holds the terms in `_parameters`. */
static const PickleValue *param_terms(const PickleValue *v) {
    if (v && v->kind == PICKLE_OBJECT && v->state) {
        const PickleValue *state = v->state;
        if (state->kind == PICKLE_TUPLE && state->count > 0)
            state = state->items[0];
        const PickleValue *params =
            state->kind == PICKLE_DICT ? pickle_dict_get(state, "_parameters") : NULL;
        if (params)
            return params;
    }
    return v;
}

static int take_pickle_tensor(Embedding *e, const char *key, const PickleValue *v,
                              const TensorSet *tensors, Error *err) {
    if (!v || v->kind != PICKLE_TENSOR)
        return error_set(err,
                         "'%s' is a %s, not a tensor (kohya: \"weight file does not contains "
                         "Tensor\")",
                         key, pickle_kind_name(v));
    const NamedTensor *t = v->tensor.name ? tensor_set_find(tensors, v->tensor.name) : NULL;
    if (!t)
        return error_set(err, "'%s': tensor data missing", key);
    return take_tensor(e, key, t, err);
}

static char *key_text(const PickleValue *k) {
    if (k->kind == PICKLE_STR)
        return strndup(k->data, k->len);
    char buf[48];
    if (k->kind == PICKLE_INT)
        snprintf(buf, sizeof buf, "%lld", (long long)k->integer);
    else
        snprintf(buf, sizeof buf, "<%s>", pickle_kind_name(k));
    return strdup(buf);
}

static int load_torch_root(const PickleValue *root, const TensorSet *tensors, Embedding *e,
                           Error *err) {
    if (!root || root->kind != PICKLE_DICT)
        return error_set(err,
                         "the file holds a %s, not a dict (kohya: \"weight file is not "
                         "dict\")",
                         pickle_kind_name(root));
    const PickleValue *terms = pickle_dict_get(root, "string_to_param");
    if (terms) {
        terms = param_terms(terms);
        if (terms->kind != PICKLE_DICT)
            return error_set(err, "string_to_param is a %s, not a dict of tensors",
                             pickle_kind_name(terms));
        if (terms->count != 1) {
            char *keys[8] = {0};
            size_t n = terms->count < 8 ? terms->count : 8;
            for (size_t i = 0; i < n; i++)
                keys[i] = key_text(terms->keys[i]);
            if (terms->count == 0)
                error_set(err, "string_to_param is empty: no embedding in the file");
            else
                list_keys_error("string_to_param holds", keys, n, terms->count, err);
            for (size_t i = 0; i < n; i++)
                free(keys[i]);
            return -1;
        }
        char *key = key_text(terms->keys[0]);
        if (!key)
            return error_set(err, "out of memory");
        char label[128];
        snprintf(label, sizeof label, "string_to_param.%s", key);
        free(key);
        e->format = EMBEDDING_A1111_PT;
        if (take_pickle_tensor(e, label, terms->items[0], tensors, err) != 0)
            return -1;
        free(e->key);
        e->key = key_text(terms->keys[0]);
        const PickleValue *step = pickle_dict_get(root, "step");
        if (step && step->kind == PICKLE_INT && !step->big_integer) {
            e->has_step = true;
            e->step = step->integer;
        }
        e->stored_name = pickle_string_copy(pickle_dict_get(root, "name"));
        e->sd_checkpoint = pickle_string_copy(pickle_dict_get(root, "sd_checkpoint"));
        e->sd_checkpoint_name = pickle_string_copy(pickle_dict_get(root, "sd_checkpoint_name"));
        if (!e->key)
            return error_set(err, "out of memory");
        return 0;
    }
    if (pickle_dict_get(root, "clip_l") || pickle_dict_get(root, "clip_g"))
        return sdxl_error(err);
    if (root->count == 0)
        return error_set(err, "the file holds an empty dict: no embedding");
    if (root->items[0]->kind != PICKLE_TENSOR || root->keys[0]->kind != PICKLE_STR) {
        char *key = key_text(root->keys[0]);
        error_set(err,
                  "not an embedding: no 'string_to_param' (A1111), and the first entry "
                  "('%.60s': %s) is not a tensor (kohya / diffusers)",
                  key ? key : "?", pickle_kind_name(root->items[0]));
        free(key);
        return -1;
    }
    if (root->count != 1) {
        char *keys[8] = {0};
        size_t n = root->count < 8 ? root->count : 8;
        for (size_t i = 0; i < n; i++)
            keys[i] = key_text(root->keys[i]);
        list_keys_error("the file holds", keys, n, root->count, err);
        for (size_t i = 0; i < n; i++)
            free(keys[i]);
        return -1;
    }
    char *key = key_text(root->keys[0]);
    if (!key)
        return error_set(err, "out of memory");
    e->format = strcmp(key, "emb_params") == 0 ? EMBEDDING_KOHYA_PT : EMBEDDING_DIFFUSERS_BIN;
    int rc = take_pickle_tensor(e, key, root->items[0], tensors, err);
    free(key);
    return rc;
}

/* safetensors: 8-byte little-endian header length, then JSON starting with '{'. */
static bool looks_like_safetensors(const unsigned char *p, size_t size) {
    if (size < 9)
        return false;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | p[i];
    return n >= 2 && n <= size - 8 && p[8] == '{';
}

int embedding_load_buffer(const char *path, const void *data, size_t size, Embedding *e,
                          Error *err) {
    embedding_init(e);
    const unsigned char *p = data;
    int rc;
    if (!(e->name = file_stem(path))) {
        rc = error_set(err, "out of memory");
    } else if (size == 0) {
        rc = error_set(err, "the file is empty");
    } else if (looks_like_safetensors(p, size)) {
        rc = load_safetensors(path, data, size, e, err);
    } else if (size >= 2 && (memcmp(p, "PK", 2) == 0 || p[0] == 0x80)) {
        TensorSet tensors;
        PickleDoc doc;
        tensor_set_init(&tensors);
        pickle_doc_init(&doc);
        rc = torch_file_load_buffer(path, data, size, &tensors, &doc, err);
        if (rc == 0) {
            e->torch_zip = memcmp(p, "PK", 2) == 0;
            rc = load_torch_root(doc.root, &tensors, e, err);
            pickle_doc_free(&doc);
        }
        tensor_set_free(&tensors);
    } else {
        rc = error_set(err, "neither a safetensors file nor a torch file (.pt/.bin/.ckpt); "
                            "the file may be truncated or not an embedding");
    }
    if (rc != 0) {
        /* the format readers name the file themselves */
        if (strncmp(err->message, path, strlen(path)) != 0)
            error_prefix(err, "%s: ", path);
        embedding_free(e);
    }
    return rc;
}

int embedding_load(const char *path, Embedding *e, Error *err) {
    char *data;
    size_t size;
    embedding_init(e);
    struct stat st;
    if (stat(path, &st) == 0 && st.st_size > (off_t)EMBEDDING_MAX_FILE)
        return error_set(err,
                         "%s: %lld bytes is too large for an embedding (at most %u MB); is "
                         "it a model?",
                         path, (long long)st.st_size, EMBEDDING_MAX_FILE >> 20);
    if (file_read_all(path, &data, &size, err) != 0)
        return -1;
    int rc = embedding_load_buffer(path, data, size, e, err);
    free(data);
    return rc;
}

static const char *width_meaning(int width) {
    switch (width) {
    case 768:
        return "an SD1.x embedding (CLIP ViT-L, 768 wide)";
    case 1024:
        return "an SD2.x embedding (OpenCLIP ViT-H, 1024 wide)";
    case 1280:
        return "an SDXL clip_g embedding (1280 wide)";
    case 2048:
        return "an SDXL embedding (768 + 1280 wide)";
    default:
        return NULL;
    }
}

static const char *model_meaning(int width) {
    switch (width) {
    case 768:
        return "SD1.x (768 wide)";
    case 1024:
        return "SD2.x (1024 wide)";
    default:
        return NULL;
    }
}

int embedding_check_for_model(const Embedding *e, const char *path, int model_width, Error *err) {
    if (e->dim != model_width) {
        char have[96], want[64];
        const char *h = width_meaning(e->dim), *w = model_meaning(model_width);
        if (h)
            snprintf(have, sizeof have, "%s", h);
        else
            snprintf(have, sizeof have, "an embedding %d wide", e->dim);
        if (w)
            snprintf(want, sizeof want, "%s", w);
        else
            snprintf(want, sizeof want, "%d wide", model_width);
        return error_set(err,
                         "%s: this is %s; the model's text encoder is %s. Use an embedding "
                         "trained for this model's family",
                         path, have, want);
    }
    for (int v = 0; v < e->num_vectors; v++) {
        const float *row = e->data + (size_t)v * (size_t)e->dim;
        bool zero = true;
        for (int i = 0; i < e->dim && zero; i++)
            zero = row[i] == 0.0f;
        if (zero)
            return error_set(err,
                             "%s: vector %d of %d is all zeros: an untrained embedding "
                             "(A1111 makes these from an empty initialization text); it "
                             "would act as no token at all",
                             path, v, e->num_vectors);
    }
    return 0;
}
