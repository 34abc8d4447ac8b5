// labels: golden
/* sdti train's sample images against kohya's own training samples (train_util.sample_images
 * with its long-prompt pipeline, restated with diffusers by
 * tools/reference/make_train_sample_fixtures.py): for both tiny models (sd2-tiny as
 * --v_parameterization) with a 3-vector TI token in the text encoder, every sampler kohya can
 * run, the pipeline with kohya_training_sample set (what src/train/trainer_sample.c uses) gives
 * kohya's scheduler timesteps (exact; dpm_2's fractional ones to 1e-6 relative), final latents
 * (1e-4 relative) and PNG pixels (within one grey level). The switch off must still give
 * another image for ddim (gen_img_diffusers' steps_offset 1 and no clipping). */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/image.h"
#include "formats/safetensors.h"
#include "generate/pipeline.h"
#include "test_util.h"

static TensorSet expected;

static void check_timesteps(const char *name, SamplerKind kind, int steps, bool v) {
    char key[160];
    snprintf(key, sizeof key, "%s/timesteps", name);
    size_t nr = 0;
    float *ref = test_load_f32(&expected, key, &nr);
    SamplerConfig cfg;
    sampler_config_kohya_training(&cfg, kind, steps, v);
    Sampler *s = NULL;
    Error err = {{0}};
    CHECK_OK(sampler_create(&cfg, &s, &err), &err);
    if (s && ref) {
        CHECKF((size_t)sampler_num_model_calls(s) == nr, "%s: %d calls, kohya %zu", name,
               sampler_num_model_calls(s), nr);
        for (size_t i = 0; i < nr && i < (size_t)sampler_num_model_calls(s); i++)
            CHECKF(fabsf(sampler_timestep(s, (int)i) - ref[i]) <= 1e-6f * fabsf(ref[i]),
                   "%s: timestep %zu is %.6f, kohya %.6f", name, i, sampler_timestep(s, (int)i),
                   ref[i]);
    }
    sampler_free(s);
    free(ref);
}

static void check_model(const char *model, cJSON *cases) {
    char dir[1024], emb[1024];
    snprintf(dir, sizeof dir, "%s/models/%s/diffusers", SDTI_FIXTURES, model);
    snprintf(emb, sizeof emb, "%s/train_sample_kohya/kstok.safetensors", SDTI_FIXTURES);
    const char *embs[1] = {emb};
    bool v = strcmp(model, "sd2-tiny") == 0;
    GenModelOptions mo = {.ckpt = dir,
                          .v_parameterization = v,
                          .storage = DTYPE_F32,
                          .embeddings = embs,
                          .n_embeddings = 1};
    GenModel m;
    Error err = {{0}};
    CHECK_OK(gen_model_open(&m, &mo, &err), &err);
    if (err.message[0]) {
        gen_model_close(&m);
        return;
    }
    const char *prompt = tensor_set_get_meta(&expected, "prompt");
    int w = atoi(tensor_set_get_meta(&expected, "width"));
    int h = atoi(tensor_set_get_meta(&expected, "height"));
    int steps = atoi(tensor_set_get_meta(&expected, "steps"));
    double scale = atof(tensor_set_get_meta(&expected, "scale"));
    cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        if (strcmp(cJSON_GetObjectItem(c, "model")->valuestring, model) != 0)
            continue;
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        SamplerKind kind;
        CHECK_OK(
            sampler_kind_from_name(cJSON_GetObjectItem(c, "sampler")->valuestring, &kind, &err),
            &err);
        check_timesteps(name, kind, steps, v);
        /* as trainer_sample.c fills it: kohya's lpw default of 3 x 75 tokens */
        GenBatchParams p = {.width = w,
                            .height = h,
                            .steps = steps,
                            .scale = scale,
                            .sampler = kind,
                            .max_multiples = 3,
                            .kohya_training_sample = true};
        cJSON *neg = cJSON_GetObjectItem(c, "negative");
        GenImageSpec item = {prompt, cJSON_IsString(neg) ? neg->valuestring : "",
                             (int64_t)cJSON_GetObjectItem(c, "seed")->valuedouble};
        size_t nl = (size_t)m.latent_channels * (h / m.vae_factor) * (w / m.vae_factor);
        float *lat = malloc(nl * sizeof *lat);
        uint8_t *rgb = malloc((size_t)w * h * 3);
        Error e2 = {{0}};
        if (gen_pipeline_run(&m, &p, &item, 1, lat, rgb, NULL, NULL, &e2) != 0) {
            CHECKF(false, "%s: %s", name, e2.message);
        } else {
            char key[160], png[1024];
            snprintf(key, sizeof key, "%s/latents", name);
            size_t nr = 0;
            float *ref = test_load_f32(&expected, key, &nr);
            double e = ref && nr == nl ? test_max_rel_err(lat, ref, nr) : 1e9;
            snprintf(png, sizeof png, "%s/train_sample_kohya/%s.png", SDTI_FIXTURES, name);
            int worst;
            test_png_mismatch(rgb, png, w, h, &worst);
            printf("%-24s latents rel err %.2e, largest pixel difference %d\n", name, e, worst);
            CHECKF(e <= 1e-4, "%s: latents rel err %.3e", name, e);
            CHECKF(worst <= 1, "%s: a pixel differs by %d grey levels", name, worst);
            if (kind == SAMPLER_DDIM && ref && nr == nl) {
                /* gen_img_diffusers' settings (the switch off) are another image */
                p.kohya_training_sample = false;
                if (gen_pipeline_run(&m, &p, &item, 1, lat, NULL, NULL, NULL, &e2) == 0) {
                    double off = test_max_rel_err(lat, ref, nr);
                    CHECKF(off > 1e-2, "%s: the switch off gives kohya's image too (%.3e)", name,
                           off);
                }
            }
            free(ref);
        }
        free(lat);
        free(rgb);
    }
    gen_model_close(&m);
}

int main(void) {
    Error err = {{0}};
    tensor_set_init(&expected);
    CHECK_OK(
        safetensors_open(test_fixture("train_sample_kohya/expected.safetensors"), &expected, &err),
        &err);
    if (err.message[0])
        return test_finish();
    cJSON *cases = cJSON_Parse(tensor_set_get_meta(&expected, "cases"));
    CHECK(cases != NULL);
    if (cases) {
        check_model("sd1-tiny", cases);
        check_model("sd2-tiny", cases);
    }
    cJSON_Delete(cases);
    tensor_set_free(&expected);
    return test_finish();
}
