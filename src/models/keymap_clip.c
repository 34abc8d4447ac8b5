/* Text encoder names. SD1 stores transformers' CLIPTextModel under
 * `cond_stage_model.transformer.` (older files without the `text_model.` level). SD2 stores
 * OpenCLIP under `cond_stage_model.model.`: `transformer.resblocks.I` with a fused attention
 * in_proj, which becomes transformers' `text_model.encoder.layers.I` with q/k/v_proj.
 *
 * SD2 uses the penultimate layer's output, so diffusers' text encoder has one layer fewer than
 * the file's resblocks (23 of 24); the last resblock is dropped here (and counted as ignored),
 * whatever the depth, so tiny test models follow the same rule as real ones. */
#include <stdio.h>

#include "models/keymap_internal.h"

/* Below `cond_stage_model.transformer.text_model` / `text_model`. */
static const KeyRule CLIP_HF[] = {
    {"embeddings.token_embedding.$", "embeddings.token_embedding.$", 0},
    {"embeddings.position_embedding.$", "embeddings.position_embedding.$", 0},
    {"embeddings.position_ids", "embeddings.position_ids", RULE_IGNORE},
    {"encoder.layers.#.self_attn.q_proj.$", "encoder.layers.#.self_attn.q_proj.$", 0},
    {"encoder.layers.#.self_attn.k_proj.$", "encoder.layers.#.self_attn.k_proj.$", 0},
    {"encoder.layers.#.self_attn.v_proj.$", "encoder.layers.#.self_attn.v_proj.$", 0},
    {"encoder.layers.#.self_attn.out_proj.$", "encoder.layers.#.self_attn.out_proj.$", 0},
    {"encoder.layers.#.layer_norm1.$", "encoder.layers.#.layer_norm1.$", 0},
    {"encoder.layers.#.layer_norm2.$", "encoder.layers.#.layer_norm2.$", 0},
    {"encoder.layers.#.mlp.fc1.$", "encoder.layers.#.mlp.fc1.$", 0},
    {"encoder.layers.#.mlp.fc2.$", "encoder.layers.#.mlp.fc2.$", 0},
    {"final_layer_norm.$", "final_layer_norm.$", 0},
};

/* Below `cond_stage_model.model` / `text_model`. The projection to the joint image-text space,
 * the logit scale and the causal mask buffer belong to CLIP training, not to SD. */
static const KeyRule OPENCLIP_TOP[] = {
    {"token_embedding.$", "embeddings.token_embedding.$", 0},
    {"positional_embedding", "embeddings.position_embedding.weight", 0},
    {"ln_final.$", "final_layer_norm.$", 0},
    {"text_projection", NULL, RULE_IGNORE},
    {"text_projection.weight", NULL, RULE_IGNORE},
    {"logit_scale", NULL, RULE_IGNORE},
    {"attn_mask", NULL, RULE_IGNORE},
    {NULL, "embeddings.position_ids", RULE_IGNORE},
};

/* Below `transformer.resblocks.I` / `text_model.encoder.layers.I`. */
static const KeyRule OPENCLIP_BLOCK[] = {
    {"ln_1.$", "layer_norm1.$", 0},
    {"ln_2.$", "layer_norm2.$", 0},
    {"attn.in_proj_$", "self_attn.@_proj.$", RULE_SPLIT_QKV},
    {"attn.out_proj.$", "self_attn.out_proj.$", 0},
    {"mlp.c_fc.$", "mlp.fc1.$", 0},
    {"mlp.c_proj.$", "mlp.fc2.$", 0},
};

#define N_RULES(a) (sizeof(a) / sizeof((a)[0]))

static int sd1_modules(KeyModuleList *mods, Error *err) {
    /* The first module wins in both directions, so we always write `text_model.`. */
    return key_modules_add(mods, "text_model", "text_model", CLIP_HF, N_RULES(CLIP_HF), err) ||
                   key_modules_add(mods, "", "text_model", CLIP_HF, N_RULES(CLIP_HF), err)
               ? -1
               : 0;
}

static int sd2_modules(int layers, bool drop_last, KeyModuleList *mods, Error *err) {
    if (key_modules_add(mods, "", "text_model", OPENCLIP_TOP, N_RULES(OPENCLIP_TOP), err))
        return -1;
    for (int i = 0; i < layers; i++) {
        char ldm[KEYMAP_PREFIX_MAX], canon[KEYMAP_PREFIX_MAX];
        snprintf(ldm, sizeof ldm, "transformer.resblocks.%d", i);
        snprintf(canon, sizeof canon, "text_model.encoder.layers.%d", i);
        int rc =
            drop_last && i == layers - 1
                ? key_modules_add_ignored(mods, ldm, OPENCLIP_BLOCK, N_RULES(OPENCLIP_BLOCK), err)
                : key_modules_add(mods, ldm, canon, OPENCLIP_BLOCK, N_RULES(OPENCLIP_BLOCK), err);
        if (rc != 0)
            return -1;
    }
    return 0;
}

int keymap_clip_modules_from_ldm(const TensorSet *ldm, SdVersion version, const char *prefix,
                                 KeyModuleList *mods, Error *err) {
    if (version != SD_VERSION_2)
        return sd1_modules(mods, err);
    char p[128];
    snprintf(p, sizeof p, "%stransformer.resblocks.", prefix);
    int resblocks = keymap_max_index(ldm, p) + 1;
    /* A single resblock is kept: dropping it would leave no encoder at all. A real-size
     * (1024-wide) encoder with 23 resblocks was written without the unused 24th (diffusers'
     * own conversion script does that): all 23 are used. */
    snprintf(p, sizeof p, "%stoken_embedding.weight", prefix);
    const NamedTensor *tok = tensor_set_find(ldm, p);
    bool real_size_without_last = tok && tok->ndim == 2 && tok->shape[1] == 1024 && resblocks == 23;
    return sd2_modules(resblocks, resblocks > 1 && !real_size_without_last, mods, err);
}

int keymap_clip_modules_from_canon(const TensorSet *text, SdVersion version, KeyModuleList *mods,
                                   Error *err) {
    if (version != SD_VERSION_2)
        return sd1_modules(mods, err);
    int layers = keymap_max_index(text, "text_model.encoder.layers.") + 1;
    return sd2_modules(layers, false, mods, err);
}
