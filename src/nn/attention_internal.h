/* attention.c's tile-size-explicit entry points, for tests (many small tiles exercise every
 * boundary with small fixtures) and the benchmark (tile tuning). Layer code calls attention.h. */
#ifndef SDTI_NN_ATTENTION_INTERNAL_H
#define SDTI_NN_ATTENTION_INTERNAL_H

#include "nn/attention.h"

typedef struct AttentionTiles {
    int q_tile;  /* query rows per tile */
    int kv_tile; /* key/value rows per tile */
} AttentionTiles;

/* The tiles attention_forward / attention_backward_input use. */
AttentionTiles attention_default_tiles(const AttentionShape *s, int backward);

int attention_forward_tiled(NnContext *ctx, const AttentionShape *s, const AttentionTiles *t,
                            const float *q, const float *k, const float *v, float *out, float *lse,
                            Error *err);
int attention_backward_input_tiled(NnContext *ctx, const AttentionShape *s, const AttentionTiles *t,
                                   const float *q, const float *k, const float *v, const float *out,
                                   const float *lse, const float *dout, float *dq, float *dk,
                                   float *dv, Error *err);

#endif
