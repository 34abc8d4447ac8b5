// labels: unit golden
/* Optimizers against torch.optim.AdamW / SGD(nesterov), lion-pytorch's Lion and transformers'
 * Adafactor, five steps on given gradients (tools/reference/make_train_math_fixtures.py),
 * configured through --optimizer_args strings as kohya reads them. Measures, all
 * max|ours - ref| / max|ref|: the parameter after every step (<= 1e-6), the update
 * param_k - param_0 (<= 1e-5: it is small beside the parameter, so float32 rounding of the
 * parameter shows up in it), the final state tensors (<= 1e-6), Adafactor's learning rate and
 * RMS (<= 1e-6). Also: clip_grad_norm_ (norm and clipped gradients), a save/load of the state
 * after two steps that must continue bit for bit, and bad configurations. */
#include "train/optimizer.h"
#include "train_math_fixture.h"

static int args_from_json(const cJSON *args, char buf[][96], const char **out) {
    int n = 0;
    const cJSON *a;
    cJSON_ArrayForEach(a, args) {
        if (cJSON_IsBool(a))
            snprintf(buf[n], 96, "%s=%s", a->string, cJSON_IsTrue(a) ? "True" : "False");
        else if (cJSON_IsArray(a))
            snprintf(buf[n], 96, "%s=(%.17g,%.17g)", a->string,
                     cJSON_GetArrayItem(a, 0)->valuedouble, cJSON_GetArrayItem(a, 1)->valuedouble);
        else
            snprintf(buf[n], 96, "%s=%.17g", a->string, a->valuedouble);
        out[n] = buf[n];
        n++;
    }
    return n;
}

static void shape_of(const TrainMathFixture *f, const char *name, int *ndim, int64_t *shape) {
    const NamedTensor *t = tensor_set_find(&f->tensors, name);
    *ndim = t ? t->ndim : 1;
    for (int i = 0; i < *ndim; i++)
        shape[i] = t ? t->shape[i] : 1;
}

static int run_steps(Optimizer *o, const TrainMathFixture *f, const char *pname, float *param,
                     double lr, int from, int to, Error *err) {
    for (int k = from; k < to; k++) {
        char key[64];
        snprintf(key, sizeof key, "%s.grad%d", pname, k);
        const float *g = fixture_tensor(f, key, NULL);
        if (!g || optimizer_step(o, param, g, lr, err) != 0)
            return -1;
    }
    return 0;
}

