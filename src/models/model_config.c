#define _POSIX_C_SOURCE 200809L
#include "models/model_config.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "formats/yaml_doc.h"

static void add_note(ModelConfig *cfg, const char *note) {
    size_t len = strlen(cfg->notes);
    snprintf(cfg->notes + len, sizeof cfg->notes - len, "%s%s", len ? "; " : "", note);
}

/* ---- what the weights determine ---- */

static const NamedTensor *find_fmt(const TensorSet *set, const char *fmt, int a, int b) {
    char name[256];
    snprintf(name, sizeof name, fmt, a, b);
    return tensor_set_find(set, name);
}

/* How many consecutive indices n = 0, 1, ... make `fmt` (with `outer` as its first %d and n as
 * its second) name a tensor. */
static int count_indexed(const TensorSet *set, const char *fmt, int outer) {
    int n = 0;
    while (n < 1000 && find_fmt(set, fmt, outer, n))
        n++;
    return n;
}

static int count_text_layers(const TensorSet *set) {
    int n = 0;
    char name[128];
    for (;; n++) {
        snprintf(name, sizeof name, "text_model.encoder.layers.%d.self_attn.q_proj.weight", n);
        if (n >= 1000 || !tensor_set_find(set, name))
            return n;
    }
}

static int need(const TensorSet *set, const char *component, const char *name, int ndim,
                const NamedTensor **out, Error *err) {
    *out = tensor_set_find(set, name);
    if (!*out)
        return error_set(err, "%s weights: missing tensor '%s'", component, name);
    if ((*out)->ndim != ndim)
        return error_set(err, "%s weights: tensor '%s' has %d dimensions, expected %d", component,
                         name, (*out)->ndim, ndim);
    return 0;
}

static int infer_clip(const TensorSet *set, ClipConfig *c, Error *err) {
    const NamedTensor *tok, *pos, *fc1;
    if (need(set, "text encoder", "text_model.embeddings.token_embedding.weight", 2, &tok, err) ||
        need(set, "text encoder", "text_model.embeddings.position_embedding.weight", 2, &pos,
             err) ||
        need(set, "text encoder", "text_model.encoder.layers.0.mlp.fc1.weight", 2, &fc1, err))
        return -1;
    c->vocab_size = (int)tok->shape[0];
    c->hidden_size = (int)tok->shape[1];
    c->max_positions = (int)pos->shape[0];
    c->intermediate_size = (int)fc1->shape[0];
    c->num_layers = count_text_layers(set);
    return 0;
}

static int infer_unet(const TensorSet *set, UnetConfig *u, Error *err) {
    const NamedTensor *conv_in, *conv_out;
    if (need(set, "UNet", "conv_in.weight", 4, &conv_in, err) ||
        need(set, "UNet", "conv_out.weight", 4, &conv_out, err))
        return -1;
    u->in_channels = (int)conv_in->shape[1];
    u->out_channels = (int)conv_out->shape[0];
    u->num_levels = 0;
    const NamedTensor *t;
    while (u->num_levels < UNET_MAX_LEVELS &&
           (t = find_fmt(set, "down_blocks.%d.resnets.0.conv1.weight", u->num_levels, 0))) {
        u->block_out_channels[u->num_levels] = (int)t->shape[0];
        u->level_has_attention[u->num_levels] =
            find_fmt(set, "down_blocks.%d.attentions.0.proj_in.weight", u->num_levels, 0) != NULL;
        u->num_levels++;
    }
    if (u->num_levels == 0)
        return error_set(err, "UNet weights: no down_blocks.0.resnets.0.conv1.weight");
    u->layers_per_block = count_indexed(set, "down_blocks.%d.resnets.%d.conv1.weight", 0);
    u->mid_has_attention = tensor_set_find(set, "mid_block.attentions.0.proj_in.weight") != NULL;
    for (int i = 0; i < u->num_levels; i++) {
        if (!u->level_has_attention[i])
            continue;
        u->transformer_depth = count_indexed(
            set, "down_blocks.%d.attentions.0.transformer_blocks.%d.attn1.to_q.weight", i);
        const NamedTensor *k = find_fmt(
            set, "down_blocks.%d.attentions.0.transformer_blocks.0.attn2.to_k.weight", i, 0);
        const NamedTensor *proj = find_fmt(set, "down_blocks.%d.attentions.0.proj_in.weight", i, 0);
        if (!k || k->ndim != 2)
            return error_set(err, "UNet weights: level %d has attention but no attn2.to_k weight",
                             i);
        u->cross_attention_dim = (int)k->shape[1];
        u->use_linear_projection = proj->ndim == 2;
        break;
    }
    return 0;
}

