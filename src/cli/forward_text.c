/* sdti forward --component text-encoder: input_ids -> hidden_states, as kohya-ss sd-scripts
 * encodes a batch of captions (clip_skip, and --max_token_length's 77-token chunks).
 *
 * input_ids (int64 or int32) may be
 *   [B, 77]          one chunk per caption;
 *   [B, n, 77]       kohya's chunked ids (n = 1, 2, 3);
 *   [B, 75 n + 2]    a tokenizer's padded rows (n = 2, 3), chunked here with kohya's rule.
 * extra_rows [n_extra, width] (optional) serve the ids from the vocabulary size on: the TI
 * tokens. Output: hidden_states [B, 75 n + 2, width] float32. */
#include <stdlib.h>
#include <string.h>

#include "cli/forward.h"
#include "cli/text_encode.h"
#include "models/clip_text_chunks.h"
#include "text/tokenizer.h"

static int read_ids(const ForwardRequest *req, const NamedTensor *t, int32_t *out, size_t n,
                    Error *err) {
    for (size_t i = 0; i < n; i++) {
        int64_t v =
            t->dtype == DTYPE_I64 ? ((const int64_t *)t->data)[i] : ((const int32_t *)t->data)[i];
        if (v < 0 || v > INT32_MAX)
            return error_set(err, "%s: input_ids[%zu] = %lld is not a token id", req->inputs_path,
                             i, (long long)v);
        out[i] = (int32_t)v;
    }
    return 0;
}

/* The shape of input_ids -> batch, chunks, and whether the rows still need chunking. */
static int ids_layout(const ForwardRequest *req, const NamedTensor *t, int *batch, int *chunks,
                      bool *needs_chunking, Error *err) {
    char s[128];
    int rc = -1;
    *needs_chunking = false;
    if (t->ndim == 3 && t->shape[2] == CLIP_CHUNK_TOKENS && t->shape[1] >= 1 && t->shape[1] <= 3) {
        *chunks = (int)t->shape[1];
        rc = 0;
    } else if (t->ndim == 2) {
        for (int n = 1; n <= 3; n++)
            if (t->shape[1] == clip_chunked_length(n)) {
                *chunks = n;
                *needs_chunking = n > 1;
                rc = 0;
            }
    }
    if (rc != 0 || t->shape[0] < 1 || t->shape[0] > 65536)
        return error_set(err,
                         "%s: input_ids has shape %s; --component text-encoder needs [batch, 77], "
                         "[batch, chunks, 77] (chunks 1-3) or padded rows [batch, 152 | 227]",
                         req->inputs_path, tensor_shape_string(t, s, sizeof s));
    *batch = (int)t->shape[0];
    if (req->max_token_length != 0) {
        int want;
        if (clip_chunk_count(req->max_token_length, &want, err) != 0)
            return -1;
        if (want != *chunks)
            return error_set(err,
                             "%s: input_ids %s holds %d chunk(s) of 75 tokens, but "
                             "--max_token_length %ld means %d",
                             req->inputs_path, tensor_shape_string(t, s, sizeof s), *chunks,
                             req->max_token_length, want);
    }
    return 0;
}

int forward_text_encoder(NnContext *ctx, const ForwardRequest *req, const ModelFiles *mf,
                         const TensorSet *in, TensorSet *out, Error *err) {
    const NamedTensor *t = tensor_set_find(in, "input_ids");
    if (!t)
        return error_set(err,
                         "%s: no tensor 'input_ids' (--component text-encoder needs token "
                         "ids [batch, 77] as int64)",
                         req->inputs_path);
    if (t->dtype != DTYPE_I64 && t->dtype != DTYPE_I32)
        return error_set(err, "%s: input_ids is %s; int64 token ids expected", req->inputs_path,
                         dtype_display_name(t->dtype));
    int batch = 0, chunks = 0;
    bool needs_chunking;
    if (ids_layout(req, t, &batch, &chunks, &needs_chunking, err) != 0)
        return -1;
    int width = mf->config.clip.hidden_size;
    const NamedTensor *xt = tensor_set_find(in, "extra_rows");
    int n_extra = 0;
    if (xt) {
        char s[128];
        if (xt->ndim != 2 || xt->shape[1] != width || xt->shape[0] > 4096)
            return error_set(err,
                             "%s: extra_rows has shape %s; [n, %d] expected (rows of the "
                             "ids from %d on)",
                             req->inputs_path, tensor_shape_string(xt, s, sizeof s), width,
                             mf->config.clip.vocab_size);
        n_extra = (int)xt->shape[0];
    }
    size_t n_in = (size_t)tensor_numel(t);
    size_t n_ids = (size_t)batch * (size_t)chunks * CLIP_CHUNK_TOKENS;
    int32_t *raw = malloc(n_in * sizeof *raw + 1), *ids = malloc(n_ids * sizeof *ids);
    float *extra = malloc((size_t)n_extra * (size_t)width * sizeof *extra + 1);
    int64_t shape[3] = {batch, clip_chunked_length(chunks), width};
    size_t n_out = (size_t)shape[0] * (size_t)shape[1] * (size_t)shape[2];
    float *hidden = tensor_set_alloc(out, n_out * sizeof *hidden, err);
    int rc = -1;
    if (!raw || !ids || !extra || !hidden) {
        if (hidden)
            error_set(err, "out of memory for %zu token ids", n_ids);
        goto done;
    }
    if (read_ids(req, t, raw, n_in, err) != 0 || (xt && tensor_to_f32(xt, extra, err) != 0))
        goto done;
    if (needs_chunking) {
        int32_t eos = TOKENIZER_EOS_ID, pad = text_encode_pad_id(mf);
        int len = clip_chunked_length(chunks);
        for (int b = 0; b < batch; b++)
            clip_chunk_ids(raw + (size_t)b * (size_t)len, chunks, eos, pad,
                           ids + (size_t)b * (size_t)chunks * CLIP_CHUNK_TOKENS);
    } else {
        memcpy(ids, raw, n_ids * sizeof *ids);
    }
    rc = text_encode_chunked(ctx, mf, req->mixed_precision, req->clip_skip, batch, chunks, ids,
                             xt ? extra : NULL, n_extra, hidden, err);
    if (rc == 0)
        rc = tensor_set_add(out, "hidden_states", DTYPE_F32, 3, shape, hidden, err);
done:
    free(raw);
    free(ids);
    free(extra);
    return rc;
}
