/* Captions longer than 75 tokens, as kohya-ss sd-scripts encodes them (--max_token_length
 * 150 / 225): the tokenizer's padded row (BOS, up to 75 n ids, EOS, pad; 75 n + 2 long) is cut
 * into n rows of 77, each with its own first and last id (strategy_base._get_input_ids), every
 * row is encoded on its own, and the hidden states are joined back into 75 n + 2 positions
 * (strategy_sd.SdTextEncodingStrategy.encode_tokens):
 *
 *   ids:    chunk c = [row[0]] + row[1 + 75 c .. 76 + 75 c) + [row[last]]
 *           SD2 (pad differs from EOS) then fixes each chunk: if chunk[75] is neither EOS nor
 *           pad, chunk[76] = EOS; if chunk[1] is pad, chunk[1] = EOS.
 *   hidden: [h(chunk 0)[0]] + h(chunk c)[1..76) for every c + [h(chunk n-1)[76]]
 *
 * kohya's SD2 join also has a branch meant to copy a pad state over an empty chunk's EOS, but it
 * compares a token id with the EOS *string* and never fires, so SD1 and SD2 join alike. With
 * n = 1 both steps are the identity (77 = 75 + 2). */
#ifndef SDTI_MODELS_CLIP_TEXT_CHUNKS_H
#define SDTI_MODELS_CLIP_TEXT_CHUNKS_H

#include <stdint.h>

#include "base/error.h"
#include "models/clip_text.h"

#define CLIP_CHUNK_TOKENS 77 /* positions per encoded row */

/* max_token_length 0 (none), 75, 150 or 225 -> chunks 1, 1, 2, 3; else an error. */
int clip_chunk_count(long max_token_length, int *chunks, Error *err);
/* Positions of the joined hidden states: 2 + 75 n. */
int clip_chunked_length(int chunks);

/* One padded id row of clip_chunked_length(chunks) ids -> chunks rows of 77. */
void clip_chunk_ids(const int32_t *padded, int chunks, int32_t eos_id, int32_t pad_id,
                    int32_t *out);

/* h [batch * chunks, 77, width] -> out [batch, 2 + 75 chunks, width]. */
void clip_chunks_join_forward(int batch, int chunks, int width, const float *h, float *out);
/* d_out [batch, 2 + 75 chunks, width] -> d_h [batch * chunks, 77, width] (dropped positions
 * get zero). */
void clip_chunks_join_backward(int batch, int chunks, int width, const float *d_out, float *d_h);

/* The whole text side of a TI step for chunked ids [batch, chunks, 77]: the run must be made
 * for batch * chunks rows of 77. hidden [batch, 2 + 75 chunks, width]. */
int clip_text_forward_chunked(NnContext *ctx, const ClipText *m, ClipTextRun *run, int batch,
                              int chunks, const int32_t *ids, const float *extra_rows, int n_extra,
                              float *hidden, Error *err);
/* d_hidden [batch, 2 + 75 chunks, width] -> the row gradients of every id used. */
int clip_text_backward_chunked(NnContext *ctx, const ClipText *m, const ClipTextRun *run, int batch,
                               int chunks, const float *d_hidden, ClipRowGrads *out, Error *err);

#endif
