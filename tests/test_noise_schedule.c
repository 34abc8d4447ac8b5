// labels: unit golden
/* The noise schedule, kohya's noise draw and the loss against diffusers / torch
 * (tools/reference/make_train_math_fixtures.py). betas, alphas_cumprod and the noise draws
 * without pyramid noise or adaptive offsets are compared bit for bit; everything else by
 * max|ours - ref| / max|ref| <= 1e-6 (torch sums in another order, and its float sqrt is MKL's,
 * not correctly rounded everywhere); counts of differing elements are printed. The loss gradient is
 * also checked against central finite differences of our own forward. */
#include <inttypes.h>

#include "base/rng_torch.h"
#include "train/loss.h"
#include "train/noise_schedule.h"
#include "train_math_fixture.h"

static void test_schedule(const TrainMathFixture *f) {
    NoiseSchedule s, z;
    noise_schedule_init(&s, false);
    noise_schedule_init(&z, true);
    size_t n = 0;
    const float *betas = fixture_tensor(f, "sched.betas", &n);
    const float *acp = fixture_tensor(f, "sched.alphas_cumprod", NULL);
    const float *snr = fixture_tensor(f, "sched.all_snr", NULL);
    const float *zb = fixture_tensor(f, "sched_zts.betas", NULL);
    const float *za = fixture_tensor(f, "sched_zts.alphas_cumprod", NULL);
    if (!betas || !acp || !snr || !zb || !za)
        return;
    CHECK(n == NOISE_SCHEDULE_STEPS);
    CHECKF(bits_differ(s.betas, betas, n) == 0, "betas: %zu differ",
           bits_differ(s.betas, betas, n));
    CHECKF(bits_differ(s.alphas_cumprod, acp, n) == 0, "alphas_cumprod: %zu differ",
           bits_differ(s.alphas_cumprod, acp, n));
    /* torch's float sqrt goes through MKL's vector math, which is not correctly rounded for a
     * few inputs (5 of the 1000 alphas_cumprod): whatever takes a square root matches to
     * about one ulp rather than bit for bit. */
    printf("all_snr: %zu differ, rel %.3g; zts betas: %zu differ, rel %.3g; zts "
           "alphas_cumprod: %zu differ, rel %.3g\n",
           bits_differ(s.all_snr, snr, n), rel_err(s.all_snr, snr, n), bits_differ(z.betas, zb, n),
           rel_err(z.betas, zb, n), bits_differ(z.alphas_cumprod, za, n),
           rel_err(z.alphas_cumprod, za, n));
    CHECK(rel_err(s.all_snr, snr, n) <= 1e-6);
    CHECK(rel_err(z.betas, zb, n) <= 1e-6);
    CHECK(rel_err(z.alphas_cumprod, za, n) <= 1e-6);
    CHECK(z.alphas_cumprod[NOISE_SCHEDULE_STEPS - 1] == 0.0f);
    CHECK(memcmp(z.all_snr, s.all_snr, sizeof s.all_snr) == 0); /* kohya: SNR before the fix */
}

static void test_add_noise(const TrainMathFixture *f) {
    size_t n = 0;
    const float *lat = fixture_tensor(f, "addnoise.latents", &n);
    const float *noi = fixture_tensor(f, "addnoise.noise", NULL);
    const cJSON *jt = json_get(f->json, "addnoise_timesteps");
    if (!lat || !noi || cJSON_GetArraySize(jt) != 3)
        return;
    int64_t t[3];
    for (int i = 0; i < 3; i++)
        t[i] = (int64_t)cJSON_GetArrayItem(jt, i)->valuedouble;
    float *out = malloc(n * sizeof *out);
    for (int zts = 0; zts < 2; zts++) {
        NoiseSchedule s;
        noise_schedule_init(&s, zts);
        const char *names[2][2] = {{"addnoise.noisy", "addnoise.velocity"},
                                   {"addnoise_zts.noisy", "addnoise_zts.velocity"}};
        noise_schedule_add_noise(&s, 3, n / 3, lat, noi, t, out);
        const float *ref = fixture_tensor(f, names[zts][0], NULL);
        CHECKF(ref && rel_err(out, ref, n) <= 1e-6, "%s: %zu differ", names[zts][0],
               ref ? bits_differ(out, ref, n) : n);
        noise_schedule_velocity(&s, 3, n / 3, lat, noi, t, out);
        ref = fixture_tensor(f, names[zts][1], NULL);
        CHECKF(ref && rel_err(out, ref, n) <= 1e-6, "%s: %zu differ", names[zts][1],
               ref ? bits_differ(out, ref, n) : n);
    }
    free(out);
}

