/* The key map's engine: pattern rules, version detection, and the two directions of renaming
 * (the per-component module lists come from keymap_unet.c, keymap_vae.c, keymap_clip.c). */
#define _POSIX_C_SOURCE 200809L
#include "models/keymap.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/keymap_internal.h"

const char *model_component_name(ModelComponent c) {
    switch (c) {
    case COMPONENT_UNET:
        return "unet";
    case COMPONENT_VAE:
        return "vae";
    case COMPONENT_TEXT_ENCODER:
        return "text_encoder";
    default:
        return "unknown";
    }
}

const char *sd_version_name(SdVersion v) {
    switch (v) {
    case SD_VERSION_1:
        return "SD1.x";
    case SD_VERSION_2:
        return "SD2.x";
    default:
        return "unknown";
    }
}

const char *keymap_ldm_prefix(ModelComponent c, SdVersion version) {
    switch (c) {
    case COMPONENT_UNET:
        return "model.diffusion_model.";
    case COMPONENT_VAE:
        return "first_stage_model.";
    case COMPONENT_TEXT_ENCODER:
        return version == SD_VERSION_2 ? "cond_stage_model.model."
                                       : "cond_stage_model.transformer.";
    default:
        return "";
    }
}

/* ---- modules and rules ---- */

static int modules_push(KeyModuleList *list, const char *ldm, const char *canon, bool ignore_all,
                        const KeyRule *rules, size_t rule_count, Error *err) {
    if (strlen(ldm) >= KEYMAP_PREFIX_MAX || strlen(canon) >= KEYMAP_PREFIX_MAX)
        return error_set(err, "key map: module prefix '%s' too long", ldm);
    if (list->count == list->capacity) {
        size_t cap = list->capacity ? list->capacity * 2 : 32;
        KeyModule *items = realloc(list->items, cap * sizeof *items);
        if (!items)
            return error_set(err, "out of memory (key map modules)");
        list->items = items;
        list->capacity = cap;
    }
    KeyModule *m = &list->items[list->count++];
    memset(m, 0, sizeof *m);
    strcpy(m->ldm, ldm);
    strcpy(m->canon, canon);
    m->ignore_all = ignore_all;
    m->rules = rules;
    m->rule_count = rule_count;
    return 0;
}

int key_modules_add(KeyModuleList *list, const char *ldm, const char *canon, const KeyRule *rules,
                    size_t rule_count, Error *err) {
    return modules_push(list, ldm, canon, false, rules, rule_count, err);
}

int key_modules_add_ignored(KeyModuleList *list, const char *ldm, const KeyRule *rules,
                            size_t rule_count, Error *err) {
    return modules_push(list, ldm, "", true, rules, rule_count, err);
}

void key_modules_free(KeyModuleList *list) {
    free(list->items);
    memset(list, 0, sizeof *list);
}

static bool add_capture(KeyMatch *m, const char *s, size_t n) {
    if (m->capture_count == KEYMAP_MAX_CAPTURES || n >= sizeof m->captures[0])
        return false;
    memcpy(m->captures[m->capture_count], s, n);
    m->captures[m->capture_count][n] = '\0';
    m->capture_count++;
    return true;
}

static bool pattern_match(const char *pat, const char *s, KeyMatch *m) {
    m->capture_count = 0;
    m->qkv = 0;
    for (; *pat; pat++) {
        if (*pat == '#') {
            size_t n = 0;
            while (isdigit((unsigned char)s[n]))
                n++;
            if (n == 0 || !add_capture(m, s, n))
                return false;
            s += n;
        } else if (*pat == '$') {
            size_t n = strncmp(s, "weight", 6) == 0 ? 6 : strncmp(s, "bias", 4) == 0 ? 4 : 0;
            if (n == 0 || !add_capture(m, s, n))
                return false;
            s += n;
        } else if (*pat == '@') {
            if (*s != 'q' && *s != 'k' && *s != 'v')
                return false;
            m->qkv = *s++;
        } else if (*pat == *s) {
            s++;
        } else {
            return false;
        }
    }
    return *s == '\0';
}

