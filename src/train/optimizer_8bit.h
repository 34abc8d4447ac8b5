/* bitsandbytes' AdamW8bit (bnb.optim.AdamW8bit, bitsandbytes 0.50) as its CPU backend runs it:
 * "8-bit block-wise state as bitsandbytes stores it, on the CPU".
 *
 * State: m and v quantized in blocks of 256 consecutive elements of the flattened parameter,
 * each block as one float absmax plus one byte per element, the byte an index into a
 * 256-value "dynamic" map (signed map for m, unsigned map for v; create_dynamic_map). A
 * parameter with fewer than min_8bit_size (4096) elements keeps float32 m and v and takes
 * bitsandbytes' 32-bit update instead, whose formula differs slightly.
 *
 * bitsandbytes' CPU quantizer is not a nearest-value search: it maps the normalised value
 * x / absmax to one of 65536 equal bins of [-1, 1] and looks the bin up in a table of nearest
 * codes built from the bins' left edges. Values near zero (most of v) therefore often land one
 * code away from the nearest one; sdti builds the same table, so its bytes are bitsandbytes'.
 * The update itself is float32 torch arithmetic: dequantize, m = m*b1 + g*(1-b1),
 * v = v*b2 + (1-b2)*g*g, p -= lr/c1 * m / (sqrt(v)/c2 + eps) (decoupled weight decay), then
 * quantize m and v again. */
#ifndef SDTI_TRAIN_OPTIMIZER_8BIT_H
#define SDTI_TRAIN_OPTIMIZER_8BIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "train/optimizer.h"

#define BNB_BLOCK_SIZE 256
#define BNB_CODE_SIZE  256
#define BNB_LUT_SIZE   65536

/* A quantization map: its 256 sorted values and the 65536-bin lookup table the CPU
 * quantizer uses. */
typedef struct BnbQuantMap {
    float code[BNB_CODE_SIZE];
    uint8_t lut[BNB_LUT_SIZE];
} BnbQuantMap;

/* create_dynamic_map(signed): 7 exponent decades of linearly spaced fractions, 0 and 1. */
void bnb_dynamic_map(float code[BNB_CODE_SIZE], bool is_signed);
void bnb_quant_map_init(BnbQuantMap *m, bool is_signed);

size_t bnb_block_count(size_t n);

/* quantize_blockwise(a, code, blocksize=256) on the CPU: out[n] bytes, absmax[block count]. */
void bnb_quantize_blockwise(const BnbQuantMap *m, const float *a, size_t n, uint8_t *out,
                            float *absmax);
/* dequantize_blockwise: out[i] = code[q[i]] * absmax[i / 256]. */
void bnb_dequantize_blockwise(const float *code, const uint8_t *q, const float *absmax, size_t n,
                              float *out);

/* Called by optimizer_init / optimizer_free / optimizer_step / optimizer_state_* for
 * OPTIMIZER_ADAMW8BIT. The 8-bit decision uses cfg.whole_numel when set (the tensor kohya
 * hands bitsandbytes: the whole embedding matrix, of which sdti steps the new rows). */
int adamw8bit_init(Optimizer *o, Error *err);
void adamw8bit_free(Optimizer *o);
void adamw8bit_step(Optimizer *o, float *param, const float *grad, double lr);
int adamw8bit_state_save(const Optimizer *o, TensorSet *out, const char *prefix, Error *err);
int adamw8bit_state_load(Optimizer *o, const TensorSet *in, const char *prefix, Error *err);

#endif
