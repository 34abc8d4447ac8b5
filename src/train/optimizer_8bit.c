/* bitsandbytes 0.50's AdamW8bit on the CPU; see optimizer_8bit.h. The facts come from its
 * source: create_dynamic_map (functional.py), Optimizer2State (optim/optimizer.py: block size
 * 256, min_8bit_size), the CPU backend's update (backends/cpu/ops.py:
 * _optimizer_update_8bit_blockwise_cpu, _optimizer_update_32bit_cpu) and its C quantizer
 * (csrc/cpu_ops.cpp: build_quantize_lut, norm_to_lut_index, quantize_cpu_impl). */
#include "train/optimizer_8bit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* torch rounds a * b + c twice unless its kernel fuses on purpose (written as fmaf here) */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

void bnb_dynamic_map(float code[BNB_CODE_SIZE], bool is_signed) {
    const int max_exponent_bits = 7, non_sign_bits = 7;
    int n = 0;
    for (int i = 0; i < max_exponent_bits; i++) {
        int items = is_signed ? (1 << (i + non_sign_bits - max_exponent_bits)) + 1
                              : (1 << (i + non_sign_bits - max_exponent_bits + 1)) + 1;
        /* torch.linspace(0.1, 1, items) in float32: start + step * k for the first half,
         * end - step * (items - 1 - k) for the rest, each one fused multiply-add */
        float start = 0.1f, end = 1.0f;
        float step = (end - start) / (float)(items - 1);
        float prev = 0.0f;
        float scale = (float)pow(10.0, (double)(-(max_exponent_bits - 1) + i));
        for (int k = 0; k < items; k++) {
            float b = k < items / 2 ? fmaf(step, (float)k, start)
                                    : fmaf(-step, (float)(items - 1 - k), end);
            if (k > 0) {
                float mean = (prev + b) / 2.0f;
                code[n++] = scale * mean;
                if (is_signed)
                    code[n++] = -(scale * mean);
            }
            prev = b;
        }
    }
    /* 2^(non_sign_bits - max_exponent_bits) - 1 = 0 additional items */
    code[n++] = 0.0f;
    code[n++] = 1.0f;
    while (n < BNB_CODE_SIZE)
        code[n++] = 0.0f;
    qsort(code, BNB_CODE_SIZE, sizeof *code, cmp_float);
}

void bnb_quant_map_init(BnbQuantMap *m, bool is_signed) {
    bnb_dynamic_map(m->code, is_signed);
    /* build_quantize_lut: bin i of [-1, 1] (its left edge) to the first code whose midpoint
     * with the next code is not below it */
    float mid[BNB_CODE_SIZE - 1];
    for (int i = 0; i < BNB_CODE_SIZE - 1; i++)
        mid[i] = 0.5f * (m->code[i] + m->code[i + 1]);
    int c = 0;
    for (int i = 0; i < BNB_LUT_SIZE; i++) {
        float val = -1.0f + (2.0f * (float)i) / (float)(BNB_LUT_SIZE - 1);
        while (c < BNB_CODE_SIZE - 1 && mid[c] < val)
            c++;
        m->lut[i] = (uint8_t)c;
    }
}

size_t bnb_block_count(size_t n) {
    return (n + BNB_BLOCK_SIZE - 1) / BNB_BLOCK_SIZE;
}

/* norm_to_lut_index: the bin of a normalised value (NaN, which bitsandbytes leaves undefined,
 * goes to bin 0) */
static unsigned lut_index(float v) {
    if (!(v >= -1.0f))
        v = -1.0f;
    if (v > 1.0f)
        v = 1.0f;
    float t = (v + 1.0f) * 0.5f;
    return (unsigned)(t * (float)(BNB_LUT_SIZE - 1) + 0.5f);
}