bool key_modules_match(const KeyModuleList *list, const char *name, bool from_canon, KeyMatch *m) {
    for (size_t i = 0; i < list->count; i++) {
        const KeyModule *mod = &list->items[i];
        if (from_canon && mod->ignore_all)
            continue;
        const char *prefix = from_canon ? mod->canon : mod->ldm;
        size_t plen = strlen(prefix);
        const char *rest = name;
        if (plen) {
            if (strncmp(name, prefix, plen) != 0 || name[plen] != '.')
                continue;
            rest = name + plen + 1;
        }
        for (size_t r = 0; r < mod->rule_count; r++) {
            const char *pat = from_canon ? mod->rules[r].canon : mod->rules[r].ldm;
            if (pat && pattern_match(pat, rest, m)) {
                m->module = mod;
                m->rule = &mod->rules[r];
                return true;
            }
        }
    }
    return false;
}

int key_match_format(const KeyMatch *m, bool canon_side, char qkv, char *out, size_t size) {
    const char *prefix = canon_side ? m->module->canon : m->module->ldm;
    const char *pat = canon_side ? m->rule->canon : m->rule->ldm;
    if (!pat || size == 0)
        return -1;
    size_t pos = 0;
    int cap = 0;
    int n = snprintf(out, size, "%s%s", prefix, *prefix ? "." : "");
    if (n < 0 || (size_t)n >= size)
        return -1;
    pos = (size_t)n;
    for (; *pat; pat++) {
        const char *piece;
        char one[2] = {0, 0};
        if (*pat == '#' || *pat == '$') {
            if (cap >= m->capture_count)
                return -1;
            piece = m->captures[cap++];
        } else if (*pat == '@') {
            one[0] = qkv ? qkv : m->qkv;
            piece = one;
        } else {
            one[0] = *pat;
            piece = one;
        }
        size_t len = strlen(piece);
        if (pos + len >= size)
            return -1;
        memcpy(out + pos, piece, len);
        pos += len;
    }
    out[pos] = '\0';
    return 0;
}

static bool starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

int keymap_max_index(const TensorSet *set, const char *prefix) {
    size_t plen = strlen(prefix);
    int best = -1;
    for (size_t i = 0; i < set->count; i++) {
        const char *name = set->items[i].name;
        if (strncmp(name, prefix, plen) != 0 || !isdigit((unsigned char)name[plen]))
            continue;
        long v = 0;
        const char *p = name + plen;
        while (isdigit((unsigned char)*p) && v < 1000000)
            v = v * 10 + (*p++ - '0');
        if ((*p == '.' || *p == '\0') && v < 1000000 && v > best)
            best = (int)v;
    }
    return best;
}

bool keymap_has_prefix(const TensorSet *set, const char *prefix) {
    for (size_t i = 0; i < set->count; i++)
        if (starts_with(set->items[i].name, prefix))
            return true;
    return false;
}

/* ---- version detection ---- */

static const NamedTensor *find_suffix(const TensorSet *set, const char *prefix,
                                      const char *suffix) {
    size_t slen = strlen(suffix);
    for (size_t i = 0; i < set->count; i++) {
        const char *name = set->items[i].name;
        size_t len = strlen(name);
        if (starts_with(name, prefix) && len >= slen && strcmp(name + len - slen, suffix) == 0)
            return &set->items[i];
    }
    return NULL;
}

