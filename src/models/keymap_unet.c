/* UNet names: LDM's `input_blocks.N.M` / `middle_block.N` / `output_blocks.N.M` against
 * diffusers' `down_blocks.B.{resnets,attentions,downsamplers}.L` / `mid_block` / `up_blocks`.
 *
 * LDM numbers blocks in one flat sequence per path, so the mapping depends on the structure:
 * input block 0 is conv_in, then each level holds `layers` (resnet [+ transformer]) blocks
 * followed by a downsampler block (none after the deepest level); the output path holds
 * `layers + 1` blocks per level, the last one of each level but the outermost carrying the
 * upsampler (at sub-index 1, or 2 when the level has transformers). The numbers are read
 * from the keys, never assumed from SD1.5. */
#include <stdio.h>

#include "models/keymap_internal.h"

#define UNET_MAX_LEVELS 8

static const KeyRule UNET_TOP[] = {
    {"time_embed.0.$", "time_embedding.linear_1.$", 0},
    {"time_embed.2.$", "time_embedding.linear_2.$", 0},
    {"input_blocks.0.0.$", "conv_in.$", 0},
    {"out.0.$", "conv_norm_out.$", 0},
    {"out.2.$", "conv_out.$", 0},
};

static const KeyRule UNET_RESNET[] = {
    {"in_layers.0.$", "norm1.$", 0},          {"in_layers.2.$", "conv1.$", 0},
    {"emb_layers.1.$", "time_emb_proj.$", 0}, {"out_layers.0.$", "norm2.$", 0},
    {"out_layers.3.$", "conv2.$", 0},         {"skip_connection.$", "conv_shortcut.$", 0},
};

/* LDM's SpatialTransformer already uses diffusers' inner names; only the prefix changes. The
 * list is explicit so that anything else below a transformer is reported, not carried. */
static const KeyRule UNET_TRANSFORMER[] = {
    {"norm.$", "norm.$", 0},
    {"proj_in.$", "proj_in.$", 0},
    {"proj_out.$", "proj_out.$", 0},
    {"transformer_blocks.#.attn1.to_q.$", "transformer_blocks.#.attn1.to_q.$", 0},
    {"transformer_blocks.#.attn1.to_k.$", "transformer_blocks.#.attn1.to_k.$", 0},
    {"transformer_blocks.#.attn1.to_v.$", "transformer_blocks.#.attn1.to_v.$", 0},
    {"transformer_blocks.#.attn1.to_out.0.$", "transformer_blocks.#.attn1.to_out.0.$", 0},
    {"transformer_blocks.#.attn2.to_q.$", "transformer_blocks.#.attn2.to_q.$", 0},
    {"transformer_blocks.#.attn2.to_k.$", "transformer_blocks.#.attn2.to_k.$", 0},
    {"transformer_blocks.#.attn2.to_v.$", "transformer_blocks.#.attn2.to_v.$", 0},
    {"transformer_blocks.#.attn2.to_out.0.$", "transformer_blocks.#.attn2.to_out.0.$", 0},
    {"transformer_blocks.#.ff.net.0.proj.$", "transformer_blocks.#.ff.net.0.proj.$", 0},
    {"transformer_blocks.#.ff.net.2.$", "transformer_blocks.#.ff.net.2.$", 0},
    {"transformer_blocks.#.norm1.$", "transformer_blocks.#.norm1.$", 0},
    {"transformer_blocks.#.norm2.$", "transformer_blocks.#.norm2.$", 0},
    {"transformer_blocks.#.norm3.$", "transformer_blocks.#.norm3.$", 0},
};

static const KeyRule UNET_DOWNSAMPLE[] = {{"op.$", "conv.$", 0}};
static const KeyRule UNET_UPSAMPLE[] = {{"conv.$", "conv.$", 0}};

#define N_RULES(a) (sizeof(a) / sizeof((a)[0]))

typedef struct UnetLayout {
    int levels;
    int layers; /* resnets per level on the way down; the way up has one more */
    bool down_attn[UNET_MAX_LEVELS];
    bool up_attn[UNET_MAX_LEVELS]; /* in up-path order: 0 is the deepest level */
    bool mid_attn;
} UnetLayout;

