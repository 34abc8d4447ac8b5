// labels: golden
/* sdti generate at an image size whose latents do not halve evenly at every UNet level, as
 * kohya allows (any multiple of 8): sd1-tiny's pipeline with a four-level UNet
 * (tests/fixtures/unet/levels4-unet.safetensors) at 40x24 pixels, 20x12 latents that round up
 * to 10x6, 5x3, 3x2 and come back through upsamplers given the skips' sizes, against diffusers'
 * StableDiffusionPipeline run as kohya runs it (tools/reference/make_generate_sizes_fixtures.py):
 * euler and euler_a, final latents within 1e-4 relative, decoded image within one grey level
 * on 99.9% of the pixels. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/image.h"
#include "formats/safetensors.h"
#include "generate/pipeline.h"
#include "test_util.h"

/* sd1-tiny's diffusers folder with the four-level UNet in place of its own (symlinks). */
static const char *assemble_model(void) {
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/model", test_tmp_dir("test_generate_sizes"));
    char src[1024], dst[1024];
    if (mkdir(dir, 0755) != 0)
        return NULL;
    const char *parts[] = {"model_index.json", "scheduler", "text_encoder", "tokenizer", "vae"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        snprintf(src, sizeof src, "%s/models/sd1-tiny/diffusers/%s", SDTI_FIXTURES, parts[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, parts[i]);
        if (symlink(src, dst) != 0)
            return NULL;
    }
    snprintf(dst, sizeof dst, "%s/unet", dir);
    if (mkdir(dst, 0755) != 0)
        return NULL;
    snprintf(src, sizeof src, "%s/generate_sizes/unet/config.json", SDTI_FIXTURES);
    snprintf(dst, sizeof dst, "%s/unet/config.json", dir);
    if (symlink(src, dst) != 0)
        return NULL;
    snprintf(src, sizeof src, "%s/unet/levels4-unet.safetensors", SDTI_FIXTURES);
    snprintf(dst, sizeof dst, "%s/unet/diffusion_pytorch_model.safetensors", dir);
    return symlink(src, dst) == 0 ? dir : NULL;
}

int main(void) {
    Error err = {{0}};
    TensorSet expected;
    tensor_set_init(&expected);
    CHECK_OK(safetensors_open(test_fixture("generate_sizes/expected.safetensors"), &expected, &err),
             &err);
    const char *dir = assemble_model();
    CHECKF(dir != NULL, "cannot assemble the model folder under $SDTI_TMP");
    if (!dir)
        return test_finish();
    char emb[1024];
    snprintf(emb, sizeof emb, "%s/generate/gentok.safetensors", SDTI_FIXTURES);
    const char *embs[1] = {emb};
    GenModelOptions mo = {.ckpt = dir, .storage = DTYPE_F32, .embeddings = embs, .n_embeddings = 1};
    GenModel m;
    CHECK_OK(gen_model_open(&m, &mo, &err), &err);
    const char *cases_json = tensor_set_get_meta(&expected, "cases");
    cJSON *cases = cases_json ? cJSON_Parse(cases_json) : NULL;
    CHECKF(cases != NULL, "expected.safetensors has no case list");
    cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        int w = cJSON_GetObjectItem(c, "width")->valueint;
        int h = cJSON_GetObjectItem(c, "height")->valueint;
        const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
        const char *negative = cJSON_GetObjectItem(c, "negative_prompt")->valuestring;
        int steps = cJSON_GetObjectItem(c, "steps")->valueint;
        double scale = cJSON_GetObjectItem(c, "scale")->valuedouble;
        SamplerKind kind;
        CHECK_OK(
            sampler_kind_from_name(cJSON_GetObjectItem(c, "sampler")->valuestring, &kind, &err),
            &err);
        GenBatchParams p = {.width = w,
                            .height = h,
                            .steps = steps,
                            .scale = scale,
                            .sampler = kind,
                            .max_multiples = 1};
        GenImageSpec item = {prompt, negative,
                             (int64_t)cJSON_GetObjectItem(c, "seed")->valuedouble};
        size_t nl = (size_t)4 * (h / m.vae_factor) * (w / m.vae_factor);
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
            snprintf(png, sizeof png, "%s/generate_sizes/%s.png", SDTI_FIXTURES, name);
            int worst;
            double bad = test_png_mismatch(rgb, png, w, h, &worst);
            printf("%-28s latents rel err %.2e, pixels off by >1: %.4f%%\n", name, e, 100 * bad);
            CHECKF(e <= 1e-4, "%s: latents rel err %.3e", name, e);
            CHECKF(bad <= 1e-3, "%s: %.3f%% of the pixels differ by more than one level", name,
                   100 * bad);
            free(ref);
        }
        free(lat);
        free(rgb);
    }
    cJSON_Delete(cases);
    gen_model_close(&m);
    tensor_set_free(&expected);
    return test_finish();
}
