/* --optimizer_type / --optimizer_args as kohya's train_util.get_optimizer reads them. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "train/optimizer.h"

const char *optimizer_kind_name(OptimizerKind kind) {
    switch (kind) {
    case OPTIMIZER_ADAMW:
        return "AdamW";
    case OPTIMIZER_LION:
        return "Lion";
    case OPTIMIZER_SGD_NESTEROV:
        return "SGDNesterov";
    case OPTIMIZER_ADAFACTOR:
        return "AdaFactor";
    case OPTIMIZER_ADAMW8BIT:
        return "AdamW8bit";
    }
    return "?";
}

/* A Python literal as ast.literal_eval reads the few shapes optimizer arguments take: a
 * number, True/False, None, or a tuple/list of numbers. */
typedef enum LiteralKind { LIT_NUMBER, LIT_BOOL, LIT_NONE, LIT_SEQUENCE } LiteralKind;
typedef struct Literal {
    LiteralKind kind;
    double values[4];
    int count; /* LIT_SEQUENCE */
    bool boolean;
} Literal;

static const char *skip_space(const char *s) {
    while (*s && isspace((unsigned char)*s))
        s++;
    return s;
}

static bool parse_number(const char **s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(*s, &end);
    if (end == *s || errno || !isfinite(v))
        return false;
    /* strtod also reads "inf", "nan" and hex floats, which literal_eval refuses */
    for (const char *p = *s; p < end; p++)
        if (isalpha((unsigned char)*p) && *p != 'e' && *p != 'E')
            return false;
    *out = v;
    *s = end;
    return true;
}

static bool parse_literal(const char *text, Literal *lit) {
    const char *s = skip_space(text);
    memset(lit, 0, sizeof *lit);
    if (*s == '(' || *s == '[') {
        char close = *s == '(' ? ')' : ']';
        s = skip_space(s + 1);
        lit->kind = LIT_SEQUENCE;
        while (*s != close) {
            if (lit->count == 4 || !parse_number(&s, &lit->values[lit->count++]))
                return false;
            s = skip_space(s);
            if (*s == ',')
                s = skip_space(s + 1);
            else if (*s != close)
                return false;
        }
        s++;
    } else if (strncmp(s, "True", 4) == 0 || strncmp(s, "False", 5) == 0) {
        lit->kind = LIT_BOOL;
        lit->boolean = *s == 'T';
        s += lit->boolean ? 4 : 5;
    } else if (strncmp(s, "None", 4) == 0) {
        lit->kind = LIT_NONE;
        s += 4;
    } else {
        lit->kind = LIT_NUMBER;
        if (!parse_number(&s, &lit->values[0]))
            return false;
    }
    return *skip_space(s) == '\0';
}

static int want_number(const char *key, const Literal *lit, double *out, Error *err) {
    if (lit->kind == LIT_BOOL) { /* Python: True == 1 */
        *out = lit->boolean ? 1.0 : 0.0;
        return 0;
    }
    if (lit->kind != LIT_NUMBER)
        return error_set(err, "--optimizer_args: %s expects a number", key);
    *out = lit->values[0];
    return 0;
}

static int want_bool(const char *key, const Literal *lit, bool *out, Error *err) {
    if (lit->kind == LIT_BOOL)
        *out = lit->boolean;
    else if (lit->kind == LIT_NUMBER)
        *out = lit->values[0] != 0.0;
    else
        return error_set(err, "--optimizer_args: %s expects True or False", key);
    return 0;
}

static int want_pair(const char *key, const Literal *lit, double *a, double *b, Error *err) {
    if (lit->kind != LIT_SEQUENCE || lit->count != 2)
        return error_set(err, "--optimizer_args: %s expects two numbers, e.g. %s=(0.9,0.999)", key,
                         key);
    *a = lit->values[0];
    *b = lit->values[1];
    return 0;
}

static void set_defaults(OptimizerConfig *c, OptimizerKind kind, double lr) {
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->lr = lr;
    switch (kind) {
    case OPTIMIZER_ADAMW8BIT: /* bnb.optim.AdamW8bit: AdamW's defaults and min_8bit_size */
    case OPTIMIZER_ADAMW:     /* torch.optim.AdamW */
        c->beta1 = 0.9;
        c->beta2 = 0.999;
        c->eps = 1e-8;
        c->weight_decay = 0.01;
        c->min_8bit_size = 4096;
        break;
    case OPTIMIZER_LION: /* lion_pytorch.Lion */
        c->beta1 = 0.9;
        c->beta2 = 0.99;
        break;
    case OPTIMIZER_SGD_NESTEROV: /* kohya sets momentum 0.9 when not given */
        c->momentum = 0.9;
        break;
    case OPTIMIZER_ADAFACTOR: /* transformers' Adafactor; kohya makes relative_step True */
        c->eps1 = 1e-30;
        c->eps2 = 1e-3;
        c->clip_threshold = 1.0;
        c->decay_rate = -0.8;
        c->scale_parameter = true;
        c->relative_step = true;
        break;
    }
}

