// labels: unit
/* The key map against the tiny fixture models: each LDM single file (written by the reference
 * script and checked there with diffusers' own single-file loader) must map onto exactly the
 * tensors of the diffusers folder written from the same weights: same names, shapes, dtypes
 * and bytes. The reverse map must give the LDM file's tensors back. Bad sets must give the
 * right errors and reports. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "formats/tensor_set.h"
#include "models/keymap.h"
#include "test_util.h"

static const char *const DIFFUSERS_FILES[COMPONENT_COUNT] = {
    "diffusers/unet/diffusion_pytorch_model.safetensors",
    "diffusers/vae/diffusion_pytorch_model.safetensors",
    "diffusers/text_encoder/model.safetensors",
};

static bool open_fixture(const char *model, const char *rel, TensorSet *set) {
    char path[512];
    snprintf(path, sizeof path, "models/%s/%s", model, rel);
    Error err = {{0}};
    tensor_set_init(set);
    int rc = safetensors_open(test_fixture(path), set, &err);
    CHECKF(rc == 0, "open %s: %s", path, err.message);
    return rc == 0;
}

/* Shapes equal, ignoring trailing 1s: the reverse map writes the VAE attention as the 1x1
 * convolutions LDM tools expect ([C, C, 1, 1]), whichever form the file it came from had. */
