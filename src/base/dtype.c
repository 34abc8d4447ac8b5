#include "base/dtype.h"

#include <string.h>

static const struct {
    const char *safetensors;
    const char *display;
    size_t size;
} DTYPE_TABLE[DTYPE_COUNT] = {
    [DTYPE_BOOL] = {"BOOL", "bool", 1},  [DTYPE_U8] = {"U8", "uint8", 1},
    [DTYPE_I8] = {"I8", "int8", 1},      [DTYPE_I16] = {"I16", "int16", 2},
    [DTYPE_I32] = {"I32", "int32", 4},   [DTYPE_I64] = {"I64", "int64", 8},
    [DTYPE_F16] = {"F16", "float16", 2}, [DTYPE_BF16] = {"BF16", "bfloat16", 2},
    [DTYPE_F32] = {"F32", "float32", 4}, [DTYPE_F64] = {"F64", "float64", 8},
};

size_t dtype_size(DType dtype) {
    return (unsigned)dtype < DTYPE_COUNT ? DTYPE_TABLE[dtype].size : 0;
}

const char *dtype_safetensors_name(DType dtype) {
    return (unsigned)dtype < DTYPE_COUNT ? DTYPE_TABLE[dtype].safetensors : "?";
}

const char *dtype_display_name(DType dtype) {
    return (unsigned)dtype < DTYPE_COUNT ? DTYPE_TABLE[dtype].display : "unknown";
}

int dtype_from_safetensors_name(const char *name, DType *out) {
    for (int i = 0; i < DTYPE_COUNT; i++) {
        if (strcmp(name, DTYPE_TABLE[i].safetensors) == 0) {
            *out = (DType)i;
            return 0;
        }
    }
    return -1;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0x1f) /* inf / nan */
        return bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        if (mant == 0)
            return bits_f32(sign);
        /* subnormal: value = mant * 2^-24, exact in float32 */
        float v = (float)mant * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t abs = x & 0x7fffffffu;
    if (abs > 0x7f800000u) /* nan: keep it a quiet nan */
        return (uint16_t)(sign | 0x7e00 | ((abs >> 13) & 0x3ff));
    if (abs >= 0x477ff000u) /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7c00);
    if (abs < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        /* Adding 0.5 (2^-1) aligns the half subnormal grid (2^-24) to float32's last mantissa
         * bits, so float addition performs round-to-nearest-even for us. */
        float v = bits_f32(abs) + 0.5f;
        return (uint16_t)(sign | (f32_bits(v) - 0x3f000000u));
    }
    uint32_t mant_odd = (abs >> 13) & 1;
    abs += 0xc8000fffu + mant_odd; /* rebias exponent (-112 << 23) and round to nearest even */
    return (uint16_t)(sign | (abs >> 13));
}

float bf16_to_f32(uint16_t h) {
    return bits_f32((uint32_t)h << 16);
}

uint16_t f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

int dtype_convert_to_f32(DType dtype, const void *src, float *dst, size_t count) {
    const unsigned char *p = src;
    for (size_t i = 0; i < count; i++) {
        switch (dtype) {
        case DTYPE_F32: {
            memcpy(dst + i, p + 4 * i, 4);
            break;
        }
        case DTYPE_F16: {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = f16_to_f32(h);
            break;
        }
        case DTYPE_BF16: {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = bf16_to_f32(h);
            break;
        }
        case DTYPE_F64: {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
            break;
        }
        case DTYPE_I64: {
            int64_t v;
            memcpy(&v, p + 8 * i, 8);
            dst[i] = (float)v;
            break;
        }
        case DTYPE_I32: {
            int32_t v;
            memcpy(&v, p + 4 * i, 4);
            dst[i] = (float)v;
            break;
        }
        case DTYPE_I16: {
            int16_t v;
            memcpy(&v, p + 2 * i, 2);
            dst[i] = (float)v;
            break;
        }
        case DTYPE_I8:
            dst[i] = (float)(int8_t)p[i];
            break;
        case DTYPE_U8:
            dst[i] = (float)p[i];
            break;
        default:
            return -1;
        }
    }
    return 0;
}

int dtype_convert_from_f32(DType dtype, const float *src, void *dst, size_t count) {
    unsigned char *p = dst;
    for (size_t i = 0; i < count; i++) {
        switch (dtype) {
        case DTYPE_F32:
            memcpy(p + 4 * i, src + i, 4);
            break;
        case DTYPE_F16: {
            uint16_t h = f32_to_f16(src[i]);
            memcpy(p + 2 * i, &h, 2);
            break;
        }
        case DTYPE_BF16: {
            uint16_t h = f32_to_bf16(src[i]);
            memcpy(p + 2 * i, &h, 2);
            break;
        }
        case DTYPE_F64: {
            double d = src[i];
            memcpy(p + 8 * i, &d, 8);
            break;
        }
        default:
            return -1;
        }
    }
    return 0;
}
