/* One optimizer step per class, in the order of operations of the Python code it mirrors,
 * each scalar rounded where Python hands it to a float32 kernel. */
#include "train/optimizer.h"

#include "train/optimizer_8bit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* torch rounds a * b + c twice unless it fuses on purpose (written as fmaf here); clang would
   fuse such expressions under -march=native (GCC in -std=c11 mode does not). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

static float *alloc_zero(size_t n, Error *err) {
    float *p = calloc(n ? n : 1, sizeof *p);
    if (!p)
        error_set(err, "optimizer: out of memory for %zu floats of state", n);
    return p;
}

int optimizer_init(Optimizer *o, const OptimizerConfig *c, int ndim, const int64_t *shape,
                   Error *err) {
    memset(o, 0, sizeof *o);
    o->cfg = *c;
    if (ndim < 1 || ndim > 2 || shape[0] < 1 || (ndim == 2 && shape[1] < 1))
        return error_set(err, "optimizer: the parameter must be 1-D or 2-D and not empty");
    o->ndim = ndim;
    o->rows = ndim == 2 ? shape[0] : 1;
    o->cols = ndim == 2 ? shape[1] : shape[0];
    o->numel = (size_t)(o->rows * o->cols);
    bool ok = true;
    switch (c->kind) {
    case OPTIMIZER_ADAMW:
        ok =
            (o->exp_avg = alloc_zero(o->numel, err)) && (o->exp_avg_sq = alloc_zero(o->numel, err));
        if (ok && c->amsgrad)
            ok = (o->max_exp_avg_sq = alloc_zero(o->numel, err)) != NULL;
        break;
    case OPTIMIZER_LION:
        ok = (o->exp_avg = alloc_zero(o->numel, err)) != NULL;
        break;
    case OPTIMIZER_SGD_NESTEROV:
        ok = (o->momentum_buffer = alloc_zero(o->numel, err)) != NULL;
        break;
    case OPTIMIZER_ADAFACTOR:
        ok = (o->work = alloc_zero(o->numel, err)) != NULL;
        if (ok && c->has_beta1)
            ok = (o->exp_avg = alloc_zero(o->numel, err)) != NULL;
        if (ok && ndim == 2)
            ok = (o->exp_avg_sq_row = alloc_zero((size_t)o->rows, err)) &&
                 (o->exp_avg_sq_col = alloc_zero((size_t)o->cols, err));
        else if (ok)
            ok = (o->exp_avg_sq = alloc_zero(o->numel, err)) != NULL;
        break;
    case OPTIMIZER_ADAMW8BIT:
        ok = adamw8bit_init(o, err) == 0;
        break;
    }
    if (!ok) {
        optimizer_free(o);
        return -1;
    }
    return 0;
}

void optimizer_free(Optimizer *o) {
    free(o->exp_avg);
    free(o->exp_avg_sq);
    free(o->max_exp_avg_sq);
    free(o->momentum_buffer);
    free(o->exp_avg_sq_row);
    free(o->exp_avg_sq_col);
    free(o->work);
    adamw8bit_free(o);
    memset(o, 0, sizeof *o);
}