static void test_upsample(const TrainMathFixture *f) {
    const cJSON *cases = json_get(f->json, "upsample");
    int i = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const cJSON *in = json_get(c, "in"), *size = json_get(c, "size");
        int shape[4], out_hw[2];
        for (int k = 0; k < 4; k++)
            shape[k] = cJSON_GetArrayItem(in, k)->valueint;
        for (int k = 0; k < 2; k++)
            out_hw[k] = cJSON_GetArrayItem(size, k)->valueint;
        char name[64];
        snprintf(name, sizeof name, "upsample%d.in", i);
        const float *x = fixture_tensor(f, name, NULL);
        snprintf(name, sizeof name, "upsample%d.out", i);
        size_t n = 0;
        const float *ref = fixture_tensor(f, name, &n);
        if (x && ref) {
            float *y = malloc(n * sizeof *y);
            upsample_bilinear_forward(shape[0] * shape[1], shape[2], shape[3], out_hw[0], out_hw[1],
                                      x, y);
            printf("upsample %d: %zu of %zu differ, rel %.3g\n", i, bits_differ(y, ref, n), n,
                   rel_err(y, ref, n));
            CHECKF(rel_err(y, ref, n) <= 1e-6, "upsample %d: rel %.3g", i, rel_err(y, ref, n));
            free(y);
        }
        i++;
    }
    CHECK(i == 5);
}

static void test_noise_draws(const TrainMathFixture *f) {
    size_t n = 0;
    const float *lat = fixture_tensor(f, "noise.latents", &n);
    if (!lat)
        return;
    const int B = 2, C = 4, H = 16, W = 12;
    CHECK(n == (size_t)B * C * H * W);
    float *noise = malloc(n * sizeof *noise), *noisy = malloc(n * sizeof *noisy);
    const cJSON *c;
    int count = 0;
    cJSON_ArrayForEach(c, json_get(f->json, "noise_cases")) {
        const char *name = json_str(c, "name");
        TrainNoiseOptions o;
        train_noise_options_default(&o);
        o.noise_offset = json_num(c, "noise_offset", 0.0);
        o.noise_offset_random_strength = json_num(c, "noise_offset_random_strength", 0) != 0;
        o.has_adaptive_noise_scale = json_has(c, "adaptive_noise_scale");
        o.adaptive_noise_scale = json_num(c, "adaptive_noise_scale", 0.0);
        o.multires_noise_iterations = (int)json_num(c, "multires_noise_iterations", 0);
        o.multires_noise_discount = json_num(c, "multires_noise_discount", 0.3);
        o.ip_noise_gamma = json_num(c, "ip_noise_gamma", 0.0);
        o.ip_noise_gamma_random_strength = json_num(c, "ip_noise_gamma_random_strength", 0) != 0;
        o.min_timestep = (int)json_num(c, "min_timestep", 0);
        o.max_timestep = (int)json_num(c, "max_timestep", 1000);
        NoiseSchedule s;
        noise_schedule_init(&s, json_num(c, "zero_terminal_snr", 0) != 0);
        TorchGenerator g;
        torch_rng_init(&g, (uint64_t)json_num(c, "seed", 0));
        /* the fixture drew from random.Random(seed) */
        PyRandom py, py_ref;
        py_random_seed(&py, (int64_t)json_num(c, "seed", 0));
        py_ref = py;
        int64_t t[2];
        Error err = {0};
        CHECK_OK(train_noise_draw(&s, &o, &g, &py, B, C, H, W, lat, noise, noisy, t, &err), &err);
        const cJSON *jt = json_get(c, "timesteps");
        for (int b = 0; b < B; b++)
            CHECKF(t[b] == (int64_t)cJSON_GetArrayItem(jt, b)->valuedouble,
                   "%s: timestep %d is %" PRId64, name, b, t[b]);
        /* it drew exactly the recorded Python values */
        const cJSON *draws = json_get(c, "py_random");
        for (int k = 0; k < cJSON_GetArraySize(draws); k++)
            CHECKF(py_random_random(&py_ref) == cJSON_GetArrayItem(draws, k)->valuedouble,
                   "%s: Python draw %d differs", name, k);
        CHECKF(memcmp(&py, &py_ref, sizeof py) == 0, "%s: used another number of Python draws",
               name);
        char key[96];
        snprintf(key, sizeof key, "noise.%s.noise", name);
        const float *rn = fixture_tensor(f, key, NULL);
        snprintf(key, sizeof key, "noise.%s.noisy", name);
        const float *ry = fixture_tensor(f, key, NULL);
        if (rn && ry) {
            double en = rel_err(noise, rn, n), ey = rel_err(noisy, ry, n);
            printf("noise %-16s noise: %4zu differ (rel %.3g)  noisy: %4zu differ (rel %.3g)\n",
                   name, bits_differ(noise, rn, n), en, bits_differ(noisy, ry, n), ey);
            CHECKF(en <= 1e-6 && ey <= 1e-6, "%s: rel %.3g / %.3g", name, en, ey);
            /* without pyramid noise or an adaptive mean every operation is elementwise in
             * torch's order: those must be identical */
            if (!o.multires_noise_iterations && !o.has_adaptive_noise_scale)
                CHECKF(bits_differ(noise, rn, n) == 0 && bits_differ(noisy, ry, n) == 0,
                       "%s: not bit-identical", name);
        }
        count++;
    }
    CHECK(count == 12);
    free(noise);
    free(noisy);
}

