/* Writing embeddings as kohya, A1111 and diffusers write them, byte for byte where the tool's
 * output is reproducible (torch.save through formats/torch_file's writer, safetensors through
 * formats/safetensors' writer), plus kohya's modelspec metadata. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/file_util.h"
#include "formats/pickle.h"
#include "formats/safetensors.h"
#include "formats/torch_file.h"
#include "text/embedding_file.h"

#define TENSOR_ENTRY "embedding"

/* One tensor [N, dim] in `dtype` inside `set` under `name`; [dim] with `one_dim` (diffusers
 * concept files store a single vector that way). */
static int add_tensor(TensorSet *set, const char *name, const Embedding *e, DType dtype,
                      bool one_dim, Error *err) {
    if (dtype != DTYPE_F32 && dtype != DTYPE_F16 && dtype != DTYPE_BF16)
        return error_set(err, "embeddings are saved as float32, float16 or bfloat16, not %s",
                         dtype_display_name(dtype));
    if (!e->data || e->num_vectors < 1 || e->dim < 1)
        return error_set(err, "no embedding vectors to save");
    size_t n = (size_t)e->num_vectors * (size_t)e->dim;
    void *bytes = tensor_set_alloc(set, n * dtype_size(dtype), err);
    if (!bytes)
        return -1;
    dtype_convert_from_f32(dtype, e->data, bytes, n);
    int64_t shape[2] = {e->num_vectors, e->dim};
    if (one_dim && e->num_vectors == 1)
        return tensor_set_add(set, name, dtype, 1, shape + 1, bytes, err);
    return tensor_set_add(set, name, dtype, 2, shape, bytes, err);
}

int embedding_save_kohya_safetensors(const Embedding *e, const char *path, DType dtype,
                                     Error *err) {
    TensorSet set;
    tensor_set_init(&set);
    int rc = add_tensor(&set, "emb_params", e, dtype, false, err);
    for (size_t i = 0; rc == 0 && i < e->meta_count; i++)
        rc = tensor_set_set_meta(&set, e->meta[i].key, e->meta[i].value, err);
    if (rc == 0)
        rc = safetensors_write(path, &set, err);
    tensor_set_free(&set);
    return rc;
}

/* torch.save({key: tensor}) with a plain (non-Parameter, no-grad) tensor, in the zip records
 * torch <= 2.0 wrote, which A1111's safe unpickler accepts. */
static int save_single_torch(const Embedding *e, const char *path, const char *key, DType dtype,
                             bool one_dim, Error *err) {
    TensorSet set;
    PickleDoc doc;
    tensor_set_init(&set);
    pickle_doc_init(&doc);
    int rc = add_tensor(&set, TENSOR_ENTRY, e, dtype, one_dim, err);
    if (rc == 0) {
        PickleValue *root = pickle_new(&doc, PICKLE_DICT);
        PickleValue *t = pickle_new_tensor(&doc, TENSOR_ENTRY, false, false);
        if (!root || !t || pickle_dict_set(&doc, root, key, t) != 0)
            rc = error_set(err, "out of memory");
        else
            rc = torch_file_save_minimal(path, root, &set, err);
    }
    pickle_doc_free(&doc);
    tensor_set_free(&set);
    return rc;
}

int embedding_save_kohya_pt(const Embedding *e, const char *path, DType dtype, Error *err) {
    return save_single_torch(e, path, "emb_params", dtype, false, err);
}

static char *stem_of(const char *path) {
    const char *base = path_basename(path);
    const char *dot = strrchr(base, '.');
    return strndup(base, dot && dot != base ? (size_t)(dot - base) : strlen(base));
}

static PickleValue *str_or_none(PickleDoc *doc, const char *s) {
    return s ? pickle_new_str(doc, s) : pickle_new(doc, PICKLE_NONE);
}

int embedding_save_a1111_pt(const Embedding *e, const char *path, DType dtype, Error *err) {
    TensorSet set;
    PickleDoc doc;
    tensor_set_init(&set);
    pickle_doc_init(&doc);
    char *name = stem_of(path);
    int rc = name ? add_tensor(&set, TENSOR_ENTRY, e, dtype, false, err)
                  : error_set(err, "out of memory");
    if (rc == 0) {
        /* A1111 sets vec.requires_grad during training; create_embedding (step 0) saves a plain
         * tensor. */
        bool trained = e->has_step && e->step > 0;
        PickleValue *root = pickle_new(&doc, PICKLE_DICT);
        PickleValue *s2t = pickle_new(&doc, PICKLE_DICT);
        PickleValue *s2p = pickle_new(&doc, PICKLE_DICT);
        PickleValue *tok = pickle_new_int(&doc, 265); /* what A1111 always writes */
        PickleValue *vec = pickle_new_tensor(&doc, TENSOR_ENTRY, false, trained);
        PickleValue *step =
            e->has_step ? pickle_new_int(&doc, e->step) : pickle_new(&doc, PICKLE_NONE);
        PickleValue *nm = pickle_new_str(&doc, name);
        PickleValue *ck = str_or_none(&doc, e->sd_checkpoint);
        PickleValue *ckn = str_or_none(&doc, e->sd_checkpoint_name);
        if (!root || !s2t || !s2p || !tok || !vec || !step || !nm || !ck || !ckn ||
            pickle_dict_set(&doc, s2t, "*", tok) || pickle_dict_set(&doc, s2p, "*", vec) ||
            pickle_dict_set(&doc, root, "string_to_token", s2t) ||
            pickle_dict_set(&doc, root, "string_to_param", s2p) ||
            pickle_dict_set(&doc, root, "name", nm) || pickle_dict_set(&doc, root, "step", step) ||
            pickle_dict_set(&doc, root, "sd_checkpoint", ck) ||
            pickle_dict_set(&doc, root, "sd_checkpoint_name", ckn))
            rc = error_set(err, "out of memory");
        else
            rc = torch_file_save_minimal(path, root, &set, err);
    }
    free(name);
    pickle_doc_free(&doc);
    tensor_set_free(&set);
    return rc;
}