static int infer_vae(const TensorSet *set, VaeConfig *v, Error *err) {
    const NamedTensor *conv_in, *conv_out, *post;
    if (need(set, "VAE", "encoder.conv_in.weight", 4, &conv_in, err) ||
        need(set, "VAE", "decoder.conv_out.weight", 4, &conv_out, err) ||
        need(set, "VAE", "post_quant_conv.weight", 4, &post, err))
        return -1;
    v->in_channels = (int)conv_in->shape[1];
    v->out_channels = (int)conv_out->shape[0];
    v->latent_channels = (int)post->shape[0];
    v->num_levels = 0;
    const NamedTensor *t;
    while (v->num_levels < UNET_MAX_LEVELS &&
           (t = find_fmt(set, "encoder.down_blocks.%d.resnets.0.conv1.weight", v->num_levels, 0)))
        v->block_out_channels[v->num_levels++] = (int)t->shape[0];
    if (v->num_levels == 0)
        return error_set(err, "VAE weights: no encoder.down_blocks.0.resnets.0.conv1.weight");
    v->layers_per_block = count_indexed(set, "encoder.down_blocks.%d.resnets.%d.conv1.weight", 0);
    return 0;
}

int model_config_infer_from_weights(const TensorSet components[COMPONENT_COUNT], SdVersion version,
                                    ModelConfig *cfg, Error *err) {
    memset(cfg, 0, sizeof *cfg);
    cfg->version = version;
    cfg->clip.layer_norm_eps = 1e-5f;
    cfg->unet.resnet_norm_eps = 1e-5f;
    cfg->unet.transformer_norm_eps = 1e-6f;
    cfg->unet.layer_norm_eps = 1e-5f;
    cfg->unet.flip_sin_to_cos = true;
    /* What diffusers' single-file loader gives SD2 checkpoints (a diffusers folder's config.json
     * overrides it). Only matters for half-precision compute: sdti computes in fp32. */
    cfg->unet.upcast_attention = version == SD_VERSION_2;
    cfg->vae.norm_eps = 1e-6f;
    cfg->clip.activation = version == SD_VERSION_2 ? CLIP_ACT_GELU : CLIP_ACT_QUICK_GELU;
    if (infer_clip(&components[COMPONENT_TEXT_ENCODER], &cfg->clip, err) ||
        infer_unet(&components[COMPONENT_UNET], &cfg->unet, err) ||
        infer_vae(&components[COMPONENT_VAE], &cfg->vae, err))
        return -1;
    cfg->inpainting = cfg->unet.in_channels == 9;
    return 0;
}

/* ---- diffusers config files ---- */

static cJSON *read_json(const char *dir, const char *rel, Error *err) {
    char *path = path_join(dir, rel);
    char *text = NULL;
    size_t size = 0;
    cJSON *json = NULL;
    if (!path) {
        error_set(err, "out of memory");
        return NULL;
    }
    if (!file_exists(path)) {
        free(path);
        return NULL; /* absent is fine: the weights decide */
    }
    if (file_read_all(path, &text, &size, err) == 0) {
        json = cJSON_ParseWithLength(text, size);
        if (!json || !cJSON_IsObject(json)) {
            const char *at = cJSON_GetErrorPtr();
            error_set(err, "%s: invalid JSON%s%.20s%s", path, at ? " near '" : "", at ? at : "",
                      at ? "'" : "");
            cJSON_Delete(json);
            json = NULL;
        }
    }
    free(text);
    free(path);
    return json;
}

/* Reads an integer field; a field of the wrong type is an error naming the file. */
static int json_int(const cJSON *obj, const char *file, const char *key, int *out, Error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item || cJSON_IsNull(item))
        return 0;
    if (!cJSON_IsNumber(item) || item->valuedouble != (double)(int)item->valuedouble)
        return error_set(err, "%s: \"%s\" must be an integer", file, key);
    *out = item->valueint;
    return 0;
}

static int json_float(const cJSON *obj, const char *file, const char *key, float *out, Error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item || cJSON_IsNull(item))
        return 0;
    if (!cJSON_IsNumber(item))
        return error_set(err, "%s: \"%s\" must be a number", file, key);
    *out = (float)item->valuedouble;
    return 0;
}

