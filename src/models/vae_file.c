#define _POSIX_C_SOURCE 200809L
/* kohya's load_vae: a folder is diffusers, a file is a state dict whose names say its
 * layout (see vae_file.h). */
#include "models/vae_file.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/file_util.h"
#include "formats/safetensors.h"
#include "formats/torch_file.h"

static const char LDM_VAE_PREFIX[] = "first_stage_model.";

/* kohya decides by the name: safetensors by its suffix, everything else through torch.load */
static int load_state_dict(const char *path, TensorSet *set, Error *err) {
    if (path_has_suffix(path, ".safetensors"))
        return safetensors_open(path, set, err);
    return torch_file_load_state_dict(path, set, err);
}

static bool has_prefix_key(const TensorSet *set, const char *prefix) {
    size_t n = strlen(prefix);
    for (size_t i = 0; i < set->count; i++)
        if (strncmp(set->items[i].name, prefix, n) == 0)
            return true;
    return false;
}

/* The weight file of a diffusers AutoencoderKL folder, NULL if it has none. */
static char *diffusers_weights(const char *dir) {
    static const char *const names[] = {
        "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
        "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *p = path_join(dir, names[i]);
        if (p && file_exists(p))
            return p;
        free(p);
    }
    return NULL;
}

static int open_folder(const char *dir, VaeFile *vf, Error *err) {
    char *weights = diffusers_weights(dir);
    if (!weights) {
        char *sub = path_join(dir, "vae");
        if (sub && file_is_dir(sub))
            weights = diffusers_weights(sub);
        free(sub);
    }
    if (!weights)
        return error_set(err,
                         "--vae %s: a folder without VAE weights (looked for "
                         "diffusion_pytorch_model.safetensors / .bin in it and in its vae/ "
                         "subfolder); give a diffusers VAE folder or a VAE file",
                         dir);
    vf->path = weights;
    if (load_state_dict(weights, &vf->vae, err) != 0)
        return error_prefix(err, "--vae %s: ", dir);
    return 0;
}

static int open_file(const char *path, VaeFile *vf, Error *err) {
    vf->path = strdup(path);
    if (!vf->path)
        return error_set(err, "out of memory");
    if (load_state_dict(path, &vf->raw, err) != 0)
        return error_prefix(err, "--vae: ");
    /* diffusers names are taken as they are (kohya: the .bin of a Hugging Face VAE) */
    if (has_prefix_key(&vf->raw, "encoder.down_blocks.") ||
        has_prefix_key(&vf->raw, "decoder.up_blocks.")) {
        TensorSet tmp = vf->vae;
        vf->vae = vf->raw;
        vf->raw = tmp;
        return 0;
    }
    /* kohya: any key under first_stage_model. makes it a whole checkpoint; otherwise every
     * key is taken as a VAE key without that prefix */
    const char *prefix = has_prefix_key(&vf->raw, LDM_VAE_PREFIX) ? LDM_VAE_PREFIX : "";
    if (keymap_ldm_vae_to_diffusers(&vf->raw, prefix, &vf->vae, &vf->report, err) != 0)
        return error_prefix(err, "--vae %s: ", path);
    return 0;
}

int vae_file_open(const char *path, VaeFile *vf, Error *err) {
    memset(vf, 0, sizeof *vf);
    tensor_set_init(&vf->raw);
    tensor_set_init(&vf->vae);
    int rc;
    if (file_is_dir(path))
        rc = open_folder(path, vf, err);
    else if (file_exists(path))
        rc = open_file(path, vf, err);
    else
        rc = error_set(err, "--vae %s: no such file or folder", path);
    if (rc == 0 && !tensor_set_find(&vf->vae, "encoder.conv_in.weight"))
        rc = error_set(err,
                       "--vae %s: no VAE weights in it (no encoder.conv_in.weight, nor "
                       "first_stage_model.encoder.conv_in.weight): give a VAE file "
                       "(.safetensors / .ckpt / .pt), a checkpoint with a VAE, or a diffusers "
                       "VAE folder",
                       path);
    if (rc != 0)
        vae_file_close(vf);
    return rc;
}

void vae_file_close(VaeFile *vf) {
    tensor_set_free(&vf->vae);
    tensor_set_free(&vf->raw);
    keymap_report_free(&vf->report);
    free(vf->path);
    memset(vf, 0, sizeof *vf);
}