static void loss_options_from(const cJSON *c, TrainLossOptions *o, bool *zts) {
    Error err = {0};
    train_loss_options_default(o);
    CHECK_OK(loss_type_from_name(json_str(c, "loss_type"), &o->loss_type, &err), &err);
    CHECK_OK(huber_schedule_from_name(json_str(c, "huber_schedule"), &o->huber_schedule, &err),
             &err);
    o->huber_c = json_num(c, "huber_c", 0.1);
    o->huber_scale = json_num(c, "huber_scale", 1.0);
    o->v_parameterization = json_num(c, "v_parameterization", 0) != 0;
    o->min_snr_gamma = json_num(c, "min_snr_gamma", 0);
    o->scale_v_pred_loss_like_noise_pred = json_num(c, "scale_v_pred_loss_like_noise_pred", 0);
    o->v_pred_like_loss = json_num(c, "v_pred_like_loss", 0);
    o->debiased_estimation_loss = json_num(c, "debiased_estimation_loss", 0) != 0;
    *zts = json_num(c, "zero_terminal_snr", 0) != 0;
}

static void test_loss(const TrainMathFixture *f) {
    size_t n = 0;
    const float *pred = fixture_tensor(f, "loss.pred", &n);
    const float *target = fixture_tensor(f, "loss.target", NULL);
    if (!pred || !target)
        return;
    const int B = 4;
    size_t per = n / B;
    int64_t t[4];
    float w[4];
    for (int b = 0; b < B; b++) {
        t[b] = (int64_t)cJSON_GetArrayItem(json_get(f->json, "loss_timesteps"), b)->valuedouble;
        w[b] = (float)cJSON_GetArrayItem(json_get(f->json, "loss_weights"), b)->valuedouble;
    }
    const float *mask = fixture_tensor(f, "loss.alpha_mask", NULL); /* [4, 48, 40] */
    float *grad = malloc(n * sizeof *grad), *work = malloc(n * sizeof *work);
    const cJSON *c;
    int i = 0;
    double worst_fd = 0.0;
    cJSON_ArrayForEach(c, json_get(f->json, "loss_cases")) {
        TrainLossOptions o;
        bool zts;
        loss_options_from(c, &o, &zts);
        NoiseSchedule s;
        noise_schedule_init(&s, zts);
        float per_sample[4], loss;
        Error err = {0};
        bool masked = json_num(c, "alpha_mask", 0) != 0;
        TrainLossBatch lb = {B, 4, 6, 5, pred, target, t, w, masked ? mask : NULL, 48, 40};
        CHECK(per == 4 * 6 * 5);
        CHECK_OK(train_loss_forward_backward(&s, &o, &lb, 1.0f, per_sample, &loss, grad, &err),
                 &err);
        char key[64];
        snprintf(key, sizeof key, "loss%d.per_sample", i);
        const float *rps = fixture_tensor(f, key, NULL);
        snprintf(key, sizeof key, "loss%d.grad", i);
        const float *rg = fixture_tensor(f, key, NULL);
        float rl = (float)json_num(c, "loss", NAN);
        if (rps && rg) {
            double eps = rel_err(per_sample, rps, 4), el = rel_err(&loss, &rl, 1);
            double eg = rel_err(grad, rg, n);
            printf("loss case %2d (%s/%s): per-sample rel %.3g, loss rel %.3g, grad rel %.3g\n", i,
                   json_str(c, "loss_type"), json_str(c, "huber_schedule"), eps, el, eg);
            CHECKF(eps <= 1e-6 && el <= 1e-6 && eg <= 1e-6, "loss case %d: %.3g %.3g %.3g", i, eps,
                   el, eg);
        }
        /* finite differences of our own forward at a few elements (double the step, compare
         * in float: 2e-3 relative to the largest gradient) */
        memcpy(work, pred, n * sizeof *work);
        float gmax = 0.0f;
        for (size_t k = 0; k < n; k++)
            gmax = fabsf(grad[k]) > gmax ? fabsf(grad[k]) : gmax;
        for (size_t k = 1; k < n; k += n / 7) {
            const float h = 1e-2f;
            float lp, lm;
            TrainLossBatch wb = lb;
            wb.pred = work;
            work[k] = pred[k] + h;
            train_loss_forward_backward(&s, &o, &wb, 1.0f, NULL, &lp, NULL, &err);
            work[k] = pred[k] - h;
            train_loss_forward_backward(&s, &o, &wb, 1.0f, NULL, &lm, NULL, &err);
            work[k] = pred[k];
            double fd = ((double)lp - (double)lm) / (2.0 * h);
            double e = fabs(fd - grad[k]) / gmax;
            worst_fd = e > worst_fd ? e : worst_fd;
        }
        i++;
    }
    printf("loss gradient vs finite differences: worst %.3g of the largest gradient\n", worst_fd);
    CHECK(worst_fd < 2e-2);
    CHECK(i == 19);
    free(grad);
    free(work);
}

