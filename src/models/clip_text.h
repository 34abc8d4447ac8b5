/* The CLIP text transformer of Stable Diffusion, forward and input-gradient backward:
 *   SD1: OpenAI CLIP ViT-L/14 (transformers CLIPTextModel, quick_gelu);
 *   SD2: OpenCLIP ViT-H/14 as diffusers and kohya load it (CLIPTextModel, gelu, the last
 *        resblock of the checkpoint dropped, so its "last" layer is OpenCLIP's penultimate).
 *
 *   x_0 = token_embedding[ids] + position_embedding[0..seq)
 *   x_l+1 = h + fc2(act(fc1(ln2(h)))),  h = x_l + out_proj(causal_attention(ln1(x_l)))
 *   hidden = final_layer_norm(x_run)
 *
 * clip_skip, as kohya's SdTextEncodingStrategy applies it to SD1 and SD2 alike: 0 (None) and
 * 1 give last_hidden_state = final_layer_norm(x_L); k > 1 gives hidden_states[-k], i.e. x_{L+1-k},
 * with final_layer_norm applied after it. k = L + 1 is the embedding output itself. So a run
 * computes x_0 .. x_run with run = L + 1 - max(k, 1) and always ends in the final norm.
 *
 * Sizes, heads, activation and epsilon come from ModelConfig (ClipConfig) and the weights.
 * Names are transformers' (text_model.embeddings.token_embedding.weight, ...). Weights stay in
 * their storage precision (WeightRef) and are widened one at a time right before use; the
 * token embedding is never widened whole: only the rows a batch uses are read.
 *
 * TI: ids >= vocab_size select rows of a caller's `extra_rows` [n_extra, width] (the new
 * tokens at 49408..). The backward returns d(loss)/d(row) for every distinct id of the batch,
 * extra ids included, which is the non-zero part of the gradient of kohya's whole trainable
 * embedding matrix: its L2 norm is what clip_grad_norm_ sees. No weight gradient is computed
 * and nothing is kept for one. */
#ifndef SDTI_MODELS_CLIP_TEXT_H
#define SDTI_MODELS_CLIP_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "formats/tensor_set.h"
#include "models/model_config.h"
#include "models/weight_ref.h"
#include "nn/nn_context.h"

typedef struct ClipTextLayer {
    WeightRef ln1_w, ln1_b; /* layer_norm1 [width] */
    WeightRef q_w, q_b;     /* self_attn.q_proj [width, width], [width] */
    WeightRef k_w, k_b;     /* self_attn.k_proj */
    WeightRef v_w, v_b;     /* self_attn.v_proj */
    WeightRef o_w, o_b;     /* self_attn.out_proj */
    WeightRef ln2_w, ln2_b; /* layer_norm2 [width] */
    WeightRef fc1_w, fc1_b; /* mlp.fc1 [inter, width], [inter] */
    WeightRef fc2_w, fc2_b; /* mlp.fc2 [width, inter], [width] */
} ClipTextLayer;

typedef struct ClipText {
    ClipConfig cfg;
    WeightRef token_embedding;    /* [vocab_size, width] */
    WeightRef position_embedding; /* [max_positions, width] */
    ClipTextLayer *layers;        /* cfg.num_layers */
    WeightRef final_ln_w, final_ln_b;
    WeightPool pool; /* converted weights (half storage, or widened from an inexact dtype) */
} ClipText;

/* Binds the text encoder's tensors (canonical names) checking every shape against cfg.
 * storage: DTYPE_F32 keeps the loaded precision (see weight_ref_bind), DTYPE_F16 / DTYPE_BF16
 * store the weights halved (--mixed_precision). */
int clip_text_bind(ClipText *m, const TensorSet *set, const ClipConfig *cfg, DType storage,
                   Error *err);
/* Random weights of cfg's shapes (benchmarks): uniform with bound 1/sqrt(fan_in) for linear
 * weights, 0.02-ish for embeddings, norm gains 1 and biases 0. */