static void test_case(const TrainMathFixture *f, const cJSON *c) {
    const char *name = json_str(c, "name"), *pname = json_str(c, "param");
    char buf[8][96];
    const char *args[8];
    int nargs = args_from_json(json_get(c, "args"), buf, args);
    double lr = json_num(c, "lr", 0);
    OptimizerConfig cfg;
    Error err = {0};
    CHECK_OK(
        optimizer_config_resolve(&cfg, json_str(c, "type"), false, false, lr, args, nargs, &err),
        &err);
    char key[96];
    snprintf(key, sizeof key, "%s.param0", pname);
    size_t n = 0;
    const float *p0 = fixture_tensor(f, key, &n);
    if (!p0)
        return;
    int ndim;
    int64_t shape[2];
    shape_of(f, key, &ndim, shape);
    Optimizer o;
    CHECK_OK(optimizer_init(&o, &cfg, ndim, shape, &err), &err);
    float *p = malloc(n * sizeof *p), *d = malloc(n * sizeof *d), *rd = malloc(n * sizeof *rd);
    memcpy(p, p0, n * sizeof *p);
    double worst_p = 0, worst_d = 0, worst_lr = 0;
    for (int k = 0; k < 5; k++) {
        CHECK_OK(run_steps(&o, f, pname, p, lr, k, k + 1, &err), &err);
        snprintf(key, sizeof key, "%s.param%d", name, k + 1);
        const float *ref = fixture_tensor(f, key, NULL);
        if (!ref)
            break;
        for (size_t i = 0; i < n; i++) {
            d[i] = p[i] - p0[i];
            rd[i] = ref[i] - p0[i];
        }
        double ep = rel_err(p, ref, n), ed = rel_err(d, rd, n);
        worst_p = ep > worst_p ? ep : worst_p;
        worst_d = ed > worst_d ? ed : worst_d;
        const cJSON *lrs = json_get(c, "adafactor_lr");
        if (lrs) {
            float ours = (float)optimizer_effective_lr(&o, lr);
            float theirs = (float)cJSON_GetArrayItem(lrs, k)->valuedouble;
            double e = rel_err(&ours, &theirs, 1);
            worst_lr = e > worst_lr ? e : worst_lr;
        }
    }
    double worst_s = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, json_get(c, "state")) {
        snprintf(key, sizeof key, "%s.state.%s", name, s->valuestring);
        size_t sn = 0;
        const float *ref = fixture_tensor(f, key, &sn);
        const float *ours = strcmp(s->valuestring, "exp_avg") == 0           ? o.exp_avg
                            : strcmp(s->valuestring, "exp_avg_sq") == 0      ? o.exp_avg_sq
                            : strcmp(s->valuestring, "max_exp_avg_sq") == 0  ? o.max_exp_avg_sq
                            : strcmp(s->valuestring, "momentum_buffer") == 0 ? o.momentum_buffer
                            : strcmp(s->valuestring, "exp_avg_sq_row") == 0  ? o.exp_avg_sq_row
                            : strcmp(s->valuestring, "exp_avg_sq_col") == 0  ? o.exp_avg_sq_col
                                                                             : NULL;
        CHECKF(ours != NULL, "%s: no state %s", name, s->valuestring);
        if (ours && ref) {
            double e = rel_err(ours, ref, sn);
            worst_s = e > worst_s ? e : worst_s;
        }
    }
    if (json_has(c, "RMS")) {
        float theirs = (float)json_num(c, "RMS", 0);
        double e = rel_err(&o.rms, &theirs, 1);
        worst_s = e > worst_s ? e : worst_s;
    }
    if (json_has(c, "step"))
        CHECK(o.step == (int64_t)json_num(c, "step", 0));
    printf("%-18s param rel %.3g, update rel %.3g, state rel %.3g, lr rel %.3g\n", name, worst_p,
           worst_d, worst_s, worst_lr);
    CHECKF(worst_p <= 1e-6 && worst_d <= 1e-5 && worst_s <= 1e-6 && worst_lr <= 1e-6,
           "%s: %.3g %.3g %.3g %.3g", name, worst_p, worst_d, worst_s, worst_lr);

    /* save after two steps, load into a new optimizer, continue: bit-identical */
    Optimizer a, b;
    float *pa = malloc(n * sizeof *pa);
    memcpy(pa, p0, n * sizeof *pa);
    CHECK_OK(optimizer_init(&a, &cfg, ndim, shape, &err), &err);
    CHECK_OK(run_steps(&a, f, pname, pa, lr, 0, 2, &err), &err);
    TensorSet st, back;
    tensor_set_init(&st);
    tensor_set_init(&back);
    CHECK_OK(optimizer_state_save(&a, &st, "optimizer.", &err), &err);
    char path[512];
    snprintf(path, sizeof path, "%s/%s.safetensors", test_tmp_dir("test_optimizer"), name);
    CHECK_OK(safetensors_write(path, &st, &err), &err);
    CHECK_OK(safetensors_open(path, &back, &err), &err);
    CHECK_OK(optimizer_init(&b, &cfg, ndim, shape, &err), &err);
    CHECK_OK(optimizer_state_load(&b, &back, "optimizer.", &err), &err);
    CHECK_OK(run_steps(&b, f, pname, pa, lr, 2, 5, &err), &err);
    CHECKF(memcmp(pa, p, n * sizeof *p) == 0, "%s: resumed run differs", name);
    optimizer_free(&a);
    optimizer_free(&b);
    tensor_set_free(&st);
    tensor_set_free(&back);
    free(pa);
    optimizer_free(&o);
    free(p);
    free(d);
    free(rd);
}

static void test_clip(const TrainMathFixture *f) {
    const cJSON *c;
    int i = 0;
    cJSON_ArrayForEach(c, json_get(f->json, "clip_cases")) {
        int count = (int)json_num(c, "count", 0);
        float *g[2] = {NULL, NULL};
        size_t sizes[2] = {0, 0};
        const float *ref[2] = {NULL, NULL};
        for (int j = 0; j < count; j++) {
            char key[64];
            snprintf(key, sizeof key, "clip%d.grad%d", i, j);
            const float *src = fixture_tensor(f, key, &sizes[j]);
            g[j] = malloc(sizes[j] * sizeof(float));
            memcpy(g[j], src, sizes[j] * sizeof(float));
            snprintf(key, sizeof key, "clip%d.clipped%d", i, j);
            ref[j] = fixture_tensor(f, key, NULL);
        }
        float total = (float)clip_grad_norm(g, sizes, count, json_num(c, "max_norm", 1));
        float rt = (float)json_num(c, "total_norm", 0);
        double e = rel_err(&total, &rt, 1);
        for (int j = 0; j < count; j++) {
            double ej = rel_err(g[j], ref[j], sizes[j]);
            e = ej > e ? ej : e;
            free(g[j]);
        }
        printf("clip case %d: rel %.3g\n", i, e);
        CHECKF(e <= 1e-6, "clip case %d: rel %.3g", i, e);
        i++;
    }
    CHECK(i == 3);
}

