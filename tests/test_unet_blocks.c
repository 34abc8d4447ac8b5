// labels: unit
/* The UNet's blocks on their own: ResnetBlock2D (with and without time embedding, with and
 * without the 1x1 shortcut) and Transformer2DModel (SD1 conv projections, SD2 linear ones),
 * their input gradients checked against central finite differences of the forward (loss
 * sum(r * y), evaluated in double; step 1e-2). Weights are the tiny fixture pipelines' own.
 * Error measure: max|analytic - numeric| over the probed elements / max|analytic| over the
 * whole gradient; limit 2e-3 (the difference quotient of a float forward is good to ~1e-4,
 * the rest is the probes' curvature). The whole-UNet comparison with torch is test_unet. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model_files.h"
#include "models/resnet_block.h"
#include "models/unet_transformer.h"
#include "test_util.h"

#define FD_TOL 2e-3
#define PROBES 24

static unsigned long long rng_state = 12345;

static float frand(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) / 16777216.0 * 2.0 - 1.0);
}

static float *rand_vec(size_t n, float scale) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = scale * frand();
    return v;
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(a[i]) > m)
            m = fabs(a[i]);
    return m;
}

typedef struct Probe {
    /* runs the forward on the current inputs and returns sum(r * y) */
    double (*loss)(void *state);
    void *state;
} Probe;

/* Compares grad (analytic) with central differences of probe->loss over `in`. */
static double fd_error(Probe *p, float *in, size_t n, const float *grad) {
    double worst = 0, scale = max_abs(grad, n);
    for (int k = 0; k < PROBES; k++) {
        size_t i = (size_t)((k * 7919ull + 13) % n);
        float save = in[i];
        const float step = 1e-2f;
        in[i] = save + step;
        double lp = p->loss(p->state);
        in[i] = save - step;
        double lm = p->loss(p->state);
        in[i] = save;
        double num = (lp - lm) / (2.0 * step);
        double d = fabs(num - grad[i]);
        if (d > worst)
            worst = d;
    }
    return scale > 0 ? worst / scale : worst;
}

/* ---- resnet ------------------------------------------------------------------------------- */

typedef struct ResState {
    NnContext *ctx;
    ResnetBlock rb;
    int batch, h, w;
    float *x, *temb, *y, *r, *tape, *scratch, *wscratch;
} ResState;

static double res_loss(void *p) {
    ResState *s = p;
    Error err;
    if (resnet_block_forward(s->ctx, &s->rb, s->batch, s->h, s->w, s->x, s->temb, s->y, NULL,
                             s->scratch, s->wscratch, &err) != 0)
        return NAN;
    return dot(s->y, s->r, (size_t)s->batch * s->rb.out_ch * s->h * s->w);
}

static void check_resnet(NnContext *ctx, const TensorSet *set, const char *prefix, int in_ch,
                         int out_ch, int temb_dim, float eps) {
    ResState s = {.ctx = ctx, .batch = 2, .h = 4, .w = 6};
    WeightPool pool;
    weight_pool_init(&pool, DTYPE_F32);
    Error err = {{0}};
    CHECK_OK(resnet_block_bind(&s.rb, set, prefix, in_ch, out_ch, temb_dim, 8, eps, &pool, &err),
             &err);
    size_t nin = (size_t)s.batch * in_ch * s.h * s.w, nout = (size_t)s.batch * out_ch * s.h * s.w;
    s.x = rand_vec(nin, 1.5f);
    s.temb = temb_dim ? rand_vec((size_t)s.batch * temb_dim, 1.0f) : NULL;
    s.y = malloc(nout * sizeof(float));
    s.r = rand_vec(nout, 1.0f);
    s.tape = malloc(resnet_block_tape_floats(&s.rb, s.batch, s.h, s.w) * sizeof(float));
    s.scratch = malloc(resnet_block_scratch_floats(&s.rb, s.batch, s.h, s.w) * sizeof(float));
    s.wscratch = malloc(resnet_block_weight_floats(&s.rb) * sizeof(float));
    float *dx = malloc(nin * sizeof(float));
    CHECK_OK(resnet_block_forward(ctx, &s.rb, s.batch, s.h, s.w, s.x, s.temb, s.y, s.tape,
                                  s.scratch, s.wscratch, &err),
             &err);
    CHECK_OK(resnet_block_backward_input(ctx, &s.rb, s.batch, s.h, s.w, s.x, s.tape, s.r, dx,
                                         s.scratch, s.wscratch, &err),
             &err);
    Probe p = {res_loss, &s};
    double e = fd_error(&p, s.x, nin, dx);
    CHECKF(e < FD_TOL, "resnet %s (%d->%d, temb %d): dx vs finite differences %.2e", prefix, in_ch,
           out_ch, temb_dim, e);
    printf("resnet %s (%d->%d, temb %d): dx vs finite differences %.2e\n", prefix, in_ch, out_ch,
           temb_dim, e);
    free(s.x), free(s.temb), free(s.y), free(s.r), free(s.tape), free(s.scratch);
    free(s.wscratch), free(dx);
    weight_pool_free(&pool);
}

/* ---- transformer -------------------------------------------------------------------------- */

typedef struct TfState {
    NnContext *ctx;
    UnetTransformer tf;
    int batch, h, w, tokens;
    float *x, *context, *y, *r, *tape, *scratch, *wscratch;
} TfState;

