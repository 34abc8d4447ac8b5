/* Opening a Stable Diffusion model in any layout a kohya / A1111 user has: a single-file LDM
 * checkpoint (.safetensors / .ckpt), a diffusers folder, or a Hugging Face model id resolved
 * offline from the local cache. The result is three tensor sets with canonical (diffusers)
 * names plus the architecture config. */
#ifndef SDTI_MODELS_MODEL_FILES_H
#define SDTI_MODELS_MODEL_FILES_H

#include <stdbool.h>

#include "base/error.h"
#include "formats/tensor_set.h"
#include "models/keymap.h"
#include "models/model_config.h"

typedef enum ModelLayout {
    LAYOUT_LDM_SAFETENSORS,
    LAYOUT_LDM_CKPT,
    LAYOUT_DIFFUSERS,
} ModelLayout;

typedef struct ModelOpenOptions {
    bool v2; /* --v2 was on the command line: the weights must be SD2 (else detected) */
} ModelOpenOptions;

typedef struct ModelFiles {
    char *requested; /* what the user gave */
    char *path;      /* the file or folder actually read */
    ModelLayout layout;
    TensorSet raw; /* LDM: the whole checkpoint; owns the bytes components point at */
    TensorSet components[COMPONENT_COUNT];
    KeymapReport report; /* LDM: unexpected and ignored keys */
    ModelConfig config;
    char *yaml_path;                        /* LDM: the .yaml read beside the checkpoint, if any */
    char *tokenizer_dir;                    /* diffusers: its tokenizer/ folder, if present */
    char *component_files[COMPONENT_COUNT]; /* diffusers: the weight file (or index) read */
} ModelFiles;

int model_files_open(const char *path_or_id, const ModelOpenOptions *opts, ModelFiles *mf,
                     Error *err);
void model_files_close(ModelFiles *mf);

const char *model_layout_name(ModelLayout layout);

/* Resolves "org/name" to a snapshot folder in the Hugging Face cache. On failure the error
 * lists every folder it looked in. Returns a malloc'd path. */
int hf_cache_resolve(const char *model_id, char **out_dir, Error *err);

#endif
