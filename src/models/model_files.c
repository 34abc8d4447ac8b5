#define _POSIX_C_SOURCE 200809L
#include "models/model_files.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "formats/safetensors.h"
#include "formats/torch_file.h"

const char *model_layout_name(ModelLayout layout) {
    switch (layout) {
    case LAYOUT_LDM_SAFETENSORS:
        return "single-file LDM checkpoint (.safetensors)";
    case LAYOUT_LDM_CKPT:
        return "single-file LDM checkpoint (torch pickle .ckpt)";
    case LAYOUT_DIFFUSERS:
        return "diffusers folder";
    }
    return "?";
}

/* ---- Hugging Face cache ---- */

static bool looks_like_model_id(const char *s) {
    const char *slash = strchr(s, '/');
    if (!slash || slash == s || strchr(slash + 1, '/') || !slash[1] || s[0] == '.')
        return false;
    for (const char *p = s; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.' || *p == '/'))
            return false;
    return true;
}

static char *trimmed_file(const char *path) {
    char *text = NULL;
    size_t size = 0;
    if (file_read_all(path, &text, &size, NULL) != 0)
        return NULL;
    while (size > 0 && isspace((unsigned char)text[size - 1]))
        text[--size] = '\0';
    return text;
}

/* The snapshot a cache entry points at: refs/main, or the only snapshot there is. */
static char *snapshot_of(const char *repo_dir) {
    char *ref_path = path_join(repo_dir, "refs/main");
    char *rev = ref_path ? trimmed_file(ref_path) : NULL;
    free(ref_path);
    char *snapshots = path_join(repo_dir, "snapshots");
    char *result = NULL;
    if (rev && snapshots && !strchr(rev, '/')) {
        result = path_join(snapshots, rev);
        if (result && !file_is_dir(result)) {
            free(result);
            result = NULL;
        }
    }
    if (!result && snapshots) {
        DIR *d = opendir(snapshots);
        int count = 0;
        char *only = NULL;
        for (struct dirent *e; d && (e = readdir(d));) {
            if (e->d_name[0] == '.')
                continue;
            count++;
            free(only);
            only = path_join(snapshots, e->d_name);
        }
        if (d)
            closedir(d);
        if (count == 1)
            result = only;
        else
            free(only);
    }
    free(rev);
    free(snapshots);
    return result;
}

int hf_cache_resolve(const char *model_id, char **out_dir, Error *err) {
    *out_dir = NULL;
    /* The cache folder of "org/name" is "models--org--name". */
    char repo[512];
    size_t pos = (size_t)snprintf(repo, sizeof repo, "models--");
    for (const char *p = model_id; *p && pos + 3 < sizeof repo; p++) {
        if (*p == '/') {
            repo[pos++] = '-';
            repo[pos++] = '-';
        } else {
            repo[pos++] = *p;
        }
    }
    repo[pos] = '\0';
    const char *hub = getenv("HF_HUB_CACHE"), *home = getenv("HF_HOME");
    const char *xdg = getenv("XDG_CACHE_HOME"), *user = getenv("HOME");
    char roots[4][1024];
    int n = 0;
    if (hub && *hub)
        snprintf(roots[n++], sizeof roots[0], "%s", hub);
    if (home && *home)
        snprintf(roots[n++], sizeof roots[0], "%s/hub", home);
    if (xdg && *xdg)
        snprintf(roots[n++], sizeof roots[0], "%s/huggingface/hub", xdg);
    if (user && *user)
        snprintf(roots[n++], sizeof roots[0], "%s/.cache/huggingface/hub", user);
    char looked[2048] = "";
    for (int i = 0; i < n; i++) {
        char *dir = path_join(roots[i], repo);
        if (!dir)
            return error_set(err, "out of memory");
        size_t len = strlen(looked);
        snprintf(looked + len, sizeof looked - len, "%s%s", len ? ", " : "", dir);
        char *snap = file_is_dir(dir) ? snapshot_of(dir) : NULL;
        free(dir);
        if (snap) {
            *out_dir = snap;
            return 0;
        }
    }
    return error_set(err,
                     "'%s' is neither a file nor a folder, and the Hugging Face cache has no "
                     "downloaded snapshot of it (looked in: %s). sdti works offline: download "
                     "the model elsewhere, or give the path of a .safetensors/.ckpt file or a "
                     "diffusers folder",
                     model_id,
                     n ? looked : "no cache folder: HOME, HF_HOME and HF_HUB_CACHE unset");
}

/* ---- diffusers folders ---- */

/* Adds every tensor of `part` to `into` and moves the ownership of its bytes. */
static int merge_sets(TensorSet *into, TensorSet *part, const char *source, Error *err) {
    for (size_t i = 0; i < part->count; i++) {
        const NamedTensor *t = &part->items[i];
        if (tensor_set_add(into, t->name, t->dtype, t->ndim, t->shape, t->data, err) != 0)
            return error_prefix(err, "%s: ", source);
    }
    return tensor_set_take_backings(into, part, err);
}

static int load_weight_file(const char *path, TensorSet *set, Error *err) {
    if (path_has_suffix(path, ".safetensors"))
        return safetensors_open(path, set, err);
    return torch_file_load_state_dict(path, set, err);
}

/* A sharded checkpoint: the index's weight_map names the shard of each tensor. */
static int load_sharded(const char *dir, const char *index_path, TensorSet *set, Error *err) {
    char *text = NULL;
    size_t size = 0;
    if (file_read_all(index_path, &text, &size, err) != 0)
        return -1;
    cJSON *json = cJSON_ParseWithLength(text, size);
    free(text);
    const cJSON *map = json ? cJSON_GetObjectItemCaseSensitive(json, "weight_map") : NULL;
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(json);
        return error_set(err, "%s: not a shard index (no \"weight_map\" object)", index_path);
    }
    int rc = 0;
    /* Shards in first-seen order, each loaded once. */
    const cJSON *entry;
    cJSON_ArrayForEach(entry, map) {
        if (!cJSON_IsString(entry)) {
            rc = error_set(err, "%s: weight_map[\"%s\"] is not a file name", index_path,
                           entry->string);
            break;
        }
        if (strchr(entry->valuestring, '/') || tensor_set_find(set, entry->string))
            continue; /* loaded with an earlier shard (or a path we refuse to follow) */
        char *shard = path_join(dir, entry->valuestring);
        TensorSet part;
        tensor_set_init(&part);
        rc = shard ? load_weight_file(shard, &part, err) : error_set(err, "out of memory");
        if (rc == 0)
            rc = merge_sets(set, &part, shard, err);
        tensor_set_free(&part);
        free(shard);
        if (rc != 0)
            break;
        if (!tensor_set_find(set, entry->string)) {
            rc = error_set(err, "%s: tensor '%s' is not in its shard %s", index_path, entry->string,
                           entry->valuestring);
            break;
        }
    }
    cJSON_Delete(json);
    return rc;
}

