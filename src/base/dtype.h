/* Element types of stored tensors, with the names safetensors and torch use for them, and
 * widening of half-precision values to float32 (compute is always fp32). */
#ifndef SDTI_BASE_DTYPE_H
#define SDTI_BASE_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum DType {
    DTYPE_BOOL,
    DTYPE_U8,
    DTYPE_I8,
    DTYPE_I16,
    DTYPE_I32,
    DTYPE_I64,
    DTYPE_F16,
    DTYPE_BF16,
    DTYPE_F32,
    DTYPE_F64,
    DTYPE_COUNT
} DType;

size_t dtype_size(DType dtype);
/* safetensors spelling: "F32", "BF16", "I64", ... */
const char *dtype_safetensors_name(DType dtype);
/* Returns 0 and sets *out for a known safetensors dtype string, -1 otherwise. */
int dtype_from_safetensors_name(const char *name, DType *out);
/* Human spelling for messages and `sdti inspect`: "float32", "float16", "bfloat16", ... */
const char *dtype_display_name(DType dtype);

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f); /* round to nearest even, as torch's .half() */
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f); /* round to nearest even, as torch's .bfloat16() */

/* Converts `count` elements of a floating or integer dtype to float32. Returns -1 for bool. */
int dtype_convert_to_f32(DType dtype, const void *src, float *dst, size_t count);
/* Converts float32 to DTYPE_F32 / F16 / BF16 / F64. Returns -1 for other dtypes. */
int dtype_convert_from_f32(DType dtype, const float *src, void *dst, size_t count);

#endif