static int json_bool(const cJSON *obj, const char *file, const char *key, bool *out, Error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item || cJSON_IsNull(item))
        return 0;
    if (!cJSON_IsBool(item))
        return error_set(err, "%s: \"%s\" must be true or false", file, key);
    *out = cJSON_IsTrue(item);
    return 0;
}

/* An int, or a list of ints (one per level), as diffusers allows for head counts. */
static int json_per_level(const cJSON *obj, const char *file, const char *key, int levels, int *out,
                          bool *found, Error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    *found = false;
    if (!item || cJSON_IsNull(item))
        return 0;
    if (cJSON_IsNumber(item)) {
        for (int i = 0; i < levels; i++)
            out[i] = item->valueint;
    } else if (cJSON_IsArray(item) && cJSON_GetArraySize(item) == levels) {
        for (int i = 0; i < levels; i++) {
            const cJSON *e = cJSON_GetArrayItem(item, i);
            if (!cJSON_IsNumber(e))
                return error_set(err, "%s: \"%s\"[%d] must be an integer", file, key, i);
            out[i] = e->valueint;
        }
    } else {
        return error_set(err, "%s: \"%s\" must be an integer or a list of %d integers", file, key,
                         levels);
    }
    *found = true;
    return 0;
}

static int check_channels(const cJSON *obj, const char *file, const int *channels, int levels,
                          Error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, "block_out_channels");
    if (!item)
        return 0;
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != levels)
        return error_set(err,
                         "%s: block_out_channels has %d entries but the weights have %d levels",
                         file, cJSON_GetArraySize(item), levels);
    for (int i = 0; i < levels; i++) {
        const cJSON *e = cJSON_GetArrayItem(item, i);
        if (!cJSON_IsNumber(e) || e->valueint != channels[i])
            return error_set(err, "%s: block_out_channels[%d] disagrees with the weights (%d)",
                             file, i, channels[i]);
    }
    return 0;
}

static int read_unet_json(const char *dir, ModelConfig *cfg, Error *err) {
    cJSON *j = read_json(dir, "unet/config.json", err);
    if (!j)
        return err && err->message[0] ? -1 : 0;
    const char *f = "unet/config.json";
    UnetConfig *u = &cfg->unet;
    bool found = false, found_heads = false;
    int rc = check_channels(j, f, u->block_out_channels, u->num_levels, err);
    rc = rc ? rc
            : json_per_level(j, f, "num_attention_heads", u->num_levels, u->heads, &found_heads,
                             err);
    /* diffusers' SD configs put the head COUNT in attention_head_dim (a naming slip it keeps for
     * compatibility), used when num_attention_heads is null. */
    if (!rc && !found_heads)
        rc = json_per_level(j, f, "attention_head_dim", u->num_levels, u->heads, &found, err);
    rc = rc ? rc : json_bool(j, f, "upcast_attention", &u->upcast_attention, err);
    rc = rc ? rc : json_int(j, f, "norm_num_groups", &u->norm_num_groups, err);
    rc = rc ? rc : json_float(j, f, "norm_eps", &u->resnet_norm_eps, err);
    rc = rc ? rc : json_bool(j, f, "flip_sin_to_cos", &u->flip_sin_to_cos, err);
    rc = rc ? rc : json_int(j, f, "freq_shift", &u->freq_shift, err);
    cJSON_Delete(j);
    return rc;
}

static int read_text_json(const char *dir, ModelConfig *cfg, Error *err) {
    cJSON *j = read_json(dir, "text_encoder/config.json", err);
    if (!j)
        return err && err->message[0] ? -1 : 0;
    const char *f = "text_encoder/config.json";
    ClipConfig *c = &cfg->clip;
    int layers = c->num_layers, hidden = c->hidden_size;
    int rc = json_int(j, f, "num_attention_heads", &c->num_heads, err);
    rc = rc ? rc : json_int(j, f, "num_hidden_layers", &layers, err);
    rc = rc ? rc : json_int(j, f, "hidden_size", &hidden, err);
    rc = rc ? rc : json_float(j, f, "layer_norm_eps", &c->layer_norm_eps, err);
    if (!rc && (layers != c->num_layers || hidden != c->hidden_size))
        rc = error_set(err, "%s: says %d layers of width %d, the weights have %d of width %d", f,
                       layers, hidden, c->num_layers, c->hidden_size);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "hidden_act");
    if (!rc && cJSON_IsString(act)) {
        if (strcmp(act->valuestring, "quick_gelu") == 0)
            c->activation = CLIP_ACT_QUICK_GELU;
        else if (strcmp(act->valuestring, "gelu") == 0)
            c->activation = CLIP_ACT_GELU;
        else
            rc = error_set(err, "%s: hidden_act '%s' is not supported (quick_gelu or gelu)", f,
                           act->valuestring);
    }
    cJSON_Delete(j);
    return rc;
}