static int load_component_dir(const char *root, ModelComponent c, ModelFiles *mf, Error *err) {
    static const char *const subdir[COMPONENT_COUNT] = {"unet", "vae", "text_encoder"};
    /* diffusers names its weights diffusion_pytorch_model.*; transformers (the text encoder)
     * uses model.safetensors / pytorch_model.bin. Plain files first, then shards, then the
     * .fp16 variant. */
    const char *st = c == COMPONENT_TEXT_ENCODER ? "model" : "diffusion_pytorch_model";
    const char *bin = c == COMPONENT_TEXT_ENCODER ? "pytorch_model" : "diffusion_pytorch_model";
    char candidates[8][96];
    snprintf(candidates[0], 96, "%s.safetensors", st);
    snprintf(candidates[1], 96, "%s.safetensors.index.json", st);
    snprintf(candidates[2], 96, "%s.fp16.safetensors", st);
    snprintf(candidates[3], 96, "%s.safetensors.index.fp16.json", st);
    snprintf(candidates[4], 96, "%s.bin", bin);
    snprintf(candidates[5], 96, "%s.bin.index.json", bin);
    snprintf(candidates[6], 96, "%s.fp16.bin", bin);
    snprintf(candidates[7], 96, "%s.bin.index.fp16.json", bin);
    char *dir = path_join(root, subdir[c]);
    if (!dir)
        return error_set(err, "out of memory");
    if (!file_is_dir(dir)) {
        error_set(err, "%s: no %s/ folder: a diffusers model needs unet/, vae/ and text_encoder/",
                  root, subdir[c]);
        free(dir);
        return -1;
    }
    int rc = 1;
    for (int i = 0; i < 8 && rc == 1; i++) {
        char *path = path_join(dir, candidates[i]);
        if (path && file_exists(path)) {
            rc = path_has_suffix(path, ".json") ? load_sharded(dir, path, &mf->components[c], err)
                                                : load_weight_file(path, &mf->components[c], err);
            mf->component_files[c] = path;
            path = NULL;
        }
        free(path);
    }
    if (rc == 1)
        rc = error_set(err,
                       "%s: no weights found (looked for %s, %s, %s, %s and their .fp16 "
                       "variants)",
                       dir, candidates[0], candidates[1], candidates[4], candidates[5]);
    free(dir);
    return rc;
}