/* bnb.optim.AdamW8bit(params, lr, betas, eps, weight_decay, amsgrad, optim_bits, args,
 * min_8bit_size, is_paged) */
static int apply_arg_8bit(OptimizerConfig *c, const char *key, const Literal *lit, Error *err) {
    if (strcmp(key, "betas") == 0)
        return want_pair(key, lit, &c->beta1, &c->beta2, err);
    if (strcmp(key, "eps") == 0)
        return want_number(key, lit, &c->eps, err);
    if (strcmp(key, "min_8bit_size") == 0)
        return want_number(key, lit, &c->min_8bit_size, err);
    if (strcmp(key, "amsgrad") == 0) {
        bool on = false;
        if (want_bool(key, lit, &on, err) != 0)
            return -1;
        return on ? error_set(err, "--optimizer_args: AdamW8bit does not support amsgrad=True "
                                   "(bitsandbytes refuses it); use --optimizer_type AdamW")
                  : 0;
    }
    if (strcmp(key, "optim_bits") == 0) {
        double bits = 0.0;
        if (want_number(key, lit, &bits, err) != 0)
            return -1;
        return bits != 32.0 ? error_set(err, "--optimizer_args: AdamW8bit only takes optim_bits=32 "
                                             "(bitsandbytes refuses other values; its state is "
                                             "8-bit anyway)")
                            : 0;
    }
    if (strcmp(key, "is_paged") == 0) {
        bool on = false;
        return want_bool(key, lit, &on, err); /* bitsandbytes on the CPU: never paged */
    }
    if (strcmp(key, "args") == 0)
        return lit->kind == LIT_NONE
                   ? 0
                   : error_set(err, "--optimizer_args: args=... is a Python object, which sdti "
                                    "cannot take; give its fields as optimizer arguments");
    if (strcmp(key, "percentile_clipping") == 0 || strcmp(key, "block_wise") == 0)
        return error_set(err,
                         "--optimizer_args: %s is not an argument of AdamW8bit in bitsandbytes "
                         "0.50 (older releases took it; kohya's call would fail with a TypeError)",
                         key);
    return error_set(err,
                     "--optimizer_args: %s=... is not an argument of AdamW8bit (betas, eps, "
                     "weight_decay, amsgrad, optim_bits, min_8bit_size, is_paged)",
                     key);
}

static int apply_arg(OptimizerConfig *c, const char *key, const Literal *lit, Error *err) {
    OptimizerKind k = c->kind;
    bool adamw = k == OPTIMIZER_ADAMW, lion = k == OPTIMIZER_LION;
    bool sgd = k == OPTIMIZER_SGD_NESTEROV, ada = k == OPTIMIZER_ADAFACTOR;
    if (strcmp(key, "lr") == 0)
        return error_set(err, "--optimizer_args: give the learning rate with --learning_rate "
                              "(kohya passes it as lr already)");
    if (strcmp(key, "weight_decay") == 0)
        return want_number(key, lit, &c->weight_decay, err);
    if (k == OPTIMIZER_ADAMW8BIT)
        return apply_arg_8bit(c, key, lit, err);
    if ((adamw || lion) && strcmp(key, "betas") == 0)
        return want_pair(key, lit, &c->beta1, &c->beta2, err);
    if (adamw && strcmp(key, "eps") == 0)
        return want_number(key, lit, &c->eps, err);
    if (adamw && strcmp(key, "amsgrad") == 0)
        return want_bool(key, lit, &c->amsgrad, err);
    if ((adamw || sgd) && strcmp(key, "maximize") == 0)
        return want_bool(key, lit, &c->maximize, err);
    if ((adamw || sgd) && strcmp(key, "foreach") == 0)
        return 0; /* the multi-tensor path: one parameter here, the same arithmetic */
    if (lion && strcmp(key, "use_triton") == 0)
        return 0; /* a GPU kernel of the same update */
    if (lion && strcmp(key, "decoupled_weight_decay") == 0)
        return want_bool(key, lit, &c->decoupled_weight_decay, err);
    if (sgd && strcmp(key, "momentum") == 0)
        return want_number(key, lit, &c->momentum, err);
    if (sgd && strcmp(key, "dampening") == 0)
        return want_number(key, lit, &c->dampening, err);
    if (ada && strcmp(key, "eps") == 0)
        return want_pair(key, lit, &c->eps1, &c->eps2, err);
    if (ada && strcmp(key, "clip_threshold") == 0)
        return want_number(key, lit, &c->clip_threshold, err);
    if (ada && strcmp(key, "decay_rate") == 0)
        return want_number(key, lit, &c->decay_rate, err);
    if (ada && strcmp(key, "beta1") == 0) {
        if (lit->kind == LIT_NONE) {
            c->has_beta1 = false;
            return 0;
        }
        c->has_beta1 = true;
        return want_number(key, lit, &c->beta1, err);
    }
    if (ada && strcmp(key, "scale_parameter") == 0)
        return want_bool(key, lit, &c->scale_parameter, err);
    if (ada && strcmp(key, "relative_step") == 0)
        return want_bool(key, lit, &c->relative_step, err);
    if (ada && strcmp(key, "warmup_init") == 0)
        return want_bool(key, lit, &c->warmup_init, err);
    return error_set(err, "--optimizer_args: %s=... is not supported yet by sdti for %s", key,
                     optimizer_kind_name(k));
}