int keymap_detect_ldm_version(const TensorSet *ldm, SdVersion *out, Error *err) {
    *out = SD_VERSION_UNKNOWN;
    if (keymap_has_prefix(ldm, "conditioner.embedders."))
        return error_set(err,
                         "this is an SDXL checkpoint (keys 'conditioner.embedders.*'): SDXL is "
                         "not supported; use a Stable Diffusion 1.x or 2.x model");
    if (!keymap_has_prefix(ldm, "model.diffusion_model.")) {
        const char *first = ldm->count ? ldm->items[0].name : "(none)";
        const char *hint = "";
        if (keymap_has_prefix(ldm, "lora_") || keymap_has_prefix(ldm, "lora."))
            hint = " (it looks like a LoRA)";
        else if (keymap_has_prefix(ldm, "down_blocks.") || keymap_has_prefix(ldm, "encoder."))
            hint = " (it looks like one component of a diffusers folder: give the folder)";
        return error_set(err,
                         "no UNet weights: no key starts with 'model.diffusion_model.' (%zu "
                         "keys, first '%s'), so this is not a Stable Diffusion checkpoint in the "
                         "LDM layout%s",
                         ldm->count, first, hint);
    }
    bool sd1 = keymap_has_prefix(ldm, "cond_stage_model.transformer.");
    bool sd2 = keymap_has_prefix(ldm, "cond_stage_model.model.");
    if (sd1 && sd2)
        return error_set(err, "the checkpoint holds both a CLIP ViT-L text encoder "
                              "('cond_stage_model.transformer.*', SD1) and an OpenCLIP one "
                              "('cond_stage_model.model.*', SD2): cannot tell which to use");
    const NamedTensor *to_k = find_suffix(ldm, "model.diffusion_model.", ".attn2.to_k.weight");
    int64_t context = to_k && to_k->ndim == 2 ? to_k->shape[1] : -1;
    const NamedTensor *tok = NULL;
    if (sd1) {
        tok = tensor_set_find(ldm, "cond_stage_model.transformer.text_model.embeddings."
                                   "token_embedding.weight");
        if (!tok)
            tok = tensor_set_find(ldm, "cond_stage_model.transformer.embeddings."
                                       "token_embedding.weight");
    } else if (sd2) {
        tok = tensor_set_find(ldm, "cond_stage_model.model.token_embedding.weight");
    }
    int64_t width = tok && tok->ndim == 2 ? tok->shape[1] : -1;
    if (sd1 || sd2) {
        if (context > 0 && width > 0 && context != width)
            return error_set(err,
                             "the UNet's cross-attention context width is %lld ('%s') but the "
                             "%s text encoder is %lld wide: the checkpoint mixes parts of "
                             "different models",
                             (long long)context, to_k->name, sd1 ? "CLIP ViT-L" : "OpenCLIP",
                             (long long)width);
        *out = sd1 ? SD_VERSION_1 : SD_VERSION_2;
        return 0;
    }
    /* No text encoder in the file: the context width of real models still tells. */
    if (context == 768) {
        *out = SD_VERSION_1;
        return 0;
    }
    if (context == 1024) {
        *out = SD_VERSION_2;
        return 0;
    }
    return error_set(err,
                     "cannot tell SD1.x from SD2.x: no text encoder weights "
                     "('cond_stage_model.*') and a cross-attention width of %lld (SD1.x: 768, "
                     "SD2.x: 1024)",
                     (long long)context);
}

/* ---- report ---- */

void keymap_report_free(KeymapReport *r) {
    if (!r)
        return;
    for (size_t i = 0; i < r->unexpected_count; i++)
        free(r->unexpected[i]);
    free(r->unexpected);
    memset(r, 0, sizeof *r);
}

static int report_unexpected(KeymapReport *r, const char *name, Error *err) {
    char **list = realloc(r->unexpected, (r->unexpected_count + 1) * sizeof *list);
    if (!list)
        return error_set(err, "out of memory (key map report)");
    r->unexpected = list;
    list[r->unexpected_count] = strdup(name);
    if (!list[r->unexpected_count])
        return error_set(err, "out of memory (key map report)");
    r->unexpected_count++;
    return 0;
}

/* Keys outside the three components that training-time LDM code saves and inference never
 * needs: the EMA copy, the DDPM noise-schedule buffers, the VAE's training loss. */
static bool ldm_key_ignorable(const char *name) {
    static const char *const prefixes[] = {"model_ema.", "first_stage_model.loss."};
    static const char *const names[] = {
        "betas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod",
        "sqrt_recipm1_alphas_cumprod",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
        "logvar",
        "lvlb_weights",
    };
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (starts_with(name, prefixes[i]))
            return true;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    return false;
}

/* ---- LDM -> canonical ---- */