void bnb_quantize_blockwise(const BnbQuantMap *m, const float *a, size_t n, uint8_t *out,
                            float *absmax) {
    for (size_t b = 0, start = 0; start < n; b++, start += BNB_BLOCK_SIZE) {
        size_t end = start + BNB_BLOCK_SIZE < n ? start + BNB_BLOCK_SIZE : n;
        float amax = 0.0f;
        for (size_t i = start; i < end; i++)
            if (fabsf(a[i]) > amax)
                amax = fabsf(a[i]);
        absmax[b] = amax;
        if (amax == 0.0f) {
            memset(out + start, 0, end - start);
            continue;
        }
        float inv = 1.0f / amax;
        for (size_t i = start; i < end; i++)
            out[i] = m->lut[lut_index(a[i] * inv)];
    }
}

void bnb_dequantize_blockwise(const float *code, const uint8_t *q, const float *absmax, size_t n,
                              float *out) {
    for (size_t i = 0; i < n; i++)
        out[i] = code[q[i]] * absmax[i / BNB_BLOCK_SIZE];
}

/* --- the optimizer ---------------------------------------------------------------------------- */

int adamw8bit_init(Optimizer *o, Error *err) {
    const OptimizerConfig *c = &o->cfg;
    size_t n = o->numel;
    double whole = c->whole_numel > 0 ? (double)c->whole_numel : (double)n;
    o->state_8bit = !(whole < c->min_8bit_size);
    /* exp_avg / exp_avg_sq: the float32 state, or with 8-bit state the dequantized m and v
     * of the current step */
    o->exp_avg = calloc(n, sizeof(float));
    o->exp_avg_sq = calloc(n, sizeof(float));
    if (!o->exp_avg || !o->exp_avg_sq)
        return error_set(err, "optimizer: out of memory for %zu floats of state", n);
    if (!o->state_8bit)
        return 0;
    o->blocks = bnb_block_count(n);
    o->state1 = calloc(n, 1);
    o->state2 = calloc(n, 1);
    o->absmax1 = calloc(o->blocks, sizeof(float));
    o->absmax2 = calloc(o->blocks, sizeof(float));
    o->qmap1 = malloc(sizeof *o->qmap1);
    o->qmap2 = malloc(sizeof *o->qmap2);
    if (!o->state1 || !o->state2 || !o->absmax1 || !o->absmax2 || !o->qmap1 || !o->qmap2)
        return error_set(err, "optimizer: out of memory for the 8-bit state of %zu values", n);
    bnb_quant_map_init(o->qmap1, true);
    bnb_quant_map_init(o->qmap2, false);
    return 0;
}

void adamw8bit_free(Optimizer *o) {
    free(o->state1);
    free(o->state2);
    free(o->absmax1);
    free(o->absmax2);
    free(o->qmap1);
    free(o->qmap2);
}

void adamw8bit_step(Optimizer *o, float *p, const float *grad, double lr) {
    const OptimizerConfig *c = &o->cfg;
    size_t n = o->numel;
    float *m = o->exp_avg, *v = o->exp_avg_sq;
    o->step++;
    double step = (double)o->step;
    double c1 = 1.0 - pow(c->beta1, step);
    double c2 = sqrt(1.0 - pow(c->beta2, step));
    if (o->state_8bit) {
        bnb_dequantize_blockwise(o->qmap1->code, o->state1, o->absmax1, n, m);
        bnb_dequantize_blockwise(o->qmap2->code, o->state2, o->absmax2, n, v);
    }
    /* state1.mul_(beta1).add_(grad, alpha=1 - beta1): torch's add with alpha is one fused
     * multiply-add; state2.mul_(beta2).addcmul_(grad, grad, value=1 - beta2) fuses its last
     * multiply with the add */
    float b1 = (float)c->beta1, a1 = (float)(1.0 - c->beta1);
    float b2 = (float)c->beta2, a2 = (float)(1.0 - c->beta2);
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        m[i] = fmaf(g, a1, m[i] * b1);
        v[i] = fmaf(a2 * g, g, v[i] * b2);
    }
    if (c->weight_decay > 0.0) {
        float decay = (float)(1.0 - lr * c->weight_decay);
        for (size_t i = 0; i < n; i++)
            p[i] = p[i] * decay;
    }
    if (o->state_8bit) {
        /* denom = (state2.sqrt() / correction2).add_(eps);
         * p.addcdiv_(state1, denom, value=-lr / correction1) */
        float c2f = (float)c2, eps = (float)c->eps;
        float value = (float)(-lr / c1);
        for (size_t i = 0; i < n; i++) {
            float denom = sqrtf(v[i]) / c2f + eps;
            p[i] = p[i] + value * m[i] / denom;
        }
        bnb_quantize_blockwise(o->qmap1, m, n, o->state1, o->absmax1);
        bnb_quantize_blockwise(o->qmap2, v, n, o->state2, o->absmax2);
    } else {
        /* update = state1 / (state2.sqrt() + eps * correction2);
         * p.add_(update, alpha=-lr * correction2 / correction1) */
        float eps_c2 = (float)(c->eps * c2);
        float alpha = (float)(-lr * c2 / c1);
        for (size_t i = 0; i < n; i++) {
            float u = m[i] / (sqrtf(v[i]) + eps_c2);
            p[i] = fmaf(u, alpha, p[i]);
        }
    }
}

