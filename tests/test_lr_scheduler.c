// labels: unit golden
/* Learning-rate schedules against transformers' schedule functions driven through a torch
 * LambdaLR for 24 steps past a 20-step total (tools/reference/make_train_math_fixtures.py).
 * Both sides compute in double with the same libm, so the curves must be identical (the
 * measure max|ours - ref| / max|ref| is printed and must be 0, or at most 1e-15 if a libm
 * differs). Also kohya's int_or_float warmup, its refusals, and its epoch / accumulation
 * arithmetic. */
#include "train/lr_scheduler.h"
#include "train_math_fixture.h"

static void test_curves(const TrainMathFixture *f) {
    int64_t total = (int64_t)json_num(f->json, "sched_total", 0);
    double base = json_num(f->json, "sched_base_lr", 0);
    const cJSON *c;
    int count = 0;
    cJSON_ArrayForEach(c, json_get(f->json, "sched_cases")) {
        LrSchedulerSettings st = {0};
        st.name = json_str(c, "name");
        st.learning_rate = base;
        st.warmup = (StepsOrRatio){false, json_num(c, "warmup", 0)};
        st.max_train_steps = total;
        st.num_cycles = (int64_t)json_num(c, "num_cycles", 1);
        st.power = json_num(c, "power", 1.0);
        st.has_timescale = json_has(c, "timescale");
        st.timescale = (int64_t)json_num(c, "timescale", 0);
        st.has_min_lr_ratio = json_has(c, "min_lr_ratio");
        st.min_lr_ratio = json_num(c, "min_lr_ratio", 0);
        char arg[64];
        const char *args[1] = {arg};
        if (json_has(c, "lr_end")) {
            snprintf(arg, sizeof arg, "lr_end=%.17g", json_num(c, "lr_end", 0));
            st.args = args;
            st.arg_count = 1;
        }
        LrScheduler s;
        Error err = {0};
        CHECK_OK(lr_scheduler_resolve(&s, &st, &err), &err);
        const cJSON *lrs = json_get(c, "lr");
        double num = 0, den = 0;
        for (int k = 0; k < cJSON_GetArraySize(lrs); k++) {
            double ref = cJSON_GetArrayItem(lrs, k)->valuedouble;
            double ours = lr_scheduler_lr(&s, k);
            num = fmax(num, fabs(ours - ref));
            den = fmax(den, fabs(ref));
        }
        double e = den > 0 ? num / den : num;
        printf("%-22s warmup %2d: rel %.3g\n", st.name, (int)st.warmup.value, e);
        CHECKF(e <= 1e-15, "%s: rel %.3g", st.name, e);
        count++;
    }
    CHECK(count == 13);
}

static void test_kohya_rules(void) {
    Error err = {0};
    StepsOrRatio w;
    CHECK_OK(steps_or_ratio_parse("0.1", "lr_warmup_steps", &w, &err), &err);
    CHECK(w.is_ratio && w.value == 0.1);
    CHECK_OK(steps_or_ratio_parse("15%", "lr_warmup_steps", &w, &err), &err);
    CHECK(w.is_ratio && w.value == 0.15);
    CHECK_OK(steps_or_ratio_parse("100", "lr_warmup_steps", &w, &err), &err);
    CHECK(!w.is_ratio && w.value == 100);
    CHECK_FAILS_WITH(steps_or_ratio_parse("1.5", "lr_warmup_steps", &w, &err), &err,
                     "not an int or float");
    CHECK_FAILS_WITH(steps_or_ratio_parse("x%", "lr_warmup_steps", &w, &err), &err, "percentage");

    /* a ratio is truncated: int(0.15 * 30) = 4 */
    LrSchedulerSettings st = {.name = "linear",
                              .learning_rate = 1e-3,
                              .warmup = {true, 0.15},
                              .max_train_steps = 30,
                              .num_cycles = 1,
                              .power = 1};
    LrScheduler s;
    CHECK_OK(lr_scheduler_resolve(&s, &st, &err), &err);
    CHECK(s.warmup_steps == 4);

    st.name = "constant";
    CHECK_FAILS_WITH(lr_scheduler_resolve(&s, &st, &err), &err, "does not require");
    st.warmup = (StepsOrRatio){false, 0};
    st.adafactor_relative_step = true; /* becomes kohya's adafactor scheduler */
    CHECK_OK(lr_scheduler_resolve(&s, &st, &err), &err);
    CHECK(s.kind == LR_ADAFACTOR && lr_scheduler_lr(&s, 5) == 1e-3);
    st.warmup = (StepsOrRatio){false, 10};
    CHECK_FAILS_WITH(lr_scheduler_resolve(&s, &st, &err), &err, "adafactor does not require");
    st.adafactor_relative_step = false;
    st.warmup = (StepsOrRatio){false, 0};
    st.name = "adafactor";
    CHECK_FAILS_WITH(lr_scheduler_resolve(&s, &st, &err), &err, "needs --optimizer_type AdaFactor");
    st.name = "warmup_stable_decay";
    CHECK_FAILS_WITH(lr_scheduler_resolve(&s, &st, &err), &err, "not supported yet");
    st.name = "cosinus";
    CHECK_FAILS_WITH(lr_scheduler_resolve(&s, &st, &err), &err, "'cosinus'");
    st.name = "cosine_with_min_lr";
    CHECK_FAILS_WITH(lr_scheduler_resolve(&s, &st, &err), &err, "--lr_scheduler_min_lr_ratio");
    st.name = "polynomial";
    const char *big_end[] = {"lr_end=0.1"};
    st.args = big_end;
    st.arg_count = 1;
    CHECK_FAILS_WITH(lr_scheduler_resolve(&s, &st, &err), &err, "must be smaller");
    const char *other[] = {"last_epoch=3"};
    st.args = other;
    CHECK_FAILS_WITH(lr_scheduler_resolve(&s, &st, &err), &err, "last_epoch=... is not supported");
    st.args = NULL;
    st.arg_count = 0;
    st.scheduler_type = "CosineAnnealingLR";
    CHECK_FAILS_WITH(lr_scheduler_resolve(&s, &st, &err), &err,
                     "--lr_scheduler_type CosineAnnealingLR is not supported yet");

    /* epochs and accumulation: 10 batches, accumulation 4 -> 3 optimizer steps per epoch
     * (batches 3, 7 and the last one, 9) */
    CHECK(lr_steps_per_epoch(10, 4) == 3);
    CHECK(lr_epochs_for(1600, 3) == 534);
    CHECK(lr_epochs_for(6, 3) == 2);
    int syncs = 0;
    for (int b = 0; b < 10; b++)
        syncs += lr_is_sync_step(b, 10, 4);
    CHECK(syncs == 3 && lr_is_sync_step(3, 10, 4) && lr_is_sync_step(9, 10, 4) &&
          !lr_is_sync_step(8, 10, 4));
}

int main(void) {
    TrainMathFixture f;
    if (fixture_open(&f) != 0) {
        CHECKF(false, "cannot open the train_math fixtures");
        return test_finish();
    }
    test_curves(&f);
    test_kohya_rules();
    fixture_close(&f);
    return test_finish();
}