static int build_ldm_modules(const TensorSet *ldm, ModelComponent c, SdVersion version,
                             KeyModuleList *mods, Error *err) {
    const char *prefix = keymap_ldm_prefix(c, version);
    switch (c) {
    case COMPONENT_UNET:
        return keymap_unet_modules_from_ldm(ldm, prefix, mods, err);
    case COMPONENT_VAE:
        return keymap_vae_modules_from_ldm(ldm, prefix, mods, err);
    default:
        return keymap_clip_modules_from_ldm(ldm, version, prefix, mods, err);
    }
}

/* Adds the canonical entry (or entries) for one matched LDM tensor. */
static int emit_canonical(const NamedTensor *t, const KeyMatch *m, TensorSet *out, Error *err) {
    char name[256];
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    int ndim = t->ndim;
    if (m->rule->flags & RULE_SPLIT_QKV) {
        if (ndim < 1 || shape[0] % 3 != 0)
            return error_set(err,
                             "tensor '%s': a fused q/k/v projection needs a first dimension "
                             "divisible by 3, got %lld",
                             t->name, ndim ? (long long)shape[0] : 0LL);
        shape[0] /= 3;
        size_t part = t->nbytes / 3;
        static const char qkv[3] = {'q', 'k', 'v'};
        for (int i = 0; i < 3; i++) {
            if (key_match_format(m, true, qkv[i], name, sizeof name) != 0)
                return error_set(err, "tensor '%s': canonical name too long", t->name);
            const void *data = t->data ? (const char *)t->data + (size_t)i * part : NULL;
            if (tensor_set_add(out, name, t->dtype, ndim, shape, data, err) != 0)
                return error_prefix(err, "LDM key '%s': ", t->name);
        }
        return 0;
    }
    if (m->rule->flags & RULE_CONV1X1_AS_LINEAR) {
        bool is_1x1 = (ndim == 4 && shape[2] == 1 && shape[3] == 1) || (ndim == 3 && shape[2] == 1);
        if (is_1x1)
            ndim = 2;
        else if (ndim != 2 && ndim != 1)
            return error_set(err,
                             "tensor '%s': expected a 1x1 convolution or linear weight, got "
                             "%d dimensions",
                             t->name, ndim);
    }
    if (key_match_format(m, true, 0, name, sizeof name) != 0)
        return error_set(err, "tensor '%s': canonical name too long", t->name);
    if (tensor_set_find(out, name))
        return error_set(err,
                         "LDM key '%s' maps to '%s', which another key already gave (the "
                         "checkpoint holds the same weight under two names)",
                         t->name, name);
    return tensor_set_add(out, name, t->dtype, ndim, shape, t->data, err);
}

static int map_component_to_canonical(const TensorSet *ldm, const char *prefix,
                                      const KeyModuleList *mods, TensorSet *out, bool *claimed,
                                      KeymapReport *report, Error *err) {
    size_t plen = strlen(prefix);
    for (size_t i = 0; i < ldm->count; i++) {
        const NamedTensor *t = &ldm->items[i];
        if (claimed[i] || strncmp(t->name, prefix, plen) != 0)
            continue;
        claimed[i] = true;
        KeyMatch m;
        if (!key_modules_match(mods, t->name + plen, false, &m)) {
            if (ldm_key_ignorable(t->name)) {
                report->ignored_count++;
                continue;
            }
            if (report_unexpected(report, t->name, err) != 0)
                return -1;
            continue;
        }
        if (m.module->ignore_all || (m.rule->flags & RULE_IGNORE)) {
            report->ignored_count++;
            continue;
        }
        if (emit_canonical(t, &m, out, err) != 0)
            return -1;
    }
    return 0;
}