static bool same_shape_up_to_1x1(const NamedTensor *a, const NamedTensor *b) {
    int na = a->ndim, nb = b->ndim;
    while (na > 2 && a->shape[na - 1] == 1)
        na--;
    while (nb > 2 && b->shape[nb - 1] == 1)
        nb--;
    if (na != nb)
        return false;
    for (int d = 0; d < na; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

static bool same_bytes(const NamedTensor *a, const NamedTensor *b) {
    if (a->dtype != b->dtype || a->nbytes != b->nbytes)
        return false;
    return a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0;
}

static bool same_tensor(const NamedTensor *a, const NamedTensor *b) {
    if (a->ndim != b->ndim)
        return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return same_bytes(a, b);
}

/* The LDM tensor an output entry's bytes lie in (q/k/v thirds lie in their in_proj). */
static const NamedTensor *source_of(const TensorSet *ldm, const NamedTensor *t) {
    const char *p = t->data;
    for (size_t i = 0; i < ldm->count; i++) {
        const char *b = ldm->items[i].data;
        if (b && p >= b && p < b + ldm->items[i].nbytes)
            return &ldm->items[i];
    }
    return NULL;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Ignorable by kind, judged from the name alone (the test's own list, not the key map's): the
 * EMA copy, top-level DDPM buffers, CLIP extras, and for SD2 the last OpenCLIP resblock. */
static bool ignorable_kind(const char *name, int last_resblock) {
    if (strncmp(name, "model_ema.", 10) == 0 || !strchr(name, '.'))
        return true;
    if (ends_with(name, "position_ids") || ends_with(name, "text_projection") ||
        ends_with(name, "logit_scale") || ends_with(name, "attn_mask"))
        return true;
    char last[96];
    snprintf(last, sizeof last, "cond_stage_model.model.transformer.resblocks.%d.", last_resblock);
    return last_resblock >= 0 && strncmp(name, last, strlen(last)) == 0;
}

static int max_resblock(const TensorSet *ldm) {
    const char *prefix = "cond_stage_model.model.transformer.resblocks.";
    int best = -1;
    for (size_t i = 0; i < ldm->count; i++)
        if (strncmp(ldm->items[i].name, prefix, strlen(prefix)) == 0) {
            int n = atoi(ldm->items[i].name + strlen(prefix));
            best = n > best ? n : best;
        }
    return best;
}

static void check_model(const char *model, SdVersion want) {
    TensorSet ldm, ref[COMPONENT_COUNT];
    if (!open_fixture(model, "ldm.safetensors", &ldm))
        return;
    bool ok = true;
    for (int c = 0; c < COMPONENT_COUNT; c++)
        ok = open_fixture(model, DIFFUSERS_FILES[c], &ref[c]) && ok;
    Error err = {{0}};
    SdVersion version = SD_VERSION_UNKNOWN;
    CHECK_OK(keymap_detect_ldm_version(&ldm, &version, &err), &err);
    CHECKF(version == want, "%s: detected %s", model, sd_version_name(version));

    TensorSet out[COMPONENT_COUNT];
    KeymapReport report;
    int rc = keymap_ldm_to_diffusers(&ldm, want, out, &report, &err);
    CHECK_OK(rc, &err);
    if (rc != 0 || !ok)
        goto done;
    CHECKF(report.unexpected_count == 0, "%s: %zu unexpected keys (first '%s')", model,
           report.unexpected_count, report.unexpected_count ? report.unexpected[0] : "");

    /* Every component equals the diffusers folder's: names, shapes, dtypes, bytes. */
    bool *used = calloc(ldm.count, sizeof *used);
    for (int c = 0; c < COMPONENT_COUNT; c++) {
        const char *cname = model_component_name((ModelComponent)c);
        CHECKF(out[c].count == ref[c].count,
               "%s %s: %zu tensors mapped, the diffusers folder has "
               "%zu",
               model, cname, out[c].count, ref[c].count);
        for (size_t i = 0; i < ref[c].count; i++) {
            const NamedTensor *r = &ref[c].items[i];
            const NamedTensor *t = tensor_set_find(&out[c], r->name);
            CHECKF(t != NULL, "%s %s: '%s' missing from the mapped set", model, cname, r->name);
            if (t) {
                char a[64], b[64];
                CHECKF(same_tensor(t, r), "%s %s: '%s' differs (mapped %s %s, diffusers %s %s)",
                       model, cname, r->name, dtype_display_name(t->dtype),
                       tensor_shape_string(t, a, sizeof a), dtype_display_name(r->dtype),
                       tensor_shape_string(r, b, sizeof b));
                const NamedTensor *src = source_of(&ldm, t);
                CHECKF(src != NULL, "%s: '%s' does not point into the LDM file's data", model,
                       t->name);
                if (src)
                    used[src - ldm.items] = true;
            }
        }
    }

    /* Each LDM key is either used or ignored (never both, never lost), and everything ignored
     * is of a kind that may be. */
    int last = want == SD_VERSION_2 ? max_resblock(&ldm) : -1;
    size_t unused = 0;
    for (size_t i = 0; i < ldm.count; i++) {
        if (used[i])
            continue;
        unused++;
        CHECKF(ignorable_kind(ldm.items[i].name, last), "%s: '%s' was skipped", model,
               ldm.items[i].name);
    }
    CHECKF(report.ignored_count == unused, "%s: %zu keys reported ignored, %zu unused", model,
           report.ignored_count, unused);
    CHECKF(report.ignored_count > 0, "%s: the fixture's EMA/DDPM extras were not seen", model);

    /* The reverse map gives the LDM file's tensors back, byte for byte. */
    TensorSet back;
    rc = keymap_diffusers_to_ldm(ref, want, &back, &err);
    CHECK_OK(rc, &err);
    if (rc == 0) {
        for (size_t i = 0; i < ldm.count; i++) {
            if (!used[i])
                continue;
            const NamedTensor *t = tensor_set_find(&back, ldm.items[i].name);
            CHECKF(t && same_bytes(t, &ldm.items[i]) && same_shape_up_to_1x1(t, &ldm.items[i]),
                   "%s: reverse map: '%s' %s", model, ldm.items[i].name, t ? "differs" : "missing");
        }
        for (size_t i = 0; i < back.count; i++) {
            const NamedTensor *t = tensor_set_find(&ldm, back.items[i].name);
            char a[64], b[64];
            CHECKF(t != NULL, "%s: reverse map wrote '%s', which the LDM file does not have", model,
                   back.items[i].name);
            if (!t)
                continue;
            tensor_shape_string(t, a, sizeof a);
            tensor_shape_string(&back.items[i], b, sizeof b);
            bool vae_attention =
                strstr(t->name, "first_stage_model.") && strstr(t->name, ".attn_1.");
            CHECKF(vae_attention
                       ? same_shape_up_to_1x1(t, &back.items[i]) && back.items[i].ndim != 2
                       : strcmp(a, b) == 0,
                   "%s: reverse map: '%s' is %s, the LDM file's is %s", model, t->name, b, a);
        }
        tensor_set_free(&back);
    }
    free(used);
    keymap_report_free(&report);
    for (int c = 0; c < COMPONENT_COUNT; c++)
        tensor_set_free(&out[c]);
done:
    for (int c = 0; c < COMPONENT_COUNT; c++)
        tensor_set_free(&ref[c]);
    tensor_set_free(&ldm);
}

/* ---- synthetic sets ---- */

static float zeros[4096];

static void add(TensorSet *set, const char *name, int64_t d0, int64_t d1) {
    Error err = {{0}};
    int64_t shape[2] = {d0, d1};
    CHECK_OK(tensor_set_add(set, name, DTYPE_F32, d1 ? 2 : 1, shape, zeros, &err), &err);
}

static void check_detection_errors(void) {
    Error err = {{0}};
    SdVersion v;
    TensorSet set;

    tensor_set_init(&set);
    add(&set, "first_stage_model.encoder.conv_in.bias", 8, 0);
    CHECK_FAILS_WITH(keymap_detect_ldm_version(&set, &v, &err), &err, "no UNet weights");
    CHECK_FAILS_WITH(keymap_detect_ldm_version(&set, &v, &err), &err, "model.diffusion_model.");
    tensor_set_free(&set);

    tensor_set_init(&set);
    add(&set, "model.diffusion_model.input_blocks.0.0.bias", 8, 0);
    add(&set, "conditioner.embedders.0.transformer.text_model.final_layer_norm.bias", 8, 0);
    CHECK_FAILS_WITH(keymap_detect_ldm_version(&set, &v, &err), &err, "SDXL is not supported");
    tensor_set_free(&set);

    /* The UNet's context width against the text encoder's. */
    tensor_set_init(&set);
    add(&set, "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", 8,
        12);
    add(&set, "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", 10, 16);
    CHECK_FAILS_WITH(keymap_detect_ldm_version(&set, &v, &err), &err, "context width is 12");
    tensor_set_free(&set);

    /* Without a text encoder, real widths still tell; others cannot. */
    const int64_t widths[3] = {768, 1024, 12};
    for (int i = 0; i < 3; i++) {
        tensor_set_init(&set);
        add(&set, "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
            4, widths[i]);
        int rc = keymap_detect_ldm_version(&set, &v, &err);
        if (i < 2)
            CHECKF(rc == 0 && v == (i == 0 ? SD_VERSION_1 : SD_VERSION_2),
                   "width %lld: rc %d, %s (%s)", (long long)widths[i], rc, sd_version_name(v),
                   err.message);
        else
            CHECK_FAILS_WITH(rc, &err, "cannot tell SD1.x from SD2.x");
        tensor_set_free(&set);
    }
}

/* The smallest UNet that numbers: 2 levels of 1 layer. */
static void add_mini_unet(TensorSet *set) {
    add(set, "model.diffusion_model.input_blocks.1.0.in_layers.0.weight", 4, 0);
    add(set, "model.diffusion_model.input_blocks.2.0.op.weight", 4, 0);
    add(set, "model.diffusion_model.input_blocks.3.0.in_layers.0.weight", 4, 0);
    add(set, "model.diffusion_model.output_blocks.3.0.in_layers.0.weight", 4, 0);
}

/* The fixture with one key changed, added or removed. */
static void copy_except(const TensorSet *from, TensorSet *to, const char *drop_prefix) {
    Error err = {{0}};
    tensor_set_init(to);
    for (size_t i = 0; i < from->count; i++) {
        const NamedTensor *t = &from->items[i];
        if (drop_prefix && strncmp(t->name, drop_prefix, strlen(drop_prefix)) == 0)
            continue;
        CHECK_OK(tensor_set_add(to, t->name, t->dtype, t->ndim, t->shape, t->data, &err), &err);
    }
}

static void check_bad_sets(void) {
    TensorSet ldm, set, out[COMPONENT_COUNT];
    KeymapReport report;
    Error err = {{0}};
    if (!open_fixture("sd1-tiny", "ldm.safetensors", &ldm))
        return;

    /* An unknown UNet key and an unknown top-level key are reported, not fatal. */
    copy_except(&ldm, &set, NULL);
    add(&set, "model.diffusion_model.foo.weight", 4, 0);
    add(&set, "some_extension.scale", 1, 0);
    CHECK_OK(keymap_ldm_to_diffusers(&set, SD_VERSION_1, out, &report, &err), &err);
    CHECKF(report.unexpected_count == 2, "%zu unexpected", report.unexpected_count);
    CHECK(report.unexpected_count == 2 &&
          strcmp(report.unexpected[0], "model.diffusion_model.foo.weight") == 0 &&
          strcmp(report.unexpected[1], "some_extension.scale") == 0);
    CHECK(tensor_set_find(&out[COMPONENT_UNET], "conv_in.weight") != NULL);
    keymap_report_free(&report);
    for (int c = 0; c < COMPONENT_COUNT; c++)
        tensor_set_free(&out[c]);
    tensor_set_free(&set);

    /* A name below a known block that the block does not have. */
    copy_except(&ldm, &set, NULL);
    add(&set, "model.diffusion_model.middle_block.1.transformer_blocks.0.attn3.to_q.weight", 4, 4);
    CHECK_OK(keymap_ldm_to_diffusers(&set, SD_VERSION_1, out, &report, &err), &err);
    CHECK(report.unexpected_count == 1 && strstr(report.unexpected[0], "attn3.to_q") != NULL);
    keymap_report_free(&report);
    for (int c = 0; c < COMPONENT_COUNT; c++)
        tensor_set_free(&out[c]);
    tensor_set_free(&set);

    /* A UNet whose block counts do not fit together: the last output block is missing. */
    int last_out = -1;
    for (size_t i = 0; i < ldm.count; i++) {
        const char *p = "model.diffusion_model.output_blocks.";
        if (strncmp(ldm.items[i].name, p, strlen(p)) == 0) {
            int n = atoi(ldm.items[i].name + strlen(p));
            last_out = n > last_out ? n : last_out;
        }
    }
    char drop[96];
    snprintf(drop, sizeof drop, "model.diffusion_model.output_blocks.%d.", last_out);
    copy_except(&ldm, &set, drop);
    CHECK_FAILS_WITH(keymap_ldm_to_diffusers(&set, SD_VERSION_1, out, &report, &err), &err,
                     "do not fit together");
    tensor_set_free(&set);
    tensor_set_free(&ldm);

    /* A fused in_proj whose rows do not split in three. */
    tensor_set_init(&set);
    add_mini_unet(&set);
    add(&set, "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight", 10, 4);
    add(&set, "cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight", 12, 4);
    CHECK_FAILS_WITH(keymap_ldm_to_diffusers(&set, SD_VERSION_2, out, &report, &err), &err,
                     "resblocks.0.attn.in_proj_weight");
    tensor_set_free(&set);

    /* The reverse map refuses a name it does not know. */
    TensorSet in[COMPONENT_COUNT];
    for (int c = 0; c < COMPONENT_COUNT; c++)
        tensor_set_init(&in[c]);
    add(&in[COMPONENT_UNET], "down_blocks.0.resnets.0.conv1.weight", 4, 4);
    add(&in[COMPONENT_UNET], "up_blocks.0.resnets.0.conv1.weight", 4, 4);
    add(&in[COMPONENT_UNET], "down_blocks.0.resnets.0.mystery.weight", 4, 4);
    CHECK_FAILS_WITH(keymap_diffusers_to_ldm(in, SD_VERSION_1, &set, &err), &err,
                     "'down_blocks.0.resnets.0.mystery.weight' has no name in the LDM layout");
    for (int c = 0; c < COMPONENT_COUNT; c++)
        tensor_set_free(&in[c]);
}

/* SD2 drops its last resblock, except in a real-size (1024-wide) file of 23 resblocks: that one
 * was written without the unused 24th (as diffusers' conversion script writes it). */
static void check_sd2_resblocks(void) {
    const int counts[3] = {24, 23, 3};
    const int64_t widths[3] = {1024, 1024, 1024 / 2};
    const int want_layers[3] = {23, 23, 2};
    for (int i = 0; i < 3; i++) {
        TensorSet set, out[COMPONENT_COUNT];
        KeymapReport report;
        Error err = {{0}};
        char name[128];
        tensor_set_init(&set);
        add_mini_unet(&set);
        add(&set, "cond_stage_model.model.token_embedding.weight", 2, widths[i]);
        for (int b = 0; b < counts[i]; b++) {
            snprintf(name, sizeof name, "cond_stage_model.model.transformer.resblocks.%d.ln_1.bias",
                     b);
            add(&set, name, 4, 0);
        }
        CHECK_OK(keymap_ldm_to_diffusers(&set, SD_VERSION_2, out, &report, &err), &err);
        size_t layers = out[COMPONENT_TEXT_ENCODER].count - 1; /* minus the token embedding */
        CHECKF(layers == (size_t)want_layers[i] &&
                   report.ignored_count == (size_t)(counts[i] - want_layers[i]),
               "%d resblocks %lld wide: %zu layers kept, %zu keys ignored", counts[i],
               (long long)widths[i], layers, report.ignored_count);
        keymap_report_free(&report);
        for (int c = 0; c < COMPONENT_COUNT; c++)
            tensor_set_free(&out[c]);
        tensor_set_free(&set);
    }
}

int main(void) {
    CHECK(strcmp(model_component_name(COMPONENT_TEXT_ENCODER), "text_encoder") == 0);
    CHECK(strcmp(sd_version_name(SD_VERSION_2), "SD2.x") == 0);
    check_model("sd1-tiny", SD_VERSION_1);
    check_model("sd2-tiny", SD_VERSION_2);
    check_detection_errors();
    check_bad_sets();
    check_sd2_resblocks();
    return test_finish();
}
