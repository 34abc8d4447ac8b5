/* Architecture hyper-parameters of the three SD components. They come from the model's own
 * config files (diffusers folder) or are inferred from the weights' shapes plus an A1111-style
 * LDM .yaml beside a single-file checkpoint; only values that neither carries fall back to the
 * SD1/SD2 reference architecture, and each such fallback is named in `notes`. */
#ifndef SDTI_MODELS_MODEL_CONFIG_H
#define SDTI_MODELS_MODEL_CONFIG_H

#include <stdbool.h>

#include "base/error.h"
#include "formats/tensor_set.h"
#include "models/keymap.h"

#define UNET_MAX_LEVELS 8

typedef enum ClipActivation { CLIP_ACT_QUICK_GELU, CLIP_ACT_GELU } ClipActivation;
typedef enum PredictionType { PREDICTION_EPSILON, PREDICTION_V } PredictionType;

typedef struct ClipConfig {
    int vocab_size;
    int hidden_size;
    int num_layers;
    int num_heads;
    int intermediate_size;
    int max_positions;
    ClipActivation activation;
    float layer_norm_eps;
} ClipConfig;

typedef struct UnetConfig {
    int in_channels, out_channels;
    int num_levels;
    int block_out_channels[UNET_MAX_LEVELS];
    int layers_per_block;
    bool level_has_attention[UNET_MAX_LEVELS]; /* down level i (up level mirrors it) */
    int heads[UNET_MAX_LEVELS];                /* attention heads per level */
    bool mid_has_attention;
    int transformer_depth;
    int cross_attention_dim;
    bool use_linear_projection;
    bool upcast_attention;
    int norm_num_groups;
    float resnet_norm_eps;      /* diffusers config norm_eps (1e-5) */
    float transformer_norm_eps; /* Transformer2DModel's GroupNorm: 1e-6 in diffusers */
    float layer_norm_eps;       /* BasicTransformerBlock LayerNorms: 1e-5 */
    bool flip_sin_to_cos;
    int freq_shift;
} UnetConfig;

typedef struct VaeConfig {
    int in_channels, out_channels, latent_channels;
    int num_levels;
    int block_out_channels[UNET_MAX_LEVELS];
    int layers_per_block;
    int norm_num_groups;
    float norm_eps; /* 1e-6 in diffusers' VAE blocks */
    float scaling_factor;
} VaeConfig;

typedef struct ModelConfig {
    SdVersion version;
    ClipConfig clip;
    UnetConfig unet;
    VaeConfig vae;
    PredictionType prediction;
    bool prediction_known; /* false: nothing in the files says; epsilon assumed */
    bool inpainting;       /* UNet in_channels 9: reported, not supported */
    char notes[1024];      /* which values were defaults rather than read */
} ModelConfig;

/* Fills what the weights determine (channels, layers, widths) from canonical-name sets. */
int model_config_infer_from_weights(const TensorSet components[COMPONENT_COUNT], SdVersion version,
                                    ModelConfig *cfg, Error *err);
/* Reads <dir>/unet/config.json, text_encoder/config.json, vae/config.json and
 * scheduler/scheduler_config.json over what the weights said. */
int model_config_read_diffusers(const char *dir, ModelConfig *cfg, Error *err);
/* Reads an LDM original config (.yaml, as A1111 keeps beside a checkpoint): UNet heads,
 * context_dim, linear projection, parameterization, and sdti's cond_stage_config.params.heads. */
int model_config_read_ldm_yaml(const char *path, ModelConfig *cfg, Error *err);
/* Fills anything still unset with the SD1/SD2 reference values, noting each one. */
/* Fills anything still unset with the SD1/SD2 reference values, noting each one; fails when
 * a value is unset and the reference rule does not fit the weights (tiny models without a
 * config). `source` names the model in the message. */
int model_config_apply_defaults(ModelConfig *cfg, const char *source, Error *err);

#endif