static bool has_fmt(const TensorSet *set, const char *fmt, const char *prefix, int a, int b) {
    char p[192];
    snprintf(p, sizeof p, fmt, prefix, a, b);
    return keymap_has_prefix(set, p);
}

static int layout_from_ldm(const TensorSet *ldm, const char *prefix, UnetLayout *L, Error *err) {
    char p[192];
    snprintf(p, sizeof p, "%sinput_blocks.", prefix);
    int n_in = keymap_max_index(ldm, p) + 1;
    snprintf(p, sizeof p, "%soutput_blocks.", prefix);
    int n_out = keymap_max_index(ldm, p) + 1;
    if (n_in < 2 || n_out < 2)
        return error_set(err,
                         "UNet: %d input blocks and %d output blocks under '%s': the "
                         "checkpoint's UNet is incomplete",
                         n_in, n_out, prefix);
    int downsamplers = 0, first = -1;
    for (int i = 1; i < n_in; i++) {
        if (has_fmt(ldm, "%sinput_blocks.%d.0.op.", prefix, i, 0)) {
            downsamplers++;
            if (first < 0)
                first = i;
        }
    }
    L->levels = downsamplers + 1;
    L->layers = downsamplers ? first - 1 : n_in - 1;
    if (L->levels > UNET_MAX_LEVELS)
        return error_set(err, "UNet: %d levels (at most %d supported)", L->levels, UNET_MAX_LEVELS);
    int want_in = 1 + L->levels * L->layers + (L->levels - 1);
    int want_out = L->levels * (L->layers + 1);
    bool fits = L->layers >= 1 && n_in == want_in && n_out == want_out;
    for (int b = 0; fits && b + 1 < L->levels; b++)
        fits = has_fmt(ldm, "%sinput_blocks.%d.0.op.", prefix, (b + 1) * (L->layers + 1), 0);
    if (!fits)
        return error_set(err,
                         "UNet: the blocks do not fit together: %d input blocks with %d "
                         "downsamplers (first at input_blocks.%d) and %d output blocks; %d "
                         "levels of %d layers need %d input and %d output blocks",
                         n_in, downsamplers, first, n_out, L->levels, L->layers, want_in, want_out);
    for (int b = 0; b < L->levels; b++) {
        L->down_attn[b] = has_fmt(ldm, "%sinput_blocks.%d.1.", prefix, 1 + b * (L->layers + 1), 0);
        int o = b * (L->layers + 1);
        L->up_attn[b] = has_fmt(ldm, "%soutput_blocks.%d.1.", prefix, o, 0) &&
                        !has_fmt(ldm, "%soutput_blocks.%d.1.conv.", prefix, o, 0);
    }
    snprintf(p, sizeof p, "%smiddle_block.1.", prefix);
    L->mid_attn = keymap_has_prefix(ldm, p);
    return 0;
}

static int layout_from_canon(const TensorSet *unet, UnetLayout *L, Error *err) {
    L->levels = keymap_max_index(unet, "down_blocks.") + 1;
    L->layers = keymap_max_index(unet, "down_blocks.0.resnets.") + 1;
    int up_levels = keymap_max_index(unet, "up_blocks.") + 1;
    if (L->levels < 1 || L->layers < 1 || up_levels != L->levels)
        return error_set(err,
                         "UNet: %d down levels (%d resnets in the first) and %d up levels: "
                         "not a UNet2DConditionModel state dict",
                         L->levels, L->layers, up_levels);
    if (L->levels > UNET_MAX_LEVELS)
        return error_set(err, "UNet: %d levels (at most %d supported)", L->levels, UNET_MAX_LEVELS);
    for (int b = 0; b < L->levels; b++) {
        L->down_attn[b] = has_fmt(unet, "%sdown_blocks.%d.attentions.", "", b, 0);
        L->up_attn[b] = has_fmt(unet, "%sup_blocks.%d.attentions.", "", b, 0);
    }
    L->mid_attn = keymap_has_prefix(unet, "mid_block.attentions.");
    return 0;
}

