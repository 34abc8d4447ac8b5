/* See text_encode.h. */
#include "cli/text_encode.h"

#include <string.h>

#include "models/clip_text.h"
#include "models/clip_text_chunks.h"
#include "text/tokenizer.h"

int32_t text_encode_pad_id(const ModelFiles *mf) {
    return mf->config.version == SD_VERSION_2 ? TOKENIZER_SD2_PAD_ID : TOKENIZER_SD1_PAD_ID;
}

int text_encode_chunked(NnContext *ctx, const ModelFiles *mf, const char *mixed_precision,
                        long clip_skip, int batch, int chunks, const int32_t *ids,
                        const float *extra_rows, int n_extra, float *hidden, Error *err) {
    DType storage = DTYPE_F32;
    if (mixed_precision && strcmp(mixed_precision, "fp16") == 0)
        storage = DTYPE_F16;
    else if (mixed_precision && strcmp(mixed_precision, "bf16") == 0)
        storage = DTYPE_BF16;
    if (clip_skip < 0 || clip_skip > 1000)
        return error_set(err, "--clip_skip %ld: must be 1 or more (1 = the last layer)", clip_skip);
    ClipText m;
    if (clip_text_bind(&m, &mf->components[COMPONENT_TEXT_ENCODER], &mf->config.clip, storage,
                       err) != 0)
        return error_prefix(err, "%s", mf->path);
    ClipTextRun run;
    int rc = clip_text_run_init(&run, &m, batch * chunks, 77, (int)clip_skip, false, err);
    if (rc == 0)
        rc = clip_text_forward_chunked(ctx, &m, &run, batch, chunks, ids, extra_rows, n_extra,
                                       hidden, err);
    clip_text_run_free(&run);
    clip_text_free(&m);
    return rc;
}