int clip_text_random(ClipText *m, const ClipConfig *cfg, uint64_t seed, Error *err);
void clip_text_free(ClipText *m);

/* Number of layers a clip_skip runs (see above); fails for k < 0 or k > layers + 1. */
int clip_text_layers_run(const ClipConfig *cfg, int clip_skip, int *layers_run, Error *err);

/* The activations of one batch shape, allocated once (sized up front, reused across steps):
 * with_backward keeps, per layer run, what the input gradients need (layer input, norm
 * statistics, q/k/v/attention output and log-sum-exp, the residual after attention, the MLP
 * pre-activation); without it only rolling buffers. */
typedef struct ClipTextRun {
    int batch, seq, layers_run;
    bool with_backward;
    int width, inter, heads;
    int32_t *ids;  /* [batch * seq]: the ids of the last forward */
    float *block;  /* everything below points into it */
    size_t floats; /* its size */
    float *x;      /* with_backward: [layers_run + 1][rows, width] inputs of each layer, then
                      the final norm's input; else [2][rows, width] */
    float *stats1, *stats2;    /* [layers][rows * 2] ln1 / ln2 (mean, rstd) */
    float *q, *k, *v, *attn;   /* [layers][rows, width] */
    float *lse;                /* [layers][batch, heads, seq] */
    float *h;                  /* [layers][rows, width] residual after attention */
    float *pre;                /* [layers][rows, inter] fc1 output before the activation */
    float *final_stats;        /* [rows * 2] */
    float *s_b, *s_g, *s_beta; /* where half biases and norm gains are widened */
    float *t0, *t1, *t2, *t3;  /* [rows, max(width, inter)] temporaries */
} ClipTextRun;

size_t clip_text_run_bytes(const ClipText *m, int batch, int seq, int layers_run,
                           bool with_backward);
/* seq <= cfg.max_positions (kohya: always 77). */
int clip_text_run_init(ClipTextRun *run, const ClipText *m, int batch, int seq, int clip_skip,
                       bool with_backward, Error *err);
void clip_text_run_free(ClipTextRun *run);

/* ids [run->batch, run->seq] -> hidden [run->batch, run->seq, width]. extra_rows
 * [n_extra, width] serve ids vocab_size .. vocab_size + n_extra - 1 (NULL when n_extra is 0);
 * any other id is an error naming it. */
int clip_text_forward(NnContext *ctx, const ClipText *m, ClipTextRun *run, const int32_t *ids,
                      const float *extra_rows, int n_extra, float *hidden, Error *err);

/* d(loss)/d(embedding output) per position, [batch * seq, width], from d_hidden [batch, seq,
 * width] (the last forward's run, which must have with_backward). Position embeddings are
 * frozen, so this is also d(loss)/d(token_embedding[ids[r]]) for every position r. */
int clip_text_backward_positions(NnContext *ctx, const ClipText *m, const ClipTextRun *run,
                                 const float *d_hidden, float *d_embed, Error *err);

/* The non-zero rows of d(loss)/d(token-embedding matrix) (extra rows included). */
typedef struct ClipRowGrads {
    int count; /* distinct ids */
    int width;
    int32_t *ids; /* ascending */
    float *rows;  /* [count, width] */
} ClipRowGrads;

/* Sums per-position gradients d_embed [n, width] into rows by id (ids [n]). *out is
 * allocated (free with clip_row_grads_free). */
int clip_row_grads_gather(const int32_t *ids, int n, int width, const float *d_embed,
                          ClipRowGrads *out, Error *err);
/* The row of `id`, NULL if the batch did not use it. */
const float *clip_row_grads_find(const ClipRowGrads *g, int32_t id);
/* The L2 norm over every row: torch.nn.utils.clip_grad_norm_'s total norm of the matrix. */
double clip_row_grads_norm(const ClipRowGrads *g);
void clip_row_grads_free(ClipRowGrads *g);

/* backward_positions + gather. */
int clip_text_backward_input(NnContext *ctx, const ClipText *m, const ClipTextRun *run,
                             const float *d_hidden, ClipRowGrads *out, Error *err);

#endif