static int open_diffusers(const char *dir, ModelFiles *mf, Error *err) {
    mf->layout = LAYOUT_DIFFUSERS;
    char *index = path_join(dir, "model_index.json");
    bool has_index = index && file_exists(index);
    free(index);
    if (!has_index)
        return error_set(err,
                         "%s: not a diffusers model folder (no model_index.json). Give a "
                         "folder written by diffusers' save_pretrained, or a single "
                         ".safetensors/.ckpt checkpoint file",
                         dir);
    for (int c = 0; c < COMPONENT_COUNT; c++)
        if (load_component_dir(dir, (ModelComponent)c, mf, err) != 0)
            return -1;
    if (model_config_infer_from_weights(mf->components, SD_VERSION_UNKNOWN, &mf->config, err) ||
        model_config_read_diffusers(dir, &mf->config, err))
        return -1;
    ModelConfig *cfg = &mf->config;
    if (cfg->unet.cross_attention_dim == 768)
        cfg->version = SD_VERSION_1;
    else if (cfg->unet.cross_attention_dim == 1024)
        cfg->version = SD_VERSION_2;
    else /* small test models: SD2's OpenCLIP uses gelu, SD1's CLIP quick_gelu */
        cfg->version = cfg->clip.activation == CLIP_ACT_GELU ? SD_VERSION_2 : SD_VERSION_1;
    char *tok = path_join(dir, "tokenizer");
    if (tok && file_is_dir(tok))
        mf->tokenizer_dir = tok;
    else
        free(tok);
    return 0;
}

/* ---- single-file checkpoints ---- */

typedef enum FileKind { FILE_SAFETENSORS, FILE_TORCH, FILE_UNKNOWN } FileKind;

/* By content, not by name: torch zips start with "PK", legacy torch pickles with the pickle
 * PROTO opcode 0x80, safetensors with an 8-byte header length followed by '{'. */
static FileKind sniff(const char *path) {
    unsigned char head[9] = {0};
    FILE *fp = fopen(path, "rb");
    size_t n = fp ? fread(head, 1, sizeof head, fp) : 0;
    if (fp)
        fclose(fp);
    /* safetensors first: its 8-byte header length can start with 0x80, a pickle's PROTO. */
    if (n == 9 && head[8] == '{')
        return FILE_SAFETENSORS;
    if (n >= 2 && head[0] == 'P' && head[1] == 'K')
        return FILE_TORCH;
    if (n >= 1 && head[0] == 0x80)
        return FILE_TORCH;
    return FILE_UNKNOWN;
}