/* --- state ------------------------------------------------------------------------------------ */

static int add_named(TensorSet *out, const char *prefix, const char *key, DType dtype, int ndim,
                     const int64_t *shape, const void *data, Error *err) {
    char name[128];
    snprintf(name, sizeof name, "%s%s", prefix, key);
    return tensor_set_add_copy(out, name, dtype, ndim, shape, data, err);
}

static int load_named(const TensorSet *in, const char *prefix, const char *key, DType dtype,
                      size_t count, void *dst, Error *err) {
    char name[128];
    snprintf(name, sizeof name, "%s%s", prefix, key);
    const NamedTensor *t = tensor_set_find(in, name);
    if (!t)
        return error_set(err,
                         "optimizer state: '%s' is missing (saved by another optimizer or "
                         "with other min_8bit_size?)",
                         name);
    if (t->dtype != dtype || t->nbytes != count * dtype_size(dtype))
        return error_set(err, "optimizer state: '%s' has the wrong type or size", name);
    memcpy(dst, t->data, t->nbytes);
    return 0;
}

/* With 8-bit state: state1, state2 (uint8, the parameter's shape) and absmax1, absmax2 (one
 * float per block), bitsandbytes' names. The float32 state goes through optimizer.c's
 * exp_avg / exp_avg_sq. */
int adamw8bit_state_save(const Optimizer *o, TensorSet *out, const char *prefix, Error *err) {
    int64_t shape[2] = {o->ndim == 2 ? o->rows : o->cols, o->cols};
    int64_t blocks = (int64_t)o->blocks;
    if (add_named(out, prefix, "state1", DTYPE_U8, o->ndim, shape, o->state1, err) != 0 ||
        add_named(out, prefix, "state2", DTYPE_U8, o->ndim, shape, o->state2, err) != 0 ||
        add_named(out, prefix, "absmax1", DTYPE_F32, 1, &blocks, o->absmax1, err) != 0 ||
        add_named(out, prefix, "absmax2", DTYPE_F32, 1, &blocks, o->absmax2, err) != 0)
        return -1;
    return 0;
}

int adamw8bit_state_load(Optimizer *o, const TensorSet *in, const char *prefix, Error *err) {
    if (load_named(in, prefix, "state1", DTYPE_U8, o->numel, o->state1, err) != 0 ||
        load_named(in, prefix, "state2", DTYPE_U8, o->numel, o->state2, err) != 0 ||
        load_named(in, prefix, "absmax1", DTYPE_F32, o->blocks, o->absmax1, err) != 0 ||
        load_named(in, prefix, "absmax2", DTYPE_F32, o->blocks, o->absmax2, err) != 0)
        return -1;
    return 0;
}
