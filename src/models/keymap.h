/* The key map: the only code that knows tensor names.
 *
 * Our canonical names are the diffusers ones, per component: the UNet as diffusers'
 * UNet2DConditionModel names it (`down_blocks.0.attentions.0.proj_in.weight`), the VAE as
 * AutoencoderKL (`encoder.mid_block.attentions.0.to_q.weight`), the text encoder as
 * transformers' CLIPTextModel (`text_model.encoder.layers.0.self_attn.q_proj.weight`).
 * A diffusers folder already uses them; a single-file checkpoint in the original LDM layout
 * (`model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.*`) is renamed here.
 *
 * Renaming copies no bytes: the component sets' entries point into the LDM set's data. SD2's
 * fused attention `in_proj` becomes three entries over thirds of its rows, and the VAE's
 * 1x1-convolution attention weights [C, C, 1, 1] become [C, C] entries over the same bytes.
 * The UNet's block numbering is computed from the structure found in the keys (levels, layers
 * per level, which levels have attention), so any size of model maps, not only SD1.5's. */
#ifndef SDTI_MODELS_KEYMAP_H
#define SDTI_MODELS_KEYMAP_H

#include <stddef.h>

#include "base/error.h"
#include "formats/tensor_set.h"

typedef enum SdVersion { SD_VERSION_UNKNOWN = 0, SD_VERSION_1, SD_VERSION_2 } SdVersion;

typedef enum ModelComponent {
    COMPONENT_UNET,
    COMPONENT_VAE,
    COMPONENT_TEXT_ENCODER,
    COMPONENT_COUNT
} ModelComponent;

const char *model_component_name(ModelComponent c); /* "unet", "vae", "text_encoder" */
const char *sd_version_name(SdVersion v);           /* "SD1.x", "SD2.x" */

/* SD1 vs SD2 from the keys and shapes of an LDM state dict: `cond_stage_model.transformer.*`
 * (CLIP ViT-L) is SD1, `cond_stage_model.model.*` (OpenCLIP) is SD2, and the UNet's
 * cross-attention context width must equal the text encoder's width (768 / 1024 in real
 * models). SDXL (`conditioner.embedders.*`) and a set without UNet keys are errors. */
int keymap_detect_ldm_version(const TensorSet *ldm, SdVersion *out, Error *err);

typedef struct KeymapReport {
    char **unexpected; /* LDM keys that belong to nothing we know, for the user to see */
    size_t unexpected_count;
    size_t ignored_count; /* known extras skipped: model_ema.*, DDPM schedule buffers,
                             position_ids, logit_scale, text_projection, attn_mask, the
                             last (unused) OpenCLIP resblock of SD2, ... */
} KeymapReport;
void keymap_report_free(KeymapReport *r);

/* Splits an LDM state dict into three component sets with canonical names (`out` is
 * initialised here). Entries point into `ldm`'s data: the caller keeps `ldm` alive, or moves
 * its backings with tensor_set_take_backings. `report` may be NULL. Keys that map to nothing
 * go to the report, never to an error; a structure that cannot be numbered (a UNet whose
 * block counts do not fit together) is an error. */
int keymap_ldm_to_diffusers(const TensorSet *ldm, SdVersion version, TensorSet out[COMPONENT_COUNT],
                            KeymapReport *report, Error *err);

/* The VAE alone, from an LDM state dict whose VAE keys start with `prefix`
 * ("first_stage_model." in a whole checkpoint, "" in a VAE-only file such as A1111's
 * *.vae.pt): `out` gets the canonical names (entries point into `ldm`), keys outside the
 * prefix are counted as ignored, unknown keys under it go to `report`. */
int keymap_ldm_vae_to_diffusers(const TensorSet *ldm, const char *prefix, TensorSet *out,
                                KeymapReport *report, Error *err);

/* The reverse, for writing LDM single files (`ldm` is initialised here). Entries point into
 * `in`'s data, except SD2's fused q/k/v `in_proj`, whose new bytes `ldm` owns. SD2 also gets
 * the unused last resblock back, as a copy (by reference) of the layer before it, the way
 * kohya's sd-scripts writes it, so the file loads in tools that expect it and maps back here
 * to the same layers. A canonical name this map does not know is an error. */
int keymap_diffusers_to_ldm(const TensorSet in[COMPONENT_COUNT], SdVersion version, TensorSet *ldm,
                            Error *err);

#endif