/* torch.optim.AdamW, single-tensor path (what CPU tensors use). */
static void adamw_step(Optimizer *o, float *p, const float *grad, double lr) {
    const OptimizerConfig *c = &o->cfg;
    o->step++;
    double step = (double)o->step;
    if (c->weight_decay != 0.0) {
        float decay = (float)(1.0 - lr * c->weight_decay);
        for (size_t i = 0; i < o->numel; i++)
            p[i] = p[i] * decay;
    }
    /* exp_avg.lerp_(grad, 1 - beta1): torch's vector lerp is one fused multiply-add from the
     * nearer end */
    float w = (float)(1.0 - c->beta1);
    bool small = fabsf(w) < 0.5f;
    float coeff = small ? w : w - 1.0f;
    float one_minus_b2 = (float)(1.0 - c->beta2), b2 = (float)c->beta2;
    double bc1 = 1.0 - pow(c->beta1, step), bc2 = 1.0 - pow(c->beta2, step);
    float neg_step_size = (float)-(lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float eps = (float)c->eps;
    for (size_t i = 0; i < o->numel; i++) {
        float g = c->maximize ? -grad[i] : grad[i];
        float m = o->exp_avg[i];
        m = fmaf(coeff, g - m, small ? m : g);
        o->exp_avg[i] = m;
        /* mul_(beta2).addcmul_(grad, grad, value=1 - beta2): the vector kernel fuses the
         * last multiply with the add */
        float v = o->exp_avg_sq[i] * b2;
        v = fmaf(one_minus_b2 * g, g, v);
        o->exp_avg_sq[i] = v;
        if (c->amsgrad) {
            if (v > o->max_exp_avg_sq[i] || v != v)
                o->max_exp_avg_sq[i] = v;
            v = o->max_exp_avg_sq[i];
        }
        float denom = sqrtf(v) / bc2_sqrt + eps;
        p[i] = p[i] + neg_step_size * m / denom;
    }
}

/* lion_pytorch.Lion's update_fn. */
static void lion_step(Optimizer *o, float *p, const float *grad, double lr) {
    const OptimizerConfig *c = &o->cfg;
    o->step++;
    double wd = c->weight_decay;
    if (c->decoupled_weight_decay)
        wd /= c->lr; /* lion-pytorch divides by the initial lr */
    float decay = (float)(1.0 - lr * wd);
    float b1 = (float)c->beta1, a1 = (float)(1.0 - c->beta1);
    float b2 = (float)c->beta2, a2 = (float)(1.0 - c->beta2);
    float neg_lr = (float)-lr;
    for (size_t i = 0; i < o->numel; i++) {
        float x = p[i] * decay;
        float u = fmaf(grad[i], a1, o->exp_avg[i] * b1);
        float s = u > 0.0f ? 1.0f : u < 0.0f ? -1.0f : 0.0f;
        p[i] = fmaf(s, neg_lr, x);
        o->exp_avg[i] = fmaf(grad[i], a2, o->exp_avg[i] * b2);
    }
}

/* torch.optim.SGD(momentum, nesterov=True), single-tensor path. */
static void sgd_step(Optimizer *o, float *p, const float *grad, double lr) {
    const OptimizerConfig *c = &o->cfg;
    o->step++;
    float wd = (float)c->weight_decay, m = (float)c->momentum;
    float keep = (float)(1.0 - c->dampening), neg_lr = (float)-lr;
    for (size_t i = 0; i < o->numel; i++) {
        float g = c->maximize ? -grad[i] : grad[i];
        if (c->weight_decay != 0.0)
            g = fmaf(p[i], wd, g);
        float b;
        if (!o->has_momentum_buffer)
            b = g; /* torch: the buffer starts as a copy of the first gradient */
        else
            b = fmaf(g, keep, o->momentum_buffer[i] * m);
        o->momentum_buffer[i] = b;
        g = fmaf(b, m, g);
        p[i] = fmaf(g, neg_lr, p[i]);
    }
    o->has_momentum_buffer = true;
}

/* tensor.norm(2) / sqrt(numel), the RMS transformers' Adafactor uses (float result). */
static float rms_of(const float *x, size_t n) {
    double ss = 0.0;
    for (size_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float norm = (float)sqrt(ss);
    return norm / (float)sqrt((double)n);
}

/* transformers' Adafactor._get_lr: relative step size, times the parameter scale. With
 * scale_parameter the RMS is a float32 tensor, so the product is float32 too. */
static double adafactor_lr(const Optimizer *o, double lr) {
    const OptimizerConfig *c = &o->cfg;
    double rel = lr;
    double step = (double)o->step;
    if (c->relative_step) {
        double min_step = c->warmup_init ? 1e-6 * step : 1e-2;
        double inv = 1.0 / sqrt(step);
        rel = min_step < inv ? min_step : inv;
    }
    if (!c->scale_parameter)
        return rel;
    if (c->eps2 >= (double)o->rms) /* Python max() keeps its first argument on ties */
        return c->eps2 * rel;
    return (double)(o->rms * (float)rel);
}

double optimizer_effective_lr(const Optimizer *o, double lr) {
    if (o->cfg.kind != OPTIMIZER_ADAFACTOR || o->step == 0)
        return lr;
    return adafactor_lr(o, lr);
}

static void adafactor_step(Optimizer *o, float *p, const float *grad, double lr) {
    const OptimizerConfig *c = &o->cfg;
    size_t n = o->numel, rows = (size_t)o->rows, cols = (size_t)o->cols;
    float *u = o->work;
    o->step++;
    o->rms = rms_of(p, n);
    float step_lr = (float)adafactor_lr(o, lr);
    double beta2t = 1.0 - pow((double)o->step, c->decay_rate);
    float keep = (float)beta2t, add = (float)(1.0 - beta2t), eps1 = (float)c->eps1;
    for (size_t i = 0; i < n; i++)
        u[i] = grad[i] * grad[i] + eps1;
    if (o->ndim == 2) {
        /* row and column means of grad^2 + eps1 into the running averages */
        for (size_t r = 0; r < rows; r++) {
            double s = 0.0;
            for (size_t k = 0; k < cols; k++)
                s += u[r * cols + k];
            float mean = (float)(s / (double)cols);
            o->exp_avg_sq_row[r] = fmaf(mean, add, o->exp_avg_sq_row[r] * keep);
        }
        for (size_t k = 0; k < cols; k++) {
            double s = 0.0;
            for (size_t r = 0; r < rows; r++)
                s += u[r * cols + k];
            float mean = (float)(s / (double)rows);
            o->exp_avg_sq_col[k] = fmaf(mean, add, o->exp_avg_sq_col[k] * keep);
        }
        double s = 0.0;
        for (size_t r = 0; r < rows; r++)
            s += o->exp_avg_sq_row[r];
        float row_mean = (float)(s / (double)rows);
        for (size_t r = 0; r < rows; r++) {
            float rf = 1.0f / sqrtf(o->exp_avg_sq_row[r] / row_mean);
            for (size_t k = 0; k < cols; k++) {
                float cf = 1.0f / sqrtf(o->exp_avg_sq_col[k]);
                u[r * cols + k] = rf * cf * grad[r * cols + k];
            }
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            o->exp_avg_sq[i] = fmaf(u[i], add, o->exp_avg_sq[i] * keep);
            u[i] = 1.0f / sqrtf(o->exp_avg_sq[i]) * grad[i];
        }
    }
    float clip = rms_of(u, n) / (float)c->clip_threshold;
    if (clip < 1.0f)
        clip = 1.0f;
    for (size_t i = 0; i < n; i++)
        u[i] = u[i] / clip * step_lr;
    if (c->has_beta1) {
        float b1 = (float)c->beta1, a1 = (float)(1.0 - c->beta1);
        for (size_t i = 0; i < n; i++) {
            o->exp_avg[i] = fmaf(u[i], a1, o->exp_avg[i] * b1);
            u[i] = o->exp_avg[i];
        }
    }
    if (c->weight_decay != 0.0) {
        float wd = (float)(-c->weight_decay * (double)step_lr);
        for (size_t i = 0; i < n; i++)
            p[i] = fmaf(p[i], wd, p[i]);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = p[i] - u[i];
}

int optimizer_step(Optimizer *o, float *param, const float *grad, double lr, Error *err) {
    if (!isfinite(lr))
        return error_set(err, "optimizer: learning rate %g is not finite", lr);
    switch (o->cfg.kind) {
    case OPTIMIZER_ADAMW:
        adamw_step(o, param, grad, lr);
        break;
    case OPTIMIZER_LION:
        lion_step(o, param, grad, lr);
        break;
    case OPTIMIZER_SGD_NESTEROV:
        sgd_step(o, param, grad, lr);
        break;
    case OPTIMIZER_ADAFACTOR:
        adafactor_step(o, param, grad, lr);
        break;
    case OPTIMIZER_ADAMW8BIT:
        adamw8bit_step(o, param, grad, lr);
        break;
    }
    return 0;
}

double clip_grad_norm(float *const *grads, const size_t *sizes, int count, double max_norm) {
    /* torch: the 2-norm of the per-tensor 2-norms, each a float32 */
    double total_sq = 0.0;
    for (int t = 0; t < count; t++) {
        double ss = 0.0;
        for (size_t i = 0; i < sizes[t]; i++)
            ss += (double)grads[t][i] * grads[t][i];
        float norm = (float)sqrt(ss);
        total_sq += (double)norm * norm;
    }
    float total = (float)sqrt(total_sq);
    float coef = (float)max_norm / (total + 1e-6f);
    if (coef > 1.0f)
        coef = 1.0f;
    for (int t = 0; t < count; t++)
        for (size_t i = 0; i < sizes[t]; i++)
            grads[t][i] = grads[t][i] * coef;
    return total;
}

/* --- state ----------------------------------------------------------------------------------- */

typedef struct StateEntry {
    const char *name;
    float **data;
    size_t count;
} StateEntry;

static int state_entries(Optimizer *o, StateEntry *e) {
    int n = 0;
    if (o->state_8bit)
        return 0; /* exp_avg / exp_avg_sq are scratch; adamw8bit_state_* save the bytes */
    if (o->exp_avg)
        e[n++] = (StateEntry){"exp_avg", &o->exp_avg, o->numel};
    if (o->exp_avg_sq)
        e[n++] = (StateEntry){"exp_avg_sq", &o->exp_avg_sq, o->numel};
    if (o->max_exp_avg_sq)
        e[n++] = (StateEntry){"max_exp_avg_sq", &o->max_exp_avg_sq, o->numel};
    if (o->momentum_buffer)
        e[n++] = (StateEntry){"momentum_buffer", &o->momentum_buffer, o->numel};
    if (o->exp_avg_sq_row)
        e[n++] = (StateEntry){"exp_avg_sq_row", &o->exp_avg_sq_row, (size_t)o->rows};
    if (o->exp_avg_sq_col)
        e[n++] = (StateEntry){"exp_avg_sq_col", &o->exp_avg_sq_col, (size_t)o->cols};
    return n;
}

int optimizer_state_save(const Optimizer *o, TensorSet *out, const char *prefix, Error *err) {
    char name[128];
    StateEntry e[6];
    int n = state_entries((Optimizer *)o, e);
    int64_t one = 1;
    int64_t scalars[2] = {o->step, o->has_momentum_buffer};
    snprintf(name, sizeof name, "%sstep", prefix);
    if (tensor_set_add_copy(out, name, DTYPE_I64, 1, &one, &scalars[0], err) != 0)
        return -1;
    snprintf(name, sizeof name, "%shas_momentum_buffer", prefix);
    if (tensor_set_add_copy(out, name, DTYPE_I64, 1, &one, &scalars[1], err) != 0)
        return -1;
    snprintf(name, sizeof name, "%srms", prefix);
    if (tensor_set_add_copy(out, name, DTYPE_F32, 1, &one, &o->rms, err) != 0)
        return -1;
    for (int i = 0; i < n; i++) {
        int64_t shape[2] = {o->rows, o->cols};
        int ndim = o->ndim;
        if (strcmp(e[i].name, "exp_avg_sq_row") == 0 || strcmp(e[i].name, "exp_avg_sq_col") == 0) {
            ndim = 1;
            shape[0] = (int64_t)e[i].count;
        } else if (ndim == 1) {
            shape[0] = o->cols;
        }
        snprintf(name, sizeof name, "%s%s", prefix, e[i].name);
        if (tensor_set_add_copy(out, name, DTYPE_F32, ndim, shape, *e[i].data, err) != 0)
            return -1;
    }
    if (o->state_8bit && adamw8bit_state_save(o, out, prefix, err) != 0)
        return -1;
    snprintf(name, sizeof name, "%stype", prefix);
    return tensor_set_set_meta(out, name, optimizer_kind_name(o->cfg.kind), err);
}

static int load_exact(const TensorSet *in, const char *name, DType dtype, size_t count, void *dst,
                      Error *err) {
    const NamedTensor *t = tensor_set_find(in, name);
    if (!t)
        return error_set(err, "optimizer state: '%s' is missing", name);
    if (t->dtype != dtype || t->nbytes != count * dtype_size(dtype))
        return error_set(err, "optimizer state: '%s' has the wrong type or size", name);
    memcpy(dst, t->data, t->nbytes);
    return 0;
}

int optimizer_state_load(Optimizer *o, const TensorSet *in, const char *prefix, Error *err) {
    char name[128];
    snprintf(name, sizeof name, "%stype", prefix);
    const char *type = tensor_set_get_meta(in, name);
    if (!type || strcmp(type, optimizer_kind_name(o->cfg.kind)) != 0)
        return error_set(err, "optimizer state: saved for %s, this run uses %s",
                         type ? type : "an unknown optimizer", optimizer_kind_name(o->cfg.kind));
    int64_t scalars[2];
    snprintf(name, sizeof name, "%sstep", prefix);
    if (load_exact(in, name, DTYPE_I64, 1, &scalars[0], err) != 0)
        return -1;
    snprintf(name, sizeof name, "%shas_momentum_buffer", prefix);
    if (load_exact(in, name, DTYPE_I64, 1, &scalars[1], err) != 0)
        return -1;
    snprintf(name, sizeof name, "%srms", prefix);
    if (load_exact(in, name, DTYPE_F32, 1, &o->rms, err) != 0)
        return -1;
    StateEntry e[6];
    int n = state_entries(o, e);
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%s%s", prefix, e[i].name);
        if (load_exact(in, name, DTYPE_F32, e[i].count, *e[i].data, err) != 0)
            return -1;
    }
    if (o->state_8bit && adamw8bit_state_load(o, in, prefix, err) != 0)
        return -1;
    o->step = scalars[0];
    o->has_momentum_buffer = scalars[1] != 0;
    return 0;
}