static int add_fmt(KeyModuleList *mods, const char *ldm_fmt, int la, int lb, const char *canon_fmt,
                   int ca, int cb, const KeyRule *rules, size_t n, Error *err) {
    char ldm[KEYMAP_PREFIX_MAX], canon[KEYMAP_PREFIX_MAX];
    snprintf(ldm, sizeof ldm, ldm_fmt, la, lb);
    snprintf(canon, sizeof canon, canon_fmt, ca, cb);
    return key_modules_add(mods, ldm, canon, rules, n, err);
}

static int modules_from_layout(const UnetLayout *L, KeyModuleList *mods, Error *err) {
    int per_down = L->layers + 1; /* resnets + the downsampler block */
    int per_up = L->layers + 1;
    if (key_modules_add(mods, "", "", UNET_TOP, N_RULES(UNET_TOP), err))
        return -1;
    for (int b = 0; b < L->levels; b++) {
        for (int l = 0; l < L->layers; l++) {
            int i = 1 + b * per_down + l;
            if (add_fmt(mods, "input_blocks.%d.%d", i, 0, "down_blocks.%d.resnets.%d", b, l,
                        UNET_RESNET, N_RULES(UNET_RESNET), err) ||
                (L->down_attn[b] &&
                 add_fmt(mods, "input_blocks.%d.%d", i, 1, "down_blocks.%d.attentions.%d", b, l,
                         UNET_TRANSFORMER, N_RULES(UNET_TRANSFORMER), err)))
                return -1;
        }
        if (b + 1 < L->levels && add_fmt(mods, "input_blocks.%d.%d", 1 + b * per_down + L->layers,
                                         0, "down_blocks.%d.downsamplers.%d", b, 0, UNET_DOWNSAMPLE,
                                         N_RULES(UNET_DOWNSAMPLE), err))
            return -1;
    }
    if (key_modules_add(mods, "middle_block.0", "mid_block.resnets.0", UNET_RESNET,
                        N_RULES(UNET_RESNET), err) ||
        (L->mid_attn && key_modules_add(mods, "middle_block.1", "mid_block.attentions.0",
                                        UNET_TRANSFORMER, N_RULES(UNET_TRANSFORMER), err)) ||
        key_modules_add(mods, "middle_block.2", "mid_block.resnets.1", UNET_RESNET,
                        N_RULES(UNET_RESNET), err))
        return -1;
    for (int b = 0; b < L->levels; b++) {
        for (int l = 0; l < per_up; l++) {
            int i = b * per_up + l;
            if (add_fmt(mods, "output_blocks.%d.%d", i, 0, "up_blocks.%d.resnets.%d", b, l,
                        UNET_RESNET, N_RULES(UNET_RESNET), err) ||
                (L->up_attn[b] &&
                 add_fmt(mods, "output_blocks.%d.%d", i, 1, "up_blocks.%d.attentions.%d", b, l,
                         UNET_TRANSFORMER, N_RULES(UNET_TRANSFORMER), err)))
                return -1;
        }
        if (b + 1 < L->levels &&
            add_fmt(mods, "output_blocks.%d.%d", b * per_up + L->layers, L->up_attn[b] ? 2 : 1,
                    "up_blocks.%d.upsamplers.%d", b, 0, UNET_UPSAMPLE, N_RULES(UNET_UPSAMPLE), err))
            return -1;
    }
    return 0;
}

int keymap_unet_modules_from_ldm(const TensorSet *ldm, const char *prefix, KeyModuleList *mods,
                                 Error *err) {
    UnetLayout L = {0};
    if (layout_from_ldm(ldm, prefix, &L, err) != 0)
        return -1;
    return modules_from_layout(&L, mods, err);
}

int keymap_unet_modules_from_canon(const TensorSet *unet, KeyModuleList *mods, Error *err) {
    UnetLayout L = {0};
    if (layout_from_canon(unet, &L, err) != 0)
        return -1;
    return modules_from_layout(&L, mods, err);
}