static void test_bad_configs(void) {
    OptimizerConfig c;
    Error err = {0};
    const char *a1[] = {"betas=(0.9,0.99)", "weight_decay=0.1"};
    CHECK_OK(optimizer_config_resolve(&c, "adamw", false, false, 1e-3, a1, 2, &err), &err);
    CHECK(c.kind == OPTIMIZER_ADAMW && c.beta2 == 0.99 && c.weight_decay == 0.1);
    CHECK_OK(optimizer_config_resolve(&c, "", false, true, 1e-4, NULL, 0, &err), &err);
    CHECK(c.kind == OPTIMIZER_LION && c.beta2 == 0.99 && c.weight_decay == 0.0);
    CHECK_OK(optimizer_config_resolve(&c, "SGDNesterov", false, false, 1e-2, NULL, 0, &err), &err);
    CHECK(c.momentum == 0.9);
    const char *a2[] = {"relative_step=False", "warmup_init=True"};
    CHECK_OK(optimizer_config_resolve(&c, "Adafactor", false, false, 1e-3, a2, 2, &err), &err);
    CHECK(c.relative_step); /* kohya turns it back on for warmup_init */
    CHECK_FAILS_WITH(
        optimizer_config_resolve(&c, "PagedAdamW8bit", false, false, 1e-3, NULL, 0, &err), &err,
        "--optimizer_type PagedAdamW8bit is not supported yet by sdti");
    CHECK_FAILS_WITH(optimizer_config_resolve(&c, "DAdaptAdam", false, false, 1, NULL, 0, &err),
                     &err, "not supported yet");
    CHECK_FAILS_WITH(optimizer_config_resolve(&c, "Lion", true, false, 1e-3, NULL, 0, &err), &err,
                     "both given");
    const char *b1[] = {"betas"};
    CHECK_FAILS_WITH(optimizer_config_resolve(&c, "AdamW", false, false, 1e-3, b1, 1, &err), &err,
                     "key=value");
    const char *b2[] = {"betas=0.9"};
    CHECK_FAILS_WITH(optimizer_config_resolve(&c, "AdamW", false, false, 1e-3, b2, 1, &err), &err,
                     "two numbers");
    const char *b3[] = {"foo=1"};
    CHECK_FAILS_WITH(optimizer_config_resolve(&c, "AdamW", false, false, 1e-3, b3, 1, &err), &err,
                     "foo=... is not supported yet by sdti for AdamW");
    const char *b4[] = {"eps=abc"};
    CHECK_FAILS_WITH(optimizer_config_resolve(&c, "AdamW", false, false, 1e-3, b4, 1, &err), &err,
                     "Python literal");
    const char *b5[] = {"momentum=0"};
    CHECK_FAILS_WITH(optimizer_config_resolve(&c, "SGDNesterov", false, false, 1e-3, b5, 1, &err),
                     &err, "Nesterov");
    const char *b6[] = {"lr=0.1"};
    CHECK_FAILS_WITH(optimizer_config_resolve(&c, "AdamW", false, false, 1e-3, b6, 1, &err), &err,
                     "--learning_rate");
    /* state of another optimizer */
    Optimizer o;
    int64_t shape[1] = {4};
    CHECK_OK(optimizer_config_resolve(&c, "AdamW", false, false, 1e-3, NULL, 0, &err), &err);
    CHECK_OK(optimizer_init(&o, &c, 1, shape, &err), &err);
    TensorSet st;
    tensor_set_init(&st);
    CHECK_OK(optimizer_state_save(&o, &st, "", &err), &err);
    optimizer_free(&o);
    CHECK_OK(optimizer_config_resolve(&c, "Lion", false, false, 1e-3, NULL, 0, &err), &err);
    CHECK_OK(optimizer_init(&o, &c, 1, shape, &err), &err);
    CHECK_FAILS_WITH(optimizer_state_load(&o, &st, "", &err), &err, "saved for AdamW");
    optimizer_free(&o);
    tensor_set_free(&st);
}

int main(void) {
    TrainMathFixture f;
    if (fixture_open(&f) != 0) {
        CHECKF(false, "cannot open the train_math fixtures");
        return test_finish();
    }
    const cJSON *c;
    int count = 0;
    cJSON_ArrayForEach(c, json_get(f.json, "opt_cases")) {
        test_case(&f, c);
        count++;
    }
    CHECK(count == 11);
    test_clip(&f);
    test_bad_configs();
    fixture_close(&f);
    return test_finish();
}