static int read_vae_json(const char *dir, ModelConfig *cfg, Error *err) {
    cJSON *j = read_json(dir, "vae/config.json", err);
    if (!j)
        return err && err->message[0] ? -1 : 0;
    const char *f = "vae/config.json";
    int rc = check_channels(j, f, cfg->vae.block_out_channels, cfg->vae.num_levels, err);
    rc = rc ? rc : json_int(j, f, "norm_num_groups", &cfg->vae.norm_num_groups, err);
    rc = rc ? rc : json_float(j, f, "scaling_factor", &cfg->vae.scaling_factor, err);
    cJSON_Delete(j);
    return rc;
}

static int read_scheduler_json(const char *dir, ModelConfig *cfg, Error *err) {
    cJSON *j = read_json(dir, "scheduler/scheduler_config.json", err);
    if (!j)
        return err && err->message[0] ? -1 : 0;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "prediction_type");
    int rc = 0;
    if (cJSON_IsString(p)) {
        if (strcmp(p->valuestring, "v_prediction") == 0)
            cfg->prediction = PREDICTION_V;
        else if (strcmp(p->valuestring, "epsilon") == 0)
            cfg->prediction = PREDICTION_EPSILON;
        else
            rc = error_set(err,
                           "scheduler/scheduler_config.json: prediction_type '%s' is not "
                           "supported (epsilon or v_prediction)",
                           p->valuestring);
        cfg->prediction_known = rc == 0;
    }
    cJSON_Delete(j);
    return rc;
}

int model_config_read_diffusers(const char *dir, ModelConfig *cfg, Error *err) {
    error_clear(err);
    if (read_unet_json(dir, cfg, err) || read_text_json(dir, cfg, err) ||
        read_vae_json(dir, cfg, err) || read_scheduler_json(dir, cfg, err))
        return error_prefix(err, "%s/", dir);
    return 0;
}

/* ---- A1111-style LDM yaml ---- */

int model_config_read_ldm_yaml(const char *path, ModelConfig *cfg, Error *err) {
    YamlDoc *doc;
    if (yaml_doc_load(path, &doc, err) != 0)
        return -1;
    long num_heads = 0, head_channels = 0, context = 0, heads = 0, depth = 0;
    bool has_heads = false, has_channels = false, has_context = false, has_text_heads = false;
    bool linear = false, has_linear = false, has_depth = false;
    int rc = 0;
    const char *p = "model.params.unet_config.params.";
    char k1[160], k2[160], k3[160], k4[160], k5[160];
    snprintf(k1, sizeof k1, "%snum_heads", p);
    snprintf(k2, sizeof k2, "%snum_head_channels", p);
    snprintf(k3, sizeof k3, "%scontext_dim", p);
    snprintf(k4, sizeof k4, "%stransformer_depth", p);
    snprintf(k5, sizeof k5, "%suse_linear_in_transformer", p);
    rc = rc ? rc : yaml_doc_int(doc, k1, &num_heads, &has_heads, err);
    rc = rc ? rc : yaml_doc_int(doc, k2, &head_channels, &has_channels, err);
    rc = rc ? rc : yaml_doc_int(doc, k3, &context, &has_context, err);
    rc = rc ? rc : yaml_doc_int(doc, k4, &depth, &has_depth, err);
    rc = rc ? rc : yaml_doc_bool(doc, k5, &linear, &has_linear, err);
    rc = rc ? rc
            : yaml_doc_int(doc, "model.params.cond_stage_config.params.heads", &heads,
                           &has_text_heads, err);
    /* Not in Stability's yaml files (whose models all use 32 groups), but honoured when present
     * so that small test models with fewer channels can be described. */
    long unet_groups = 0, vae_groups = 0;
    bool has_unet_groups = false, has_vae_groups = false;
    snprintf(k1, sizeof k1, "%snorm_num_groups", p);
    rc = rc ? rc : yaml_doc_int(doc, k1, &unet_groups, &has_unet_groups, err);
    rc = rc ? rc
            : yaml_doc_int(doc, "model.params.first_stage_config.params.ddconfig.norm_num_groups",
                           &vae_groups, &has_vae_groups, err);
    if (rc == 0 && ((has_unet_groups && unet_groups <= 0) || (has_vae_groups && vae_groups <= 0)))
        rc = error_set(err, "%s: norm_num_groups must be a positive integer", path);
    if (rc == 0) {
        UnetConfig *u = &cfg->unet;
        if (has_unet_groups)
            u->norm_num_groups = (int)unet_groups;
        if (has_vae_groups)
            cfg->vae.norm_num_groups = (int)vae_groups;
        if (has_channels && head_channels > 0) {
            for (int i = 0; i < u->num_levels; i++)
                u->heads[i] = u->block_out_channels[i] / (int)head_channels;
        } else if (has_heads && num_heads > 0) {
            for (int i = 0; i < u->num_levels; i++)
                u->heads[i] = (int)num_heads;
        }
        if (has_context && context != u->cross_attention_dim)
            rc = error_set(err,
                           "%s: context_dim %ld disagrees with the weights' cross-attention "
                           "width %d",
                           path, context, u->cross_attention_dim);
        if (!rc && has_linear && linear != u->use_linear_projection)
            rc = error_set(err, "%s: use_linear_in_transformer: %s disagrees with the weights",
                           path, linear ? "true" : "false");
        if (!rc && has_depth && depth != u->transformer_depth && u->transformer_depth > 0)
            rc = error_set(err, "%s: transformer_depth %ld disagrees with the weights (%d)", path,
                           depth, u->transformer_depth);
        if (has_text_heads)
            cfg->clip.num_heads = (int)heads;
        const char *param = yaml_doc_scalar(doc, "model.params.parameterization");
        cfg->prediction = param && strcmp(param, "v") == 0 ? PREDICTION_V : PREDICTION_EPSILON;
        cfg->prediction_known = true;
        const char *scale = yaml_doc_scalar(doc, "model.params.scale_factor");
        if (scale)
            cfg->vae.scaling_factor = strtof(scale, NULL);
    }
    yaml_doc_free(doc);
    return rc;
}