static double tf_loss(void *p) {
    TfState *s = p;
    Error err;
    if (unet_transformer_forward(s->ctx, &s->tf, s->batch, s->h, s->w, s->tokens, s->x, s->context,
                                 s->y, s->tape, s->scratch, s->wscratch, NULL, &err) != 0)
        return NAN;
    return dot(s->y, s->r, (size_t)s->batch * s->tf.channels * s->h * s->w);
}

static void check_transformer(NnContext *ctx, const ModelFiles *mf, const char *prefix, int ch,
                              int heads) {
    const UnetConfig *c = &mf->config.unet;
    TfState s = {.ctx = ctx, .batch = 2, .h = 4, .w = 3, .tokens = 5};
    WeightPool pool;
    weight_pool_init(&pool, DTYPE_F32);
    Error err = {{0}};
    CHECK_OK(unet_transformer_bind(&s.tf, &mf->components[COMPONENT_UNET], prefix, ch, heads, 1,
                                   c->cross_attention_dim, c->norm_num_groups,
                                   c->transformer_norm_eps, c->layer_norm_eps, &pool, &err),
             &err);
    size_t n = (size_t)s.batch * ch * s.h * s.w;
    size_t nc = (size_t)s.batch * s.tokens * c->cross_attention_dim;
    s.x = rand_vec(n, 1.0f);
    s.context = rand_vec(nc, 1.0f);
    s.y = malloc(n * sizeof(float));
    s.r = rand_vec(n, 1.0f);
    s.tape =
        malloc(unet_transformer_tape_floats(&s.tf, s.batch, s.h, s.w, s.tokens) * sizeof(float));
    s.scratch =
        malloc(unet_transformer_scratch_floats(&s.tf, s.batch, s.h, s.w, s.tokens) * sizeof(float));
    s.wscratch = malloc(unet_transformer_weight_floats(&s.tf) * sizeof(float));
    float *dx = malloc(n * sizeof(float)), *dc = calloc(nc, sizeof(float));
    float *dc_only = calloc(nc, sizeof(float));
    CHECK_OK(unet_transformer_forward(ctx, &s.tf, s.batch, s.h, s.w, s.tokens, s.x, s.context, s.y,
                                      s.tape, s.scratch, s.wscratch, NULL, &err),
             &err);
    CHECK_OK(unet_transformer_backward_input(ctx, &s.tf, s.batch, s.h, s.w, s.tokens, s.x, s.tape,
                                             s.r, dx, dc, s.scratch, s.wscratch, NULL, &err),
             &err);
    /* without dx: the context gradient must be the same */
    CHECK_OK(unet_transformer_backward_input(ctx, &s.tf, s.batch, s.h, s.w, s.tokens, s.x, s.tape,
                                             s.r, NULL, dc_only, s.scratch, s.wscratch, NULL, &err),
             &err);
    double same = 0;
    for (size_t i = 0; i < nc; i++)
        if (fabs(dc[i] - dc_only[i]) > same)
            same = fabs(dc[i] - dc_only[i]);
    CHECKF(same == 0, "transformer %s: context gradient differs without dx (%g)", prefix, same);
    Probe p = {tf_loss, &s};
    double ex = fd_error(&p, s.x, n, dx);
    double ec = fd_error(&p, s.context, nc, dc);
    CHECKF(ex < FD_TOL && ec < FD_TOL,
           "transformer %s: dx %.2e, dcontext %.2e vs finite differences", prefix, ex, ec);
    printf("transformer %s: dx %.2e, dcontext %.2e vs finite differences\n", prefix, ex, ec);
    free(s.x), free(s.context), free(s.y), free(s.r), free(s.tape), free(s.scratch);
    free(s.wscratch), free(dx), free(dc), free(dc_only);
    unet_transformer_free(&s.tf);
    weight_pool_free(&pool);
}

int main(void) {
    NnContext *ctx = NULL;
    Error err = {{0}};
    CHECK_OK(nn_context_create(1, &ctx, &err), &err);
    const char *models[2] = {"models/sd1-tiny/diffusers", "models/sd2-tiny/diffusers"};
    for (int m = 0; m < 2; m++) {
        ModelFiles mf;
        ModelOpenOptions opts = {0};
        if (model_files_open(test_fixture(models[m]), &opts, &mf, &err) != 0) {
            CHECKF(0, "open %s: %s", models[m], err.message);
            continue;
        }
        const UnetConfig *c = &mf.config.unet;
        const TensorSet *set = &mf.components[COMPONENT_UNET];
        int c0 = c->block_out_channels[0], c1 = c->block_out_channels[1];
        check_resnet(ctx, set, "down_blocks.0.resnets.0", c0, c0, 4 * c0, c->resnet_norm_eps);
        check_resnet(ctx, set, "up_blocks.2.resnets.0", c1 + c0, c0, 4 * c0, c->resnet_norm_eps);
        check_transformer(ctx, &mf, "down_blocks.0.attentions.0", c0, c->heads[0]);
        check_transformer(ctx, &mf, "down_blocks.1.attentions.0", c1, c->heads[1]);
        model_files_close(&mf);
    }
    /* without a time embedding, as the VAE uses it: the VAE's own weights */
    ModelFiles mf;
    ModelOpenOptions opts = {0};
    if (model_files_open(test_fixture("models/sd1-tiny/diffusers"), &opts, &mf, &err) == 0) {
        const VaeConfig *v = &mf.config.vae;
        check_resnet(ctx, &mf.components[COMPONENT_VAE], "decoder.mid_block.resnets.0",
                     v->block_out_channels[v->num_levels - 1],
                     v->block_out_channels[v->num_levels - 1], 0, v->norm_eps);
        model_files_close(&mf);
    }
    nn_context_free(ctx);
    return test_finish();
}