int keymap_ldm_to_diffusers(const TensorSet *ldm, SdVersion version, TensorSet out[COMPONENT_COUNT],
                            KeymapReport *report, Error *err) {
    for (int c = 0; c < COMPONENT_COUNT; c++)
        tensor_set_init(&out[c]);
    KeymapReport local;
    memset(&local, 0, sizeof local);
    if (report)
        memset(report, 0, sizeof *report);
    KeymapReport *rep = report ? report : &local;
    if (version != SD_VERSION_1 && version != SD_VERSION_2)
        return error_set(err, "key map: unknown Stable Diffusion version");
    bool *claimed = calloc(ldm->count ? ldm->count : 1, sizeof *claimed);
    if (!claimed)
        return error_set(err, "out of memory (key map)");
    int rc = 0;
    for (int c = 0; c < COMPONENT_COUNT && rc == 0; c++) {
        KeyModuleList mods = {0};
        rc = build_ldm_modules(ldm, (ModelComponent)c, version, &mods, err);
        if (rc == 0)
            rc = map_component_to_canonical(ldm, keymap_ldm_prefix((ModelComponent)c, version),
                                            &mods, &out[c], claimed, rep, err);
        key_modules_free(&mods);
    }
    for (size_t i = 0; i < ldm->count && rc == 0; i++) {
        if (claimed[i])
            continue;
        if (ldm_key_ignorable(ldm->items[i].name))
            rep->ignored_count++;
        else
            rc = report_unexpected(rep, ldm->items[i].name, err);
    }
    free(claimed);
    keymap_report_free(&local);
    if (rc != 0) {
        for (int c = 0; c < COMPONENT_COUNT; c++)
            tensor_set_free(&out[c]);
        keymap_report_free(report);
    }
    return rc;
}

int keymap_ldm_vae_to_diffusers(const TensorSet *ldm, const char *prefix, TensorSet *out,
                                KeymapReport *report, Error *err) {
    tensor_set_init(out);
    memset(report, 0, sizeof *report);
    bool *claimed = calloc(ldm->count ? ldm->count : 1, sizeof *claimed);
    if (!claimed)
        return error_set(err, "out of memory (key map)");
    KeyModuleList mods = {0};
    int rc = keymap_vae_modules_from_ldm(ldm, prefix, &mods, err);
    if (rc == 0)
        rc = map_component_to_canonical(ldm, prefix, &mods, out, claimed, report, err);
    key_modules_free(&mods);
    /* the rest of a whole checkpoint (UNet, text encoder) is simply not the VAE: counted */
    for (size_t i = 0; i < ldm->count && rc == 0; i++)
        if (!claimed[i])
            report->ignored_count++;
    free(claimed);
    if (rc != 0) {
        tensor_set_free(out);
        keymap_report_free(report);
    }
    return rc;
}

/* ---- canonical -> LDM ---- */

static int build_canon_modules(const TensorSet *set, ModelComponent c, SdVersion version,
                               KeyModuleList *mods, Error *err) {
    switch (c) {
    case COMPONENT_UNET:
        return keymap_unet_modules_from_canon(set, mods, err);
    case COMPONENT_VAE:
        return keymap_vae_modules_from_canon(set, mods, err);
    default:
        return keymap_clip_modules_from_canon(set, version, mods, err);
    }
}

/* q, k and v of one attention become one [3C, ...] in_proj, in new bytes `ldm` owns. */
static int fuse_qkv(const TensorSet *in, const NamedTensor *q, const KeyMatch *m,
                    const char *ldm_name, TensorSet *ldm, Error *err) {
    const NamedTensor *parts[3] = {q, NULL, NULL};
    char name[256];
    for (int i = 1; i < 3; i++) {
        if (key_match_format(m, true, i == 1 ? 'k' : 'v', name, sizeof name) != 0)
            return error_set(err, "tensor '%s': name too long", q->name);
        parts[i] = tensor_set_find(in, name);
        if (!parts[i])
            return error_set(err, "text encoder: '%s' has no partner '%s' to fuse into in_proj",
                             q->name, name);
        bool same = parts[i]->dtype == q->dtype && parts[i]->ndim == q->ndim;
        for (int d = 0; same && d < q->ndim; d++)
            same = parts[i]->shape[d] == q->shape[d];
        if (!same)
            return error_set(err,
                             "text encoder: '%s' and '%s' differ in shape or dtype, cannot "
                             "fuse them into in_proj",
                             q->name, name);
    }
    if (q->ndim < 1)
        return error_set(err, "text encoder: '%s' is a scalar, cannot fuse", q->name);
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, q->shape, sizeof shape);
    shape[0] *= 3;
    if (tensor_set_add(ldm, ldm_name, q->dtype, q->ndim, shape, NULL, err) != 0)
        return -1;
    char *bytes = tensor_set_alloc(ldm, q->nbytes * 3, err);
    if (!bytes)
        return -1;
    for (int i = 0; i < 3; i++)
        if (q->nbytes)
            memcpy(bytes + (size_t)i * q->nbytes, parts[i]->data, q->nbytes);
    ldm->items[ldm->count - 1].data = bytes;
    return 0;
}

