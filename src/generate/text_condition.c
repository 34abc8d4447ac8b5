/* See text_condition.h. */
#include "generate/text_condition.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "generate/prompt_weights.h"

#define CONTENT 75 /* tokens per chunk between BOS and EOS */
#define CHUNK   77

void text_condition_chunk_ids(const int *row, int k, int eos, int pad, int *out) {
    if (k == 1) {
        memcpy(out, row, CHUNK * sizeof *out);
        return;
    }
    int last = CONTENT * k + 1;
    for (int i = 0; i < k; i++) {
        int *c = out + (size_t)i * CHUNK;
        memcpy(c, row + CONTENT * i, CHUNK * sizeof *c);
        c[0] = row[0];
        if (pad == eos) {
            c[CHUNK - 1] = row[last];
        } else {
            if (c[CHUNK - 1] != eos && c[CHUNK - 1] != pad)
                c[CHUNK - 1] = eos;
            if (c[1] == pad)
                c[1] = eos;
        }
    }
}

void text_condition_chunk_weights(const double *weights, int count, int k, float *out) {
    int total = CHUNK * k, n = 0;
    if (count > 0)
        for (int j = 0; j < k; j++) {
            out[n++] = 1.0f;
            int from = j * CONTENT, to = (j + 1) * CONTENT < count ? (j + 1) * CONTENT : count;
            for (int i = from; i < to; i++)
                out[n++] = (float)weights[i];
            out[n++] = 1.0f;
        }
    while (n < total)
        out[n++] = 1.0f;
}

/* torch's float32 mean over one prompt's [positions, width] values. */
static float mean_of(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += x[i];
    return (float)(s / (double)n);
}

static void apply_weights(float *h, const float *w, int positions, int width) {
    size_t n = (size_t)positions * (size_t)width;
    bool all_one = true;
    for (int p = 0; p < positions; p++)
        all_one = all_one && w[p] == 1.0f;
    if (all_one)
        return; /* kohya's rescale is then an exact no-op */
    float previous = mean_of(h, n);
    for (int p = 0; p < positions; p++)
        for (int c = 0; c < width; c++)
            h[(size_t)p * width + c] *= w[p];
    float current = mean_of(h, n);
    float ratio = previous / current;
    for (size_t i = 0; i < n; i++)
        h[i] *= ratio;
}

int text_condition_encode(NnContext *ctx, const TextConditioner *tc, const char *const *prompts,
                          int n, int *k_out, float **hidden, Error *err) {
    *hidden = NULL;
    int max_tokens = CONTENT * tc->max_multiples;
    PromptTokens *pt = calloc((size_t)n, sizeof *pt);
    if (!pt)
        return error_set(err, "out of memory");
    int rc = 0, longest = 0;
    bool truncated = false;
    const TiTokens *embs = tc->embeddings ? tc->embeddings->tokens : NULL;
    int n_embs = tc->embeddings ? tc->embeddings->count : 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        rc = prompt_tokens_build(tc->tok, embs, n_embs, prompts[i], max_tokens, &pt[i], err);
        if (rc == 0) {
            longest = pt[i].count > longest ? pt[i].count : longest;
            truncated = truncated || pt[i].truncated;
        }
    }
    if (truncated)
        log_warning("Prompt was truncated. Try to shorten the prompt or increase "
                    "max_embeddings_multiples");
    /* kohya: min(max_multiples, (longest - 1) // 75 + 1), at least 1 (floor division) */
    int k = longest == 0 ? 1 : (longest - 1) / CONTENT + 1;
    k = k < tc->max_multiples ? k : tc->max_multiples;
    k = k < 1 ? 1 : k;
    int width = tc->clip->cfg.hidden_size, positions = CHUNK * k, row_len = CONTENT * k + 2;
    int bos = tokenizer_bos_id(tc->tok), eos = tokenizer_eos_id(tc->tok);
    int pad = tokenizer_pad_id(tc->tok);
    int *row = malloc((size_t)row_len * sizeof *row);
    int32_t *ids = malloc((size_t)n * positions * sizeof *ids);
    int *chunk_ids = malloc((size_t)positions * sizeof *chunk_ids);
    float *weights = malloc((size_t)n * positions * sizeof *weights);
    float *h = malloc((size_t)n * positions * width * sizeof *h);
    if (rc == 0 && (!row || !ids || !chunk_ids || !weights || !h))
        rc = error_set(err, "out of memory");
    for (int i = 0; rc == 0 && i < n; i++) {
        row[0] = bos;
        if (pt[i].count > 0)
            memcpy(row + 1, pt[i].ids, (size_t)pt[i].count * sizeof *row);
        row[pt[i].count + 1] = eos;
        for (int j = pt[i].count + 2; j < row_len; j++)
            row[j] = tc->pad_with_eos ? eos : pad;
        text_condition_chunk_ids(row, k, eos, pad, chunk_ids);
        for (int j = 0; j < positions; j++)
            ids[(size_t)i * positions + j] = chunk_ids[j];
        text_condition_chunk_weights(pt[i].weights, pt[i].count, k,
                                     weights + (size_t)i * positions);
    }
    ClipTextRun run;
    bool run_made = false;
    if (rc == 0) {
        rc = clip_text_run_init(&run, tc->clip, n * k, CHUNK, tc->clip_skip, false, err);
        run_made = rc == 0;
    }
    if (rc == 0) {
        PromptEmbeddings *pe = tc->embeddings;
        rc = clip_text_forward(ctx, tc->clip, &run, ids, pe && pe->n_rows ? pe->rows : NULL,
                               pe ? pe->n_rows : 0, h, err);
    }
    if (run_made)
        clip_text_run_free(&run);
    for (int i = 0; rc == 0 && i < n; i++)
        apply_weights(h + (size_t)i * positions * width, weights + (size_t)i * positions, positions,
                      width);
    for (int i = 0; i < n; i++)
        prompt_tokens_free(&pt[i]);
    free(pt);
    free(row);
    free(ids);
    free(chunk_ids);
    free(weights);
    if (rc != 0) {
        free(h);
        return -1;
    }
    *k_out = k;
    *hidden = h;
    return 0;
}