int embedding_save_diffusers(const Embedding *e, const char *path, const char *token, DType dtype,
                             Error *err) {
    if (!token || !token[0])
        return error_set(err, "%s: a diffusers embedding needs a token name", path);
    if (!path_has_suffix(path, ".safetensors"))
        return save_single_torch(e, path, token, dtype, e->one_dim, err);
    TensorSet set;
    tensor_set_init(&set);
    int rc = add_tensor(&set, token, e, dtype, e->one_dim, err);
    if (rc == 0)
        rc = tensor_set_set_meta(&set, "format", "pt", err);
    if (rc == 0)
        rc = safetensors_write(path, &set, err);
    tensor_set_free(&set);
    return rc;
}

/* ---- kohya's modelspec metadata ---- */

static int meta_opt(Embedding *e, const char *key, const char *value, Error *err) {
    return value ? embedding_set_meta(e, key, value, err) : 0;
}

int embedding_set_kohya_metadata(Embedding *e, const KohyaMetadataArgs *a, Error *err) {
    for (size_t i = 0; i < e->meta_count; i++) {
        free(e->meta[i].key);
        free(e->meta[i].value);
    }
    e->meta_count = 0;
    /* sai_model_spec.determine_architecture / determine_implementation (TI: always SAI's) */
    const char *arch = !a->v2                  ? "stable-diffusion-v1/textual-inversion"
                       : a->v_parameterization ? "stable-diffusion-v2-768-v/textual-inversion"
                                               : "stable-diffusion-v2-512/textual-inversion";
    /* determine_resolution: "W" -> WxW, "W,H" -> WxH; default 512 (768 for v2 + v-param) */
    char reso[64];
    long w = a->v2 && a->v_parameterization ? 768 : 512, h = w;
    if (a->resolution) {
        char *end;
        w = strtol(a->resolution, &end, 10);
        h = *end == ',' ? strtol(end + 1, &end, 10) : w;
        if (*end != '\0' || w <= 0 || h <= 0)
            return error_set(err, "resolution \"%s\": expected \"W\" or \"W,H\"", a->resolution);
    }
    snprintf(reso, sizeof reso, "%ldx%ld", w, h);
    /* build_metadata: title default "TextualInversion@<timestamp>" */
    char title[64], date[32], steps[64], layer[32];
    if (!a->title)
        snprintf(title, sizeof title, "TextualInversion@%lld", (long long)a->timestamp);
    /* datetime.fromtimestamp(int(ts)).isoformat(): local time, no microseconds */
    time_t ts = (time_t)a->timestamp;
    struct tm tm;
    if (!localtime_r(&ts, &tm) || strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        return error_set(err, "timestamp %lld cannot be formatted", (long long)a->timestamp);
    /* get_sai_model_spec: a timestep range when either end was given, 0 / 1000 filling in */
    bool has_range = a->min_timestep >= 0 || a->max_timestep >= 0;
    snprintf(steps, sizeof steps, "%ld,%ld", a->min_timestep >= 0 ? a->min_timestep : 0,
             a->max_timestep >= 0 ? a->max_timestep : 1000);
    snprintf(layer, sizeof layer, "%ld", a->clip_skip);
    /* ModelSpecMetadata.to_metadata_dict: dataclass field order, None fields dropped, then
     * the additional fields (implementation_version and the other --metadata_* options
     * get_sai_model_spec passes through optional_metadata) */
    if (embedding_set_meta(e, "modelspec.architecture", arch, err) ||
        embedding_set_meta(e, "modelspec.implementation",
                           "https://github.com/Stability-AI/generative-models", err) ||
        embedding_set_meta(e, "modelspec.title", a->title ? a->title : title, err) ||
        embedding_set_meta(e, "modelspec.resolution", reso, err) ||
        embedding_set_meta(e, "modelspec.sai_model_spec", "1.0.1", err) ||
        meta_opt(e, "modelspec.description", a->description, err) ||
        meta_opt(e, "modelspec.author", a->author, err) ||
        embedding_set_meta(e, "modelspec.date", date, err) ||
        meta_opt(e, "modelspec.license", a->license, err) ||
        meta_opt(e, "modelspec.tags", a->tags, err) ||
        meta_opt(e, "modelspec.merged_from", a->merged_from, err) ||
        embedding_set_meta(e, "modelspec.prediction_type", a->v_parameterization ? "v" : "epsilon",
                           err) ||
        (has_range && embedding_set_meta(e, "modelspec.timestep_range", steps, err)) ||
        (a->clip_skip >= 0 && embedding_set_meta(e, "modelspec.encoder_layer", layer, err)) ||
        meta_opt(e, "modelspec.usage_hint", a->usage_hint, err) ||
        meta_opt(e, "modelspec.thumbnail", a->thumbnail, err) ||
        meta_opt(e, "modelspec.trigger_phrase", a->trigger_phrase, err) ||
        meta_opt(e, "modelspec.preprocessor", a->preprocessor, err) ||
        meta_opt(e, "modelspec.is_negative_embedding", a->is_negative_embedding, err) ||
        meta_opt(e, "modelspec.implementation_version", a->implementation_version, err))
        return -1;
    return 0;
}
