// labels: unit
/* The chain the trainer runs for one micro-batch (src/train/trainer_step.c), on the tiny SD1
 * fixture model: extra TI rows -> text encoder (kohya's chunking, max_token_length 150 so the
 * join is exercised) -> UNet -> kohya's l2 loss, and back: loss gradient -> UNet backward to
 * the text condition -> text-encoder backward to the gradient of every row used. Each piece
 * is held to PyTorch in its own test; this checks that they fit together (layouts, the scale
 * of the loss gradient, the join), comparing the new rows' gradient with central finite
 * differences of the whole forward. Error measure: max|fd - ours| / max|ours| over the
 * checked entries; float32 forwards with a step of 1e-2 give 3.6e-3 here (measured),
 * 2e-2 is allowed. A wrong layout or a missing factor gives errors of order 1. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng_torch.h"
#include "models/clip_text.h"
#include "models/clip_text_chunks.h"
#include "models/model_files.h"
#include "models/unet.h"
#include "nn/nn_context.h"
#include "test_util.h"
#include "train/loss.h"
#include "train/noise_schedule.h"

#define B     2
#define CH    2 /* chunks: max_token_length 150 */
#define LH    8
#define LW    8
#define NVEC  2
#define WIDTH 8

typedef struct Chain {
    NnContext *ctx;
    ModelFiles mf;
    ClipText clip;
    ClipTextRun run;
    Unet *unet;
    UnetArena *arena;
    NoiseSchedule sched;
    int32_t ids[B * CH * 77];
    float latents[B * 4 * LH * LW], noise[B * 4 * LH * LW], noisy[B * 4 * LH * LW];
    float pred[B * 4 * LH * LW], dpred[B * 4 * LH * LW];
    int64_t t[B];
    float tf[B];
    float hidden[B * 152 * WIDTH], dhidden[B * 152 * WIDTH];
} Chain;

/* The loss for rows; with grad != NULL also d loss / d rows [NVEC, WIDTH]. */
static float chain_loss(Chain *c, const float *rows, float *grad) {
    Error err = {{0}};
    float loss = NAN;
    CHECK_OK(clip_text_forward_chunked(c->ctx, &c->clip, &c->run, B, CH, c->ids, rows, NVEC,
                                       c->hidden, &err),
             &err);
    CHECK_OK(unet_forward(c->ctx, c->unet, c->arena, c->noisy, c->tf, c->hidden, c->pred, &err),
             &err);
    TrainLossOptions lo;
    train_loss_options_default(&lo);
    TrainLossBatch lb = {.batch = B,
                         .channels = 4,
                         .height = LH,
                         .width = LW,
                         .pred = c->pred,
                         .target = c->noise,
                         .timesteps = c->t};
    CHECK_OK(train_loss_forward_backward(&c->sched, &lo, &lb, 1.0f, NULL, &loss, c->dpred, &err),
             &err);
    if (grad) {
        CHECK_OK(unet_backward_input(c->ctx, c->unet, c->arena, c->dpred, c->dhidden, &err), &err);
        ClipRowGrads g = {0};
        CHECK_OK(clip_text_backward_chunked(c->ctx, &c->clip, &c->run, B, CH, c->dhidden, &g, &err),
                 &err);
        for (int r = 0; r < NVEC; r++) {
            const float *row = clip_row_grads_find(&g, 49408 + r);
            CHECKF(row != NULL, "no gradient for row %d", 49408 + r);
            for (int k = 0; k < WIDTH; k++)
                grad[r * WIDTH + k] = row ? row[k] : 0;
        }
        clip_row_grads_free(&g);
    }
    return loss;
}

int main(void) {
    static Chain c;
    Error err = {{0}};
    CHECK_OK(nn_context_create(1, &c.ctx, &err), &err);
    CHECK_OK(model_files_open(test_fixture("models/sd1-tiny/ldm.safetensors"), NULL, &c.mf, &err),
             &err);
    CHECK_OK(clip_text_bind(&c.clip, &c.mf.components[COMPONENT_TEXT_ENCODER], &c.mf.config.clip,
                            DTYPE_F32, &err),
             &err);
    CHECK_OK(clip_text_run_init(&c.run, &c.clip, B * CH, 77, 0, true, &err), &err);
    CHECK_OK(
        unet_load(&c.mf.components[COMPONENT_UNET], &c.mf.config.unet, DTYPE_F32, &c.unet, &err),
        &err);
    UnetShape shape = {.batch = B, .height = LH, .width = LW, .tokens = 152};
    CHECK_OK(unet_arena_create(c.unet, &shape, UNET_TRAIN, &c.arena, &err), &err);
    noise_schedule_init(&c.sched, false);

    /* sample 0: the new tokens in the first chunk; sample 1: in the second chunk too */
    int32_t padded[B][152];
    for (int b = 0; b < B; b++) {
        padded[b][0] = 49406;
        int n = b == 0 ? 6 : 90;
        for (int i = 1; i <= n; i++)
            padded[b][i] = 320 + (i * 37 + b) % 1000;
        padded[b][2] = 49408;
        padded[b][3] = 49409;
        if (b == 1) {
            padded[b][80] = 49409;
            padded[b][81] = 49408;
        }
        padded[b][n + 1] = 49407;
        for (int i = n + 2; i < 152; i++)
            padded[b][i] = 49407;
        clip_chunk_ids(padded[b], CH, 49407, 49407, c.ids + b * CH * 77);
    }
    TorchGenerator g;
    torch_rng_init(&g, 1234);
    torch_randn(&g, c.latents, sizeof c.latents / sizeof *c.latents);
    torch_randn(&g, c.noise, sizeof c.noise / sizeof *c.noise);
    c.t[0] = 100;
    c.t[1] = 700;
    for (int b = 0; b < B; b++)
        c.tf[b] = (float)c.t[b];
    noise_schedule_add_noise(&c.sched, B, 4 * LH * LW, c.latents, c.noise, c.t, c.noisy);

    float rows[NVEC * WIDTH], grad[NVEC * WIDTH];
    torch_randn(&g, rows, NVEC * WIDTH);
    chain_loss(&c, rows, grad);
    double diff = 0, mag = 0;
    const float h = 1e-2f;
    for (int i = 0; i < NVEC * WIDTH; i++) {
        float keep = rows[i];
        rows[i] = keep + h;
        double up = chain_loss(&c, rows, NULL);
        rows[i] = keep - h;
        double down = chain_loss(&c, rows, NULL);
        rows[i] = keep;
        double fd = (up - down) / (2.0 * h);
        diff = fmax(diff, fabs(fd - grad[i]));
        mag = fmax(mag, fabs(grad[i]));
    }
    double rel = mag > 0 ? diff / mag : INFINITY;
    printf("d loss / d rows vs finite differences: max|grad| %.3g, error %.3g\n", mag, rel);
    CHECKF(mag > 0 && rel <= 2e-2, "chain gradient error %.3g (max|grad| %.3g)", rel, mag);

    unet_arena_free(c.arena);
    unet_free(c.unet);
    clip_text_run_free(&c.run);
    clip_text_free(&c.clip);
    model_files_close(&c.mf);
    nn_context_free(c.ctx);
    return test_finish();
}