int optimizer_config_resolve(OptimizerConfig *c, const char *optimizer_type, bool use_8bit_adam,
                             bool use_lion_optimizer, double learning_rate,
                             const char *const *optimizer_args, int arg_count, Error *err) {
    const char *type = optimizer_type ? optimizer_type : "";
    if (use_8bit_adam) {
        if (use_lion_optimizer)
            return error_set(err, "--use_8bit_adam and --use_lion_optimizer are both given");
        if (*type)
            return error_set(err, "--use_8bit_adam and --optimizer_type are both given");
        type = "AdamW8bit";
    } else if (use_lion_optimizer) {
        if (*type)
            return error_set(err, "--use_lion_optimizer and --optimizer_type are both given");
        type = "Lion";
    }
    if (!*type)
        type = "AdamW";
    OptimizerKind kind;
    if (strcasecmp(type, "AdamW") == 0)
        kind = OPTIMIZER_ADAMW;
    else if (strcasecmp(type, "Lion") == 0)
        kind = OPTIMIZER_LION;
    else if (strcasecmp(type, "SGDNesterov") == 0)
        kind = OPTIMIZER_SGD_NESTEROV;
    else if (strcasecmp(type, "AdaFactor") == 0)
        kind = OPTIMIZER_ADAFACTOR;
    else if (strcasecmp(type, "AdamW8bit") == 0)
        kind = OPTIMIZER_ADAMW8BIT;
    else
        return error_set(err,
                         "--optimizer_type %s is not supported yet by sdti (supported: AdamW, "
                         "AdamW8bit, Lion, SGDNesterov, AdaFactor)",
                         type);
    set_defaults(c, kind, learning_rate);

    for (int i = 0; i < arg_count; i++) {
        const char *arg = optimizer_args[i];
        const char *eq = strchr(arg, '=');
        if (!eq || strchr(eq + 1, '='))
            return error_set(err, "--optimizer_args: '%s' is not key=value", arg);
        char key[64];
        size_t len = (size_t)(eq - arg);
        if (len == 0 || len >= sizeof key)
            return error_set(err, "--optimizer_args: '%s' is not key=value", arg);
        memcpy(key, arg, len);
        key[len] = '\0';
        Literal lit;
        if (!parse_literal(eq + 1, &lit))
            return error_set(err,
                             "--optimizer_args: %s: '%s' is not a Python literal sdti reads "
                             "(a number, True, False, None, or a tuple of numbers)",
                             key, eq + 1);
        if (apply_arg(c, key, &lit, err) != 0)
            return -1;
    }

    if (kind == OPTIMIZER_SGD_NESTEROV && (c->momentum <= 0.0 || c->dampening != 0.0))
        return error_set(err, "SGDNesterov: Nesterov momentum needs momentum > 0 and dampening 0 "
                              "(as torch.optim.SGD requires)");
    if (kind == OPTIMIZER_ADAFACTOR) {
        /* kohya: warmup_init needs relative_step, which it then forces on */
        if (!c->relative_step && c->warmup_init)
            c->relative_step = true;
        if (!c->relative_step && !(c->lr > 0.0))
            return error_set(err, "AdaFactor with relative_step=False needs --learning_rate > 0");
    }
    if (kind == OPTIMIZER_LION && !(c->lr > 0.0))
        return error_set(err, "Lion needs --learning_rate > 0 (lion-pytorch asserts it)");
    if ((kind == OPTIMIZER_ADAMW || kind == OPTIMIZER_LION) &&
        (c->beta1 < 0.0 || c->beta1 >= 1.0 + (kind == OPTIMIZER_LION) || c->beta2 < 0.0 ||
         c->beta2 >= 1.0 + (kind == OPTIMIZER_LION)))
        return error_set(err, "%s: betas (%g, %g) must lie in [0, 1)", optimizer_kind_name(kind),
                         c->beta1, c->beta2);
    if (kind == OPTIMIZER_ADAMW8BIT) {
        /* bitsandbytes' Optimizer2State checks */
        if (!(c->beta1 >= 0.0 && c->beta1 < 1.0 && c->beta2 >= 0.0 && c->beta2 < 1.0))
            return error_set(err, "AdamW8bit: betas (%g, %g) must lie in [0, 1)", c->beta1,
                             c->beta2);
        if (!(c->eps >= 0.0))
            return error_set(err, "AdamW8bit: eps %g must not be negative", c->eps);
        if (!(c->weight_decay >= 0.0))
            return error_set(err, "AdamW8bit: weight_decay %g must not be negative",
                             c->weight_decay);
    }
    if (c->lr < 0.0)
        return error_set(err, "--learning_rate %g is negative", c->lr);
    return 0;
}
