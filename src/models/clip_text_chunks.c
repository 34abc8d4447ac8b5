/* kohya's long-caption chunking, forward and backward: see clip_text_chunks.h. */
#include "models/clip_text_chunks.h"

#include <stdlib.h>
#include <string.h>

#define CONTENT (CLIP_CHUNK_TOKENS - 2)

int clip_chunk_count(long max_token_length, int *chunks, Error *err) {
    switch (max_token_length) {
    case 0:
    case 75:
        *chunks = 1;
        return 0;
    case 150:
        *chunks = 2;
        return 0;
    case 225:
        *chunks = 3;
        return 0;
    default:
        return error_set(err, "--max_token_length %ld: kohya accepts 75, 150 or 225",
                         max_token_length);
    }
}

int clip_chunked_length(int chunks) {
    return 2 + CONTENT * chunks;
}

void clip_chunk_ids(const int32_t *padded, int chunks, int32_t eos_id, int32_t pad_id,
                    int32_t *out) {
    int last = clip_chunked_length(chunks) - 1;
    for (int c = 0; c < chunks; c++) {
        int32_t *o = out + (size_t)c * CLIP_CHUNK_TOKENS;
        o[0] = padded[0];
        memcpy(o + 1, padded + 1 + CONTENT * c, CONTENT * sizeof *o);
        o[CLIP_CHUNK_TOKENS - 1] = padded[last];
        /* kohya's SD2 fix-ups, chosen as it does by the pad id differing from EOS; for one
         * chunk the row is left as the tokenizer made it (kohya only splits above 77) */
        if (chunks > 1 && pad_id != eos_id) {
            if (o[CLIP_CHUNK_TOKENS - 2] != eos_id && o[CLIP_CHUNK_TOKENS - 2] != pad_id)
                o[CLIP_CHUNK_TOKENS - 1] = eos_id;
            if (o[1] == pad_id)
                o[1] = eos_id;
        }
    }
}

void clip_chunks_join_forward(int batch, int chunks, int width, const float *h, float *out) {
    size_t w = (size_t)width, tl = (size_t)clip_chunked_length(chunks);
    for (int b = 0; b < batch; b++) {
        const float *hb = h + (size_t)b * (size_t)chunks * CLIP_CHUNK_TOKENS * w;
        float *ob = out + (size_t)b * tl * w;
        memcpy(ob, hb, w * sizeof *ob);
        for (int c = 0; c < chunks; c++)
            memcpy(ob + (1 + (size_t)CONTENT * (size_t)c) * w,
                   hb + ((size_t)c * CLIP_CHUNK_TOKENS + 1) * w, (size_t)CONTENT * w * sizeof *ob);
        memcpy(ob + (tl - 1) * w, hb + ((size_t)chunks * CLIP_CHUNK_TOKENS - 1) * w,
               w * sizeof *ob);
    }
}

void clip_chunks_join_backward(int batch, int chunks, int width, const float *d_out, float *d_h) {
    size_t w = (size_t)width, tl = (size_t)clip_chunked_length(chunks);
    memset(d_h, 0, (size_t)batch * (size_t)chunks * CLIP_CHUNK_TOKENS * w * sizeof *d_h);
    for (int b = 0; b < batch; b++) {
        float *hb = d_h + (size_t)b * (size_t)chunks * CLIP_CHUNK_TOKENS * w;
        const float *ob = d_out + (size_t)b * tl * w;
        memcpy(hb, ob, w * sizeof *ob);
        for (int c = 0; c < chunks; c++)
            memcpy(hb + ((size_t)c * CLIP_CHUNK_TOKENS + 1) * w,
                   ob + (1 + (size_t)CONTENT * (size_t)c) * w, (size_t)CONTENT * w * sizeof *ob);
        memcpy(hb + ((size_t)chunks * CLIP_CHUNK_TOKENS - 1) * w, ob + (tl - 1) * w,
               w * sizeof *ob);
    }
}

static int check_run(const ClipTextRun *run, int batch, int chunks, Error *err) {
    if (run->batch != batch * chunks || run->seq != CLIP_CHUNK_TOKENS)
        return error_set(err,
                         "text encoder: the activation run holds %d rows of %d tokens; %d captions "
                         "in %d chunks need %d rows of %d",
                         run->batch, run->seq, batch, chunks, batch * chunks, CLIP_CHUNK_TOKENS);
    return 0;
}

int clip_text_forward_chunked(NnContext *ctx, const ClipText *m, ClipTextRun *run, int batch,
                              int chunks, const int32_t *ids, const float *extra_rows, int n_extra,
                              float *hidden, Error *err) {
    if (check_run(run, batch, chunks, err) != 0)
        return -1;
    if (chunks == 1)
        return clip_text_forward(ctx, m, run, ids, extra_rows, n_extra, hidden, err);
    size_t n = (size_t)run->batch * CLIP_CHUNK_TOKENS * (size_t)run->width;
    float *h = malloc(n * sizeof *h);
    if (!h)
        return error_set(err, "text encoder: out of memory for %d chunks", run->batch);
    int rc = clip_text_forward(ctx, m, run, ids, extra_rows, n_extra, h, err);
    if (rc == 0)
        clip_chunks_join_forward(batch, chunks, run->width, h, hidden);
    free(h);
    return rc;
}

int clip_text_backward_chunked(NnContext *ctx, const ClipText *m, const ClipTextRun *run, int batch,
                               int chunks, const float *d_hidden, ClipRowGrads *out, Error *err) {
    memset(out, 0, sizeof *out);
    if (check_run(run, batch, chunks, err) != 0)
        return -1;
    if (chunks == 1)
        return clip_text_backward_input(ctx, m, run, d_hidden, out, err);
    size_t n = (size_t)run->batch * CLIP_CHUNK_TOKENS * (size_t)run->width;
    float *dh = malloc(n * sizeof *dh);
    if (!dh)
        return error_set(err, "text encoder backward: out of memory for %d chunks", run->batch);
    clip_chunks_join_backward(batch, chunks, run->width, d_hidden, dh);
    int rc = clip_text_backward_input(ctx, m, run, dh, out, err);
    free(dh);
    return rc;
}
