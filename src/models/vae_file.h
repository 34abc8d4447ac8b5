/* A separate VAE file, kohya's --vae (library/model_util.py, load_vae): the VAE weights of a
 * single file or a diffusers folder, used in place of the model's own VAE. Accepted layouts:
 *   - a diffusers folder (config.json + diffusion_pytorch_model.safetensors / .bin), or a
 *     whole diffusers model folder, whose vae/ subfolder is then read (kohya retries with
 *     subfolder="vae");
 *   - a single .safetensors / .ckpt / .pt / .bin file holding a whole LDM checkpoint (the VAE
 *     under first_stage_model.), a VAE-only LDM state dict (encoder.down.0.block.0...,
 *     A1111's *.vae.pt / *.vae.safetensors, a "state_dict" wrapper is unwrapped), or the
 *     diffusers names (encoder.down_blocks.0.resnets.0..., the .bin kohya loads as is).
 * The architecture is not read from the file: as kohya builds the standard SD VAE, the VAE
 * must have the model's VAE shapes, and vae_load names the first weight that does not. */
#ifndef SDTI_MODELS_VAE_FILE_H
#define SDTI_MODELS_VAE_FILE_H

#include "base/error.h"
#include "formats/tensor_set.h"
#include "models/keymap.h"

typedef struct VaeFile {
    char *path;          /* the file actually read (a folder's weight file) */
    TensorSet raw;       /* LDM layouts: the file's tensors, which `vae` points into */
    TensorSet vae;       /* canonical (diffusers) names, for vae_load */
    KeymapReport report; /* LDM layouts: keys under the VAE prefix that map to nothing */
} VaeFile;

int vae_file_open(const char *path, VaeFile *vf, Error *err);
void vae_file_close(VaeFile *vf);

#endif
