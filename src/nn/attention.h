/* Scaled dot-product attention, memory-efficient: the forward runs over key/value tiles with an
 * online softmax and saves only the log-sum-exp of each query row; the backward recomputes the
 * probabilities tile by tile from Q, K, V and that statistic. The [q_len x kv_len] matrix is
 * never materialised (4096 x 4096 per head at 64x64 latents).
 *
 * Layout is the one linear projections produce, heads interleaved in the width:
 *   q [batch, q_len, heads * head_dim]    k, v [batch, kv_len, heads * head_dim]
 *   out [batch, q_len, heads * head_dim]  lse [batch, heads, q_len]
 * softmax(q k^T * scale) v per head; scale is 1/sqrt(head_dim) in SD. causal: query i sees
 * keys 0..i (CLIP's text encoder). */
#ifndef SDTI_NN_ATTENTION_H
#define SDTI_NN_ATTENTION_H

#include "nn/nn_context.h"

typedef struct AttentionShape {
    int batch, heads, q_len, kv_len, head_dim;
    float scale;
    int causal;
} AttentionShape;

/* lse may be NULL when no backward follows (generation, the VAE). */
int attention_forward(NnContext *ctx, const AttentionShape *s, const float *q, const float *k,
                      const float *v, float *out, float *lse, Error *err);
/* dq, dk, dv overwritten (any may be NULL when not needed: e.g. the UNet's cross-attention
 * needs dk and dv, and dq only when its query depends on an earlier gradient path). out and
 * lse are the forward's. */
int attention_backward_input(NnContext *ctx, const AttentionShape *s, const float *q,
                             const float *k, const float *v, const float *out, const float *lse,
                             const float *dout, float *dq, float *dk, float *dv, Error *err);

#endif