static int emit_ldm(const TensorSet *in, const NamedTensor *t, const KeyMatch *m,
                    const char *prefix, TensorSet *ldm, Error *err) {
    char rel[256], name[320];
    if (key_match_format(m, false, 0, rel, sizeof rel) != 0)
        return error_set(err, "tensor '%s': LDM name too long", t->name);
    snprintf(name, sizeof name, "%s%s", prefix, rel);
    if (m->rule->flags & RULE_SPLIT_QKV)
        return m->qkv == 'q' ? fuse_qkv(in, t, m, name, ldm, err) : 0;
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    int ndim = t->ndim;
    if ((m->rule->flags & RULE_CONV1X1_AS_LINEAR) && ndim == 2) {
        shape[2] = shape[3] = 1;
        ndim = 4;
    }
    return tensor_set_add(ldm, name, t->dtype, ndim, shape, t->data, err);
}

/* SD2 files hold one more OpenCLIP resblock than the text encoder uses; writing the last
 * layer again under the next index keeps the file's shape what LDM tools expect, and reading
 * it back drops that copy. */
static int add_unused_last_resblock(TensorSet *ldm, Error *err) {
    const char *prefix = "cond_stage_model.model.transformer.resblocks.";
    int last = keymap_max_index(ldm, prefix);
    if (last < 0)
        return 0;
    char from[96], to[96];
    snprintf(from, sizeof from, "%s%d.", prefix, last);
    snprintf(to, sizeof to, "%s%d.", prefix, last + 1);
    size_t n = ldm->count, flen = strlen(from);
    for (size_t i = 0; i < n; i++) {
        NamedTensor t = ldm->items[i];
        if (strncmp(t.name, from, flen) != 0)
            continue;
        char name[320];
        snprintf(name, sizeof name, "%s%s", to, t.name + flen);
        if (tensor_set_add(ldm, name, t.dtype, t.ndim, t.shape, t.data, err) != 0)
            return -1;
    }
    return 0;
}

int keymap_diffusers_to_ldm(const TensorSet in[COMPONENT_COUNT], SdVersion version, TensorSet *ldm,
                            Error *err) {
    tensor_set_init(ldm);
    if (version != SD_VERSION_1 && version != SD_VERSION_2)
        return error_set(err, "key map: unknown Stable Diffusion version");
    int rc = 0;
    for (int c = 0; c < COMPONENT_COUNT && rc == 0; c++) {
        const TensorSet *set = &in[c];
        const char *prefix = keymap_ldm_prefix((ModelComponent)c, version);
        KeyModuleList mods = {0};
        rc = build_canon_modules(set, (ModelComponent)c, version, &mods, err);
        for (size_t i = 0; i < set->count && rc == 0; i++) {
            const NamedTensor *t = &set->items[i];
            KeyMatch m;
            if (!key_modules_match(&mods, t->name, true, &m))
                rc = error_set(err,
                               "%s tensor '%s' has no name in the LDM layout (the key map "
                               "does not know it)",
                               model_component_name((ModelComponent)c), t->name);
            else if (!(m.rule->flags & RULE_IGNORE))
                rc = emit_ldm(set, t, &m, prefix, ldm, err);
        }
        key_modules_free(&mods);
    }
    if (rc == 0 && version == SD_VERSION_2)
        rc = add_unused_last_resblock(ldm, err);
    if (rc != 0)
        tensor_set_free(ldm);
    return rc;
}