/* ---- reference defaults ---- */

int model_config_apply_defaults(ModelConfig *cfg, const char *source, Error *err) {
    UnetConfig *u = &cfg->unet;
    bool v2 = cfg->version == SD_VERSION_2;
    if (u->heads[0] == 0) {
        /* SD1 uses 8 heads at every level; SD2 uses heads of 64 channels. */
        for (int i = 0; i < u->num_levels; i++) {
            if (v2 && u->block_out_channels[i] % 64 != 0)
                return error_set(err,
                                 "%s: cannot tell the UNet's attention heads (channels %d are "
                                 "not SD2's 64 per head): put the model's .yaml beside it or "
                                 "use a diffusers folder",
                                 source, u->block_out_channels[i]);
            u->heads[i] = v2 ? u->block_out_channels[i] / 64 : 8;
        }
        add_note(cfg, v2 ? "UNet heads: SD2 default (64 channels per head)"
                         : "UNet heads: SD1 default (8)");
    }
    if (cfg->clip.num_heads == 0) {
        if (cfg->clip.hidden_size % 64 != 0)
            return error_set(err,
                             "%s: cannot tell the text encoder's attention heads (width %d is "
                             "not a multiple of 64): put the model's .yaml (with "
                             "cond_stage_config.params.heads) beside it or use a diffusers "
                             "folder",
                             source, cfg->clip.hidden_size);
        cfg->clip.num_heads = cfg->clip.hidden_size / 64;
        add_note(cfg, "text heads: width / 64");
    }
    if (u->norm_num_groups == 0)
        u->norm_num_groups = 32;
    if (cfg->vae.norm_num_groups == 0)
        cfg->vae.norm_num_groups = 32;
    if (cfg->vae.scaling_factor == 0)
        cfg->vae.scaling_factor = 0.18215f;
    for (int i = 0; i < u->num_levels; i++) {
        if (u->heads[i] <= 0 || u->block_out_channels[i] % u->heads[i] != 0)
            return error_set(err, "%s: UNet level %d: %d heads do not divide %d channels", source,
                             i, u->heads[i], u->block_out_channels[i]);
        if (u->block_out_channels[i] % u->norm_num_groups != 0)
            return error_set(err, "%s: UNet level %d: %d channels are not divisible into %d groups",
                             source, i, u->block_out_channels[i], u->norm_num_groups);
    }
    if (cfg->clip.hidden_size % cfg->clip.num_heads != 0)
        return error_set(err, "%s: text encoder: %d heads do not divide width %d", source,
                         cfg->clip.num_heads, cfg->clip.hidden_size);
    return 0;
}
