/* VAE names: LDM's `encoder.down.I.block.J` / `decoder.up.I.block.J` / `mid.block_1` /
 * `mid.attn_1` against diffusers' AutoencoderKL `down_blocks` / `up_blocks` / `mid_block`.
 * LDM numbers the decoder's levels from the finest (up.0 runs last), diffusers in the order
 * they run, so decoder level I is up_blocks.(levels - 1 - I). LDM's attention uses 1x1
 * convolutions where diffusers uses linear layers: same numbers, [C, C, 1, 1] vs [C, C]. */
#include <stdio.h>

#include "models/keymap_internal.h"

static const KeyRule VAE_TOP[] = {
    {"encoder.conv_in.$", "encoder.conv_in.$", 0},
    {"encoder.conv_out.$", "encoder.conv_out.$", 0},
    {"encoder.norm_out.$", "encoder.conv_norm_out.$", 0},
    {"decoder.conv_in.$", "decoder.conv_in.$", 0},
    {"decoder.conv_out.$", "decoder.conv_out.$", 0},
    {"decoder.norm_out.$", "decoder.conv_norm_out.$", 0},
    {"quant_conv.$", "quant_conv.$", 0},
    {"post_quant_conv.$", "post_quant_conv.$", 0},
};

/* Below `down.I.block` / `resnets`: one resnet per number. */
static const KeyRule VAE_RESNETS[] = {
    {"#.norm1.$", "#.norm1.$", 0},
    {"#.conv1.$", "#.conv1.$", 0},
    {"#.norm2.$", "#.norm2.$", 0},
    {"#.conv2.$", "#.conv2.$", 0},
    {"#.nin_shortcut.$", "#.conv_shortcut.$", 0},
};

/* Below `mid.block_1` / `mid_block.resnets.0`. */
static const KeyRule VAE_RESNET[] = {
    {"norm1.$", "norm1.$", 0},
    {"conv1.$", "conv1.$", 0},
    {"norm2.$", "norm2.$", 0},
    {"conv2.$", "conv2.$", 0},
    {"nin_shortcut.$", "conv_shortcut.$", 0},
};

static const KeyRule VAE_ATTENTION[] = {
    {"norm.$", "group_norm.$", 0},
    {"q.$", "to_q.$", RULE_CONV1X1_AS_LINEAR},
    {"k.$", "to_k.$", RULE_CONV1X1_AS_LINEAR},
    {"v.$", "to_v.$", RULE_CONV1X1_AS_LINEAR},
    {"proj_out.$", "to_out.0.$", RULE_CONV1X1_AS_LINEAR},
};

static const KeyRule VAE_RESAMPLE[] = {{"conv.$", "conv.$", 0}};

#define N_RULES(a) (sizeof(a) / sizeof((a)[0]))

static int add2(KeyModuleList *mods, const char *ldm_fmt, int la, const char *canon_fmt, int ca,
                const KeyRule *rules, size_t n, Error *err) {
    char ldm[KEYMAP_PREFIX_MAX], canon[KEYMAP_PREFIX_MAX];
    snprintf(ldm, sizeof ldm, ldm_fmt, la);
    snprintf(canon, sizeof canon, canon_fmt, ca);
    return key_modules_add(mods, ldm, canon, rules, n, err);
}

static int modules_for_levels(int enc_levels, int dec_levels, KeyModuleList *mods, Error *err) {
    if (key_modules_add(mods, "", "", VAE_TOP, N_RULES(VAE_TOP), err))
        return -1;
    for (int i = 0; i < enc_levels; i++)
        if (add2(mods, "encoder.down.%d.block", i, "encoder.down_blocks.%d.resnets", i, VAE_RESNETS,
                 N_RULES(VAE_RESNETS), err) ||
            add2(mods, "encoder.down.%d.downsample", i, "encoder.down_blocks.%d.downsamplers.0", i,
                 VAE_RESAMPLE, N_RULES(VAE_RESAMPLE), err))
            return -1;
    for (int i = 0; i < dec_levels; i++) {
        int up = dec_levels - 1 - i;
        if (add2(mods, "decoder.up.%d.block", i, "decoder.up_blocks.%d.resnets", up, VAE_RESNETS,
                 N_RULES(VAE_RESNETS), err) ||
            add2(mods, "decoder.up.%d.upsample", i, "decoder.up_blocks.%d.upsamplers.0", up,
                 VAE_RESAMPLE, N_RULES(VAE_RESAMPLE), err))
            return -1;
    }
    static const char *const parts[] = {"encoder", "decoder"};
    for (int p = 0; p < 2; p++) {
        char ldm[KEYMAP_PREFIX_MAX], canon[KEYMAP_PREFIX_MAX];
        for (int r = 1; r <= 2; r++) {
            snprintf(ldm, sizeof ldm, "%s.mid.block_%d", parts[p], r);
            snprintf(canon, sizeof canon, "%s.mid_block.resnets.%d", parts[p], r - 1);
            if (key_modules_add(mods, ldm, canon, VAE_RESNET, N_RULES(VAE_RESNET), err))
                return -1;
        }
        snprintf(ldm, sizeof ldm, "%s.mid.attn_1", parts[p]);
        snprintf(canon, sizeof canon, "%s.mid_block.attentions.0", parts[p]);
        if (key_modules_add(mods, ldm, canon, VAE_ATTENTION, N_RULES(VAE_ATTENTION), err))
            return -1;
    }
    return 0;
}

int keymap_vae_modules_from_ldm(const TensorSet *ldm, const char *prefix, KeyModuleList *mods,
                                Error *err) {
    char p[128];
    snprintf(p, sizeof p, "%sencoder.down.", prefix);
    int enc = keymap_max_index(ldm, p) + 1;
    snprintf(p, sizeof p, "%sdecoder.up.", prefix);
    int dec = keymap_max_index(ldm, p) + 1;
    return modules_for_levels(enc, dec, mods, err);
}

int keymap_vae_modules_from_canon(const TensorSet *vae, KeyModuleList *mods, Error *err) {
    int enc = keymap_max_index(vae, "encoder.down_blocks.") + 1;
    int dec = keymap_max_index(vae, "decoder.up_blocks.") + 1;
    return modules_for_levels(enc, dec, mods, err);
}
