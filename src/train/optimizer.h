/* The optimizers kohya's get_optimizer builds for --optimizer_type, with the semantics of the
 * Python classes behind them, on one float32 parameter tensor:
 *   AdamW        torch.optim.AdamW (betas 0.9/0.999, eps 1e-8, weight_decay 0.01, amsgrad)
 *   AdamW8bit    bitsandbytes' AdamW8bit on the CPU (optimizer_8bit.h): m and v stored as
 *                8-bit blocks of 256 values, 32-bit below min_8bit_size elements
 *   Lion         lion-pytorch's Lion (betas 0.9/0.99, weight_decay 0)
 *   SGDNesterov  torch.optim.SGD(nesterov=True), momentum 0.9 unless --optimizer_args says
 *   AdaFactor    transformers.optimization.Adafactor as kohya sets it up: relative_step true
 *                unless given, so the learning rate comes from the step count and the
 *                parameter's RMS (kohya then switches the scheduler to "adafactor")
 * and torch.nn.utils.clip_grad_norm_. --optimizer_args are parsed as kohya does
 * (key=value, the value a Python literal). The optimizer state goes to and from plain
 * tensors, so --save_state / --resume continue bit for bit.
 *
 * Where torch's CPU kernels fuse a multiply-add (add with alpha, lerp, ...), fmaf is used. */
#ifndef SDTI_TRAIN_OPTIMIZER_H
#define SDTI_TRAIN_OPTIMIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "formats/tensor_set.h"

typedef enum OptimizerKind {
    OPTIMIZER_ADAMW,
    OPTIMIZER_LION,
    OPTIMIZER_SGD_NESTEROV,
    OPTIMIZER_ADAFACTOR,
    OPTIMIZER_ADAMW8BIT,
} OptimizerKind;

typedef struct OptimizerConfig {
    OptimizerKind kind;
    double lr;           /* --learning_rate (Adafactor with relative_step: only logged) */
    double beta1, beta2; /* AdamW, AdamW8bit, Lion */
    double eps;          /* AdamW, AdamW8bit */
    double weight_decay;
    bool amsgrad;                /* AdamW */
    bool maximize;               /* AdamW, SGD */
    double momentum, dampening;  /* SGD */
    bool decoupled_weight_decay; /* Lion: weight decay divided by the initial lr */
    /* Adafactor */
    double eps1, eps2; /* eps=(1e-30, 1e-3) */
    double clip_threshold, decay_rate;
    bool has_beta1; /* beta1=None by default: no first moment */
    bool scale_parameter, relative_step, warmup_init;
    /* AdamW8bit: 8-bit state for tensors of at least min_8bit_size elements (4096), counted
     * on whole_numel when not 0: the tensor kohya hands bitsandbytes when sdti steps a part
     * of it (the trainer sets it) */
    double min_8bit_size;
    int64_t whole_numel;
} OptimizerConfig;

/* Resolves --optimizer_type (case-insensitive as kohya; "" is AdamW), the legacy
 * --use_8bit_adam / --use_lion_optimizer flags and --optimizer_args into a config, with each
 * class's defaults. Types that kohya knows but sdti does not run yet (the paged and other
 * 8-bit variants, D-Adaptation, Prodigy, schedule-free, class paths) fail with
 * "--optimizer_type X is not supported yet by sdti". */
int optimizer_config_resolve(OptimizerConfig *c, const char *optimizer_type, bool use_8bit_adam,
                             bool use_lion_optimizer, double learning_rate,
                             const char *const *optimizer_args, int arg_count, Error *err);
const char *optimizer_kind_name(OptimizerKind kind);

typedef struct Optimizer {
    OptimizerConfig cfg;
    int ndim;           /* 1 or 2 */
    int64_t rows, cols; /* a 1-D parameter has rows = 1 */
    size_t numel;
    int64_t step;             /* optimizer steps taken */
    float rms;                /* Adafactor: RMS of the parameter at the last step */
    bool has_momentum_buffer; /* SGD: torch creates it at the first step */
    float *exp_avg;           /* AdamW(8bit), Lion, Adafactor with beta1 */
    float *exp_avg_sq;        /* AdamW(8bit); Adafactor on a 1-D parameter */
    float *max_exp_avg_sq;    /* AdamW amsgrad */
    float *momentum_buffer;   /* SGD */
    float *exp_avg_sq_row;    /* Adafactor, 2-D: [rows] */
    float *exp_avg_sq_col;    /* Adafactor, 2-D: [cols] */
    float *work;              /* Adafactor scratch [numel] */
    /* AdamW8bit with 8-bit state (exp_avg / exp_avg_sq then hold the dequantized m, v) */
    bool state_8bit;
    size_t blocks;                     /* of 256 elements */
    uint8_t *state1, *state2;          /* [numel] code indices of m and v */
    float *absmax1, *absmax2;          /* [blocks] */
    struct BnbQuantMap *qmap1, *qmap2; /* signed map for m, unsigned for v */
} Optimizer;

/* State for a parameter of shape [n] (ndim 1) or [rows, cols] (ndim 2). Adafactor factors
 * its second moment over the last two dimensions, so it must see the whole parameter (kohya
 * trains the whole token-embedding matrix) to give kohya's numbers. */
int optimizer_init(Optimizer *o, const OptimizerConfig *c, int ndim, const int64_t *shape,
                   Error *err);
void optimizer_free(Optimizer *o);

/* One optimizer.step() with learning rate `lr` (the scheduler's current value; ignored by
 * Adafactor with relative_step). `grad` is read only. */
int optimizer_step(Optimizer *o, float *param, const float *grad, double lr, Error *err);

/* The learning rate Adafactor used at its last step (transformers' _get_lr), or `lr`. */
double optimizer_effective_lr(const Optimizer *o, double lr);

/* State as tensors named "<prefix>step", "<prefix>exp_avg", ... (I64 / F32), plus metadata
 * "<prefix>type". Load checks the type and every shape. */
int optimizer_state_save(const Optimizer *o, TensorSet *out, const char *prefix, Error *err);
int optimizer_state_load(Optimizer *o, const TensorSet *in, const char *prefix, Error *err);

/* torch.nn.utils.clip_grad_norm_(params, max_norm) over `count` gradient spans: the 2-norm of
 * all of them together; each is multiplied by min(max_norm / (norm + 1e-6), 1). Returns the
 * norm before clipping. kohya clips only on optimizer steps and only when --max_grad_norm is
 * not 0, over the gradient of the whole token-embedding matrix (every row a batch used). */
double clip_grad_norm(float *const *grads, const size_t *sizes, int count, double max_norm);

#endif
