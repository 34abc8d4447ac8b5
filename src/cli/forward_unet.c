/* sdti forward --component unet: sample, timestep, encoder_hidden_states [, grad_output]
 * -> out [, grad_encoder_hidden_states]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/forward.h"
#include "models/unet.h"

/* The named input, checked against the expected shape (-1: any size) and widened to float32
 * into *owned. */
static int input(const ForwardRequest *req, const TensorSet *in, const char *name, int ndim,
                 const int64_t *want, const char *meaning, bool integers_ok, float **owned,
                 const NamedTensor **found, Error *err) {
    const NamedTensor *t = tensor_set_find(in, name);
    *found = t;
    if (!t)
        return error_set(err, "%s: no tensor '%s' (--component unet needs %s)", req->inputs_path,
                         name, meaning);
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] >= 1 && (want[i] < 0 || t->shape[i] == want[i]);
    char s[128];
    if (!ok)
        return error_set(err, "%s: tensor '%s' has shape %s; --component unet needs %s",
                         req->inputs_path, name, tensor_shape_string(t, s, sizeof s), meaning);
    bool is_float = t->dtype == DTYPE_F32 || t->dtype == DTYPE_F16 || t->dtype == DTYPE_BF16 ||
                    t->dtype == DTYPE_F64;
    bool is_int = t->dtype == DTYPE_I64 || t->dtype == DTYPE_I32;
    if (!is_float && !(integers_ok && is_int))
        return error_set(err, "%s: tensor '%s' is %s; %s expected", req->inputs_path, name,
                         dtype_display_name(t->dtype),
                         integers_ok ? "int64 or float32" : "float32");
    size_t n = (size_t)tensor_numel(t);
    *owned = malloc(n * sizeof(float));
    if (!*owned)
        return error_set(err, "%s: out of memory reading '%s'", req->inputs_path, name);
    return tensor_to_f32(t, *owned, err);
}

static float *output(TensorSet *out, const char *name, int ndim, const int64_t *shape, Error *err) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    float *p = tensor_set_alloc(out, n * sizeof *p, err);
    if (!p || tensor_set_add(out, name, DTYPE_F32, ndim, shape, p, err) != 0)
        return NULL;
    return p;
}

static DType storage_of(const char *mixed_precision) {
    if (mixed_precision && strcmp(mixed_precision, "fp16") == 0)
        return DTYPE_F16;
    if (mixed_precision && strcmp(mixed_precision, "bf16") == 0)
        return DTYPE_BF16;
    return DTYPE_F32;
}

int forward_unet(NnContext *ctx, const ForwardRequest *req, const ModelFiles *mf,
                 const TensorSet *in, TensorSet *out, Error *err) {
    const UnetConfig *cfg = &mf->config.unet;
    float *sample = NULL, *timestep = NULL, *ehs = NULL, *grad = NULL;
    const NamedTensor *ts = NULL, *tt = NULL, *te = NULL, *tg = NULL;
    Unet *u = NULL;
    UnetArena *arena = NULL;
    char meaning[160];
    int64_t want_s[4] = {-1, cfg->in_channels, -1, -1};
    snprintf(meaning, sizeof meaning, "sample [batch, %d, h, w] (float32 latents)",
             cfg->in_channels);
    int rc = input(req, in, "sample", 4, want_s, meaning, false, &sample, &ts, err);
    if (rc == 0) {
        int64_t want_t[1] = {ts->shape[0]};
        snprintf(meaning, sizeof meaning, "timestep [%lld] (int64 or float32)",
                 (long long)ts->shape[0]);
        rc = input(req, in, "timestep", 1, want_t, meaning, true, &timestep, &tt, err);
    }
    if (rc == 0) {
        int64_t want_e[3] = {ts->shape[0], -1, cfg->cross_attention_dim};
        snprintf(meaning, sizeof meaning, "encoder_hidden_states [%lld, tokens, %d]",
                 (long long)ts->shape[0], cfg->cross_attention_dim);
        rc = input(req, in, "encoder_hidden_states", 3, want_e, meaning, false, &ehs, &te, err);
    }
    if (rc == 0 && tensor_set_find(in, "grad_output")) {
        int64_t want_g[4] = {ts->shape[0], cfg->out_channels, ts->shape[2], ts->shape[3]};
        snprintf(meaning, sizeof meaning, "grad_output [%lld, %d, %lld, %lld] (as the output)",
                 (long long)ts->shape[0], cfg->out_channels, (long long)ts->shape[2],
                 (long long)ts->shape[3]);
        rc = input(req, in, "grad_output", 4, want_g, meaning, false, &grad, &tg, err);
    }
    rc = rc ? rc
            : unet_load(&mf->components[COMPONENT_UNET], cfg, storage_of(req->mixed_precision), &u,
                        err);
    if (rc == 0) {
        UnetShape shape = {(int)ts->shape[0], (int)ts->shape[2], (int)ts->shape[3],
                           (int)te->shape[1]};
        UnetMode mode = !grad                         ? UNET_INFERENCE
                        : req->gradient_checkpointing ? UNET_TRAIN_CHECKPOINTED
                                                      : UNET_TRAIN;
        rc = unet_arena_create(u, &shape, mode, &arena, err);
    }
    if (rc == 0) {
        int64_t oshape[4] = {ts->shape[0], cfg->out_channels, ts->shape[2], ts->shape[3]};
        float *o = output(out, "out", 4, oshape, err);
        rc = o ? unet_forward(ctx, u, arena, sample, timestep, ehs, o, err) : -1;
        if (rc == 0 && grad) {
            float *d = output(out, "grad_encoder_hidden_states", 3, te->shape, err);
            rc = d ? unet_backward_input(ctx, u, arena, grad, d, err) : -1;
        }
    }
    unet_arena_free(arena);
    unet_free(u);
    free(sample);
    free(timestep);
    free(ehs);
    free(grad);
    return rc;
}