static char *sidecar_yaml(const char *path) {
    const char *base = path_basename(path);
    const char *dot = strrchr(base, '.');
    size_t stem = dot ? (size_t)(dot - path) : strlen(path);
    char *yaml = malloc(stem + 6);
    if (!yaml)
        return NULL;
    memcpy(yaml, path, stem);
    memcpy(yaml + stem, ".yaml", 6);
    if (!file_exists(yaml)) {
        free(yaml);
        return NULL;
    }
    return yaml;
}

static int open_single_file(const char *path, ModelFiles *mf, Error *err) {
    FileKind kind = sniff(path);
    if (kind == FILE_UNKNOWN)
        return error_set(err,
                         "%s: not a safetensors file nor a torch checkpoint (unrecognised "
                         "first bytes)",
                         path);
    mf->layout = kind == FILE_SAFETENSORS ? LAYOUT_LDM_SAFETENSORS : LAYOUT_LDM_CKPT;
    int rc = kind == FILE_SAFETENSORS ? safetensors_open(path, &mf->raw, err)
                                      : torch_file_load_state_dict(path, &mf->raw, err);
    if (rc != 0)
        return -1;
    SdVersion version;
    if (keymap_detect_ldm_version(&mf->raw, &version, err) != 0 ||
        keymap_ldm_to_diffusers(&mf->raw, version, mf->components, &mf->report, err) != 0)
        return error_prefix(err, "%s: ", path);
    if (model_config_infer_from_weights(mf->components, version, &mf->config, err) != 0)
        return error_prefix(err, "%s: ", path);
    mf->yaml_path = sidecar_yaml(path);
    if (mf->yaml_path && model_config_read_ldm_yaml(mf->yaml_path, &mf->config, err) != 0)
        return -1;
    return 0;
}

int model_files_open(const char *path_or_id, const ModelOpenOptions *opts, ModelFiles *mf,
                     Error *err) {
    memset(mf, 0, sizeof *mf);
    tensor_set_init(&mf->raw);
    for (int c = 0; c < COMPONENT_COUNT; c++)
        tensor_set_init(&mf->components[c]);
    mf->requested = strdup(path_or_id);
    int rc;
    if (file_is_dir(path_or_id)) {
        mf->path = strdup(path_or_id);
        rc = open_diffusers(path_or_id, mf, err);
    } else if (file_exists(path_or_id)) {
        mf->path = strdup(path_or_id);
        rc = open_single_file(path_or_id, mf, err);
    } else if (looks_like_model_id(path_or_id)) {
        rc = hf_cache_resolve(path_or_id, &mf->path, err);
        if (rc == 0)
            rc = open_diffusers(mf->path, mf, err);
    } else {
        rc = error_set(err, "%s: no such file or folder", path_or_id);
    }
    if (rc == 0 && model_config_apply_defaults(&mf->config, mf->path, err) != 0)
        rc = -1;
    if (rc == 0 && mf->config.inpainting)
        rc = error_set(err,
                       "%s: an inpainting model (UNet in_channels 9) is not supported; use "
                       "the base model for textual inversion",
                       mf->path);
    /* Without --v2 the version is detected; with it, weights of SD1 are a contradiction. */
    if (rc == 0 && opts && opts->v2 && mf->config.version != SD_VERSION_2)
        rc = error_set(err,
                       "%s: --v2 says SD2.x, but the weights are %s (CLIP ViT-L text encoder, "
                       "cross-attention width %d): remove --v2",
                       mf->path, sd_version_name(mf->config.version),
                       mf->config.unet.cross_attention_dim);
    if (rc != 0)
        model_files_close(mf);
    return rc;
}

void model_files_close(ModelFiles *mf) {
    for (int c = 0; c < COMPONENT_COUNT; c++) {
        tensor_set_free(&mf->components[c]);
        free(mf->component_files[c]);
    }
    tensor_set_free(&mf->raw);
    keymap_report_free(&mf->report);
    free(mf->requested);
    free(mf->path);
    free(mf->yaml_path);
    free(mf->tokenizer_dir);
    memset(mf, 0, sizeof *mf);
}
