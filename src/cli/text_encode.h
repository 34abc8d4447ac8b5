/* The text side shared by `sdti forward --component text-encoder` and `sdti tokenize --encode`:
 * kohya's chunked ids through the model's text encoder. */
#ifndef SDTI_CLI_TEXT_ENCODE_H
#define SDTI_CLI_TEXT_ENCODE_H

#include <stdint.h>

#include "base/error.h"
#include "models/model_files.h"
#include "nn/nn_context.h"

/* The pad id kohya's tokenizer has for the model's version (its v1/v2 chunk rule depends on
 * it): SD1 pads with EOS, SD2 with "!" (0). kohya always loads these two tokenizers, whatever
 * folder the model comes from. */
int32_t text_encode_pad_id(const ModelFiles *mf);

/* ids [batch, chunks, 77] -> hidden [batch, 2 + 75 chunks, width] (kohya's join), with
 * kohya's clip_skip (0 = None). mixed_precision "no" / "fp16" / "bf16" (weight storage; NULL
 * = "no"). extra_rows [n_extra, width] serve ids from the vocabulary size on. */
int text_encode_chunked(NnContext *ctx, const ModelFiles *mf, const char *mixed_precision,
                        long clip_skip, int batch, int chunks, const int32_t *ids,
                        const float *extra_rows, int n_extra, float *hidden, Error *err);

#endif