static void test_bad_inputs(void) {
    NoiseSchedule s;
    noise_schedule_init(&s, false);
    TrainNoiseOptions o;
    train_noise_options_default(&o);
    TorchGenerator g;
    torch_rng_init(&g, 1);
    float lat[4] = {0}, noise[4], noisy[4];
    int64_t t[1];
    Error err = {0};
    o.max_timestep = 1001;
    CHECK_FAILS_WITH(train_noise_draw(&s, &o, &g, NULL, 1, 1, 2, 2, lat, noise, noisy, t, &err),
                     &err, "outside");
    train_noise_options_default(&o);
    o.multires_noise_iterations = 2;
    CHECK_FAILS_WITH(train_noise_draw(&s, &o, &g, NULL, 1, 1, 2, 2, lat, noise, noisy, t, &err),
                     &err, "random");
    LossType lt;
    CHECK_FAILS_WITH(loss_type_from_name("l3", &lt, &err), &err, "l3");
    TrainLossOptions lo;
    train_loss_options_default(&lo);
    int64_t bad_t = 1000;
    float loss;
    TrainLossBatch lb = {1, 1, 2, 2, lat, lat, &bad_t, NULL, NULL, 0, 0};
    CHECK_FAILS_WITH(train_loss_forward_backward(&s, &lo, &lb, 1.0f, NULL, &loss, NULL, &err), &err,
                     "timestep 1000");
    int64_t good_t = 10;
    float small_mask[1] = {1.0f};
    lb = (TrainLossBatch){1, 1, 2, 2, lat, lat, &good_t, NULL, small_mask, 1, 1};
    CHECK_FAILS_WITH(train_loss_forward_backward(&s, &lo, &lb, 1.0f, NULL, &loss, NULL, &err), &err,
                     "smaller than the latent");
}

int main(void) {
    TrainMathFixture f;
    if (fixture_open(&f) != 0) {
        CHECKF(false, "cannot open the train_math fixtures");
        return test_finish();
    }
    test_schedule(&f);
    test_add_noise(&f);
    test_upsample(&f);
    test_noise_draws(&f);
    test_loss(&f);
    test_bad_inputs();
    fixture_close(&f);
    return test_finish();
}
