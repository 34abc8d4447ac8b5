// labels: golden cli
/* sdti generate against diffusers' StableDiffusionPipeline run as kohya's gen_img_diffusers.py
 * runs it (tools/reference/make_generate_fixtures.py): for both tiny models, every sampler and
 * two sizes (one non-square), the final latents (1e-4 relative), the decoded image (within one
 * grey level on 99.9% of the pixels), the text encoder output of a prompt with a TI embedding
 * and of a weighted prompt longer than 75 tokens (1e-4); then the command line: one run whose
 * PNG and metadata are checked, and a table of bad inputs with their errors. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/image.h"
#include "formats/safetensors.h"
#include "generate/pipeline.h"
#include "generate/text_condition.h"
#include "test_util.h"

static TensorSet expected;

static void check_text(GenModel *m, const char *model) {
    Error err = {{0}};
    const char *prompt = tensor_set_get_meta(&expected, "prompt");
    const char *weighted = tensor_set_get_meta(&expected, "weighted_prompt");
    char key[128];
    for (int which = 0; which < 2; which++) {
        TextConditioner tc = {&m->clip, m->tok, &m->embeddings, 0, which == 0 ? 1 : 2, false};
        const char *texts[1] = {which == 0 ? prompt : weighted};
        int k = 0;
        float *hidden = NULL;
        CHECK_OK(text_condition_encode(m->ctx, &tc, texts, 1, &k, &hidden, &err), &err);
        snprintf(key, sizeof key, "%s/%s", model, which == 0 ? "te_embedding" : "te_weighted");
        size_t n = 0;
        float *ref = test_load_f32(&expected, key, &n);
        CHECKF(ref && hidden && n == (size_t)77 * k * 8, "%s: %zu values, k %d", key, n, k);
        if (ref && hidden && n == (size_t)77 * k * 8) {
            double e = test_max_rel_err(hidden, ref, n);
            printf("%-28s k=%d rel err %.2e\n", key, k, e);
            CHECKF(e <= 1e-4, "%s: rel err %.3e", key, e);
        }
        free(ref);
        free(hidden);
    }
}

static void check_model(const char *model, cJSON *cases) {
    char dir[1024], emb[1024];
    snprintf(dir, sizeof dir, "%s/models/%s/diffusers", SDTI_FIXTURES, model);
    snprintf(emb, sizeof emb, "%s/generate/gentok.safetensors", SDTI_FIXTURES);
    const char *embs[1] = {emb};
    GenModelOptions mo = {.ckpt = dir,
                          .v_parameterization = strcmp(model, "sd2-tiny") == 0,
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
    check_text(&m, model);
    const char *prompt = tensor_set_get_meta(&expected, "prompt");
    const char *negative = tensor_set_get_meta(&expected, "negative_prompt");
    int steps = atoi(tensor_set_get_meta(&expected, "steps"));
    double scale = atof(tensor_set_get_meta(&expected, "scale"));
    cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        if (strcmp(cJSON_GetObjectItem(c, "model")->valuestring, model) != 0)
            continue;
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        const char *sampler = cJSON_GetObjectItem(c, "sampler")->valuestring;
        int w = cJSON_GetObjectItem(c, "width")->valueint;
        int h = cJSON_GetObjectItem(c, "height")->valueint;
        SamplerKind kind;
        CHECK_OK(sampler_kind_from_name(sampler, &kind, &err), &err);
        GenBatchParams p = {w, h, steps, scale, false, 0.0, kind, 0, 1, false};
        /* one image, or a batch with its own prompts, negatives and seeds */
        GenImageSpec items[2] = {{prompt, negative, 0}, {prompt, negative, 0}};
        cJSON *seeds = cJSON_GetObjectItem(c, "seeds");
        int n = seeds ? cJSON_GetArraySize(seeds) : 1;
        if (n > 2)
            n = 2;
        for (int i = 0; i < n; i++) {
            if (!seeds) {
                items[i].seed = (int64_t)cJSON_GetObjectItem(c, "seed")->valuedouble;
                continue;
            }
            items[i].seed = (int64_t)cJSON_GetArrayItem(seeds, i)->valuedouble;
            items[i].prompt = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "prompts"), i)->valuestring;
            items[i].negative_prompt =
                cJSON_GetArrayItem(cJSON_GetObjectItem(c, "negatives"), i)->valuestring;
        }
        size_t nl = (size_t)n * 4 * (h / m.vae_factor) * (w / m.vae_factor);
        float *lat = malloc(nl * sizeof *lat);
        uint8_t *rgb = malloc((size_t)n * w * h * 3);
        Error e2 = {{0}};
        if (gen_pipeline_run(&m, &p, items, n, lat, rgb, NULL, NULL, &e2) != 0) {
            CHECKF(false, "%s: %s", name, e2.message);
        } else {
            char key[160], png[1024];
            snprintf(key, sizeof key, "%s/latents", name);
            size_t nr = 0;
            float *ref = test_load_f32(&expected, key, &nr);
            double e = ref && nr == nl ? test_max_rel_err(lat, ref, nr) : 1e9;
            double bad = 0;
            int worst = 0;
            if (!seeds) {
                snprintf(png, sizeof png, "%s/generate/%s.png", SDTI_FIXTURES, name);
                bad = test_png_mismatch(rgb, png, w, h, &worst);
            }
            printf("%-32s latents rel err %.2e, pixels off by >1: %.4f%%\n", name, e, 100 * bad);
            CHECKF(e <= 1e-4, "%s: latents rel err %.3e", name, e);
            CHECKF(bad <= 1e-3, "%s: %.3f%% of the pixels differ by more than one level", name,
                   100 * bad);
            free(ref);
        }
        free(lat);
        free(rgb);
    }
    gen_model_close(&m);
}

/* ---- command line ----------------------------------------------------------------------- */

static const char *bin(void) {
    const char *b = getenv("SDTI_BIN");
    return b ? b : "sdti";
}

/* The text chunks of a PNG as "key=value\n" lines (malloc'd). */
static char *png_texts(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    char *out = NULL;
    if (setjmp(png_jmpbuf(png)) == 0) {
        png_init_io(png, f);
        png_read_info(png, info);
        png_textp text = NULL;
        int n = 0;
        png_get_text(png, info, &text, &n);
        size_t size = 1;
        for (int i = 0; i < n; i++)
            size += strlen(text[i].key) + strlen(text[i].text) + 2;
        out = calloc(size, 1);
        for (int i = 0; out && i < n; i++) {
            strcat(out, text[i].key);
            strcat(out, "=");
            strcat(out, text[i].text);
            strcat(out, "\n");
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    return out;
}

static void check_cli_run(cJSON *cases) {
    const char *tmp = test_tmp_dir("test_generate");
    const char *prompt = tensor_set_get_meta(&expected, "prompt");
    const char *negative = tensor_set_get_meta(&expected, "negative_prompt");
    cJSON *c, *euler = NULL;
    cJSON_ArrayForEach(c, cases) {
        if (!euler &&
            strcmp(cJSON_GetObjectItem(c, "name")->valuestring, "sd1-tiny_euler_48x32") == 0)
            euler = c;
    }
    CHECK(euler != NULL);
    if (!euler)
        return;
    long long seed = (long long)cJSON_GetObjectItem(euler, "seed")->valuedouble;
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "%s generate --ckpt %s/models/sd1-tiny/diffusers --textual_inversion_embeddings "
             "%s/generate/gentok.safetensors --prompt '%s --n %s --d %lld' --W 48 --H 32 "
             "--steps 4 --sampler euler --scale 7.5 --sequential_file_name --outdir %s/out",
             bin(), SDTI_FIXTURES, SDTI_FIXTURES, prompt, negative, seed, tmp);
    int rc = test_run(cmd, &out);
    CHECKF(rc == 0, "sdti generate failed:\n%s", out ? out : "");
    CHECKF(out && strstr(out, "embedding gentok: 2 vectors, used in 1 prompt"),
           "no embedding report:\n%s", out ? out : "");
    CHECKF(out && strstr(out, "step 4/4"), "no progress:\n%s", out ? out : "");
    free(out);
    char path[1024], ref[1024];
    snprintf(path, sizeof path, "%s/out/im_000001.png", tmp);
    snprintf(ref, sizeof ref, "%s/generate/sd1-tiny_euler_48x32.png", SDTI_FIXTURES);
    Image im = {0};
    Error err = {{0}};
    ImageLoadOptions lo = {0};
    CHECK_OK(image_load_file(path, &lo, &im, &err), &err);
    if (im.pixels) {
        int worst;
        double bad = test_png_mismatch(im.pixels, ref, im.width, im.height, &worst);
        CHECKF(bad <= 1e-3, "CLI image: %.3f%% of the pixels off", 100 * bad);
        image_free(&im);
    }
    char *texts = png_texts(path);
    char want[1024];
    const char *expect[] = {"prompt=%s\n", "seed=%lld\n", "sampler=euler\n",
                            "steps=4\n",   "scale=7.5\n", "negative-prompt=%s\n"};
    for (int i = 0; i < 6; i++) {
        if (i == 0)
            snprintf(want, sizeof want, expect[i], prompt);
        else if (i == 1)
            snprintf(want, sizeof want, expect[i], seed);
        else if (i == 5)
            snprintf(want, sizeof want, expect[i], negative);
        else
            snprintf(want, sizeof want, "%s", expect[i]);
        CHECKF(texts && strstr(texts, want), "PNG text lacks '%s':\n%s", want, texts ? texts : "");
    }
    snprintf(want, sizeof want, "Steps: 4, Sampler: Euler, CFG scale: 7.5, Seed: %lld, Size: 48x32",
             seed);
    CHECKF(texts && strstr(texts, "parameters=") && strstr(texts, want) &&
               strstr(texts, "raw-prompt="),
           "PNG parameters:\n%s", texts ? texts : "");
    free(texts);
}

static void check_bad_inputs(void) {
    const char *tmp = test_tmp_dir("test_generate_bad");
    char latin1[1024], word[1024], gentok[1024];
    snprintf(latin1, sizeof latin1, "%s/latin1.txt", tmp);
    test_write_file(latin1, "a caf\xe9 at night\n", 17);
    snprintf(gentok, sizeof gentok, "%s/generate/gentok.safetensors", SDTI_FIXTURES);
    snprintf(word, sizeof word, "%s/photo.safetensors", tmp);
    char cpcmd[2200], *o = NULL;
    snprintf(cpcmd, sizeof cpcmd, "cp %s %s", gentok, word);
    test_run(cpcmd, &o);
    free(o);
    struct {
        const char *args, *needle;
    } cases[] = {
        {"--prompt x --textual_inversion_embeddings /nonexistent/mychar.pt", "no such file"},
        {"--prompt x --sampler euler_b", "'euler_b' is not one of"},
        {"--prompt x --W 36", "multiple of 8"},
        {"--prompt x --H 20", "multiple of 8"},
        {"--prompt x --steps 0", "1 to 1000 sampling steps"},
        {"--from_file LATIN1", "is not UTF-8"},
        {"--prompt x --network_module networks.lora", "--network_module is not supported yet"},
        {"--prompt x --highres_fix_scale 0.5", "--highres_fix_scale is not supported yet"},
        {"--prompt x --image_path a.png", "--image_path is not supported yet"},
        {"--prompt 'x --am 0.5'", "'--am 0.5' is not supported yet"},
        {"--prompt x --textual_inversion_embeddings EMB768", "768"},
        {"--prompt x --textual_inversion_embeddings WORD", "rename the file"},
        {"--prompt x --fp16 --bf16", "exclude each other"},
        {"--prompt x --vae NOTVAE", "no VAE weights"},
        {"", "give --prompt TEXT, --from_file FILE or --interactive"},
        {"--prompt x --interactive", "leave out --prompt"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[2048];
        const char *a = cases[i].args;
        char *p = args;
        /* placeholders */
        while (*a && p < args + sizeof args - 1100) {
            if (strncmp(a, "LATIN1", 6) == 0) {
                p += sprintf(p, "%s", latin1);
                a += 6;
            } else if (strncmp(a, "EMB768", 6) == 0) {
                p += sprintf(p, "%s/embeddings/concept-768.bin", SDTI_FIXTURES);
                a += 6;
            } else if (strncmp(a, "NOTVAE", 6) == 0) {
                p += sprintf(p, "%s/train_vae/notvae.safetensors", SDTI_FIXTURES);
                a += 6;
            } else if (strncmp(a, "WORD", 4) == 0) {
                p += sprintf(p, "%s", word);
                a += 4;
            } else {
                *p++ = *a++;
            }
        }
        *p = '\0';
        char cmd[4096], *out = NULL;
        snprintf(cmd, sizeof cmd,
                 "%s generate --ckpt %s/models/sd1-tiny/diffusers --W 32 --H 32 --steps 1 "
                 "--outdir %s/out %s",
                 bin(), SDTI_FIXTURES, tmp, args);
        int rc = test_run(cmd, &out);
        CHECKF(rc != 0 && out && strstr(out, cases[i].needle),
               "%s: exit %d, expected an error with '%s', got:\n%s", cases[i].args, rc,
               cases[i].needle, out ? out : "");
        free(out);
    }
}

/* --vae: the decoder weights from a separate file (sdti's VAE file reader, test_train_vae). */
static void check_cli_vae(void) {
    const char *tmp = test_tmp_dir("test_generate_vae");
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "%s generate --ckpt %s/models/sd1-tiny/ldm.safetensors --vae "
             "%s/train_vae/vae-diffusers --prompt 'a cat' --W 32 --H 32 --steps 2 "
             "--sequential_file_name --outdir %s",
             bin(), SDTI_FIXTURES, SDTI_FIXTURES, tmp);
    int rc = test_run(cmd, &out);
    CHECKF(rc == 0 && out && strstr(out, "VAE from"), "--vae run: rc %d\n%s", rc, out ? out : "");
    free(out);
}

/* --interactive: prompts from standard input until its end; blank prompts are asked again. */
static void check_cli_interactive(void) {
    const char *tmp = test_tmp_dir("test_generate_interactive");
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "printf 'a cat --d 5\\n\\n   --n x\\na dog\\n' | %s generate --ckpt "
             "%s/models/sd1-tiny/ldm.safetensors --interactive --W 32 --H 32 --steps 1 "
             "--sequential_file_name --outdir %s",
             bin(), SDTI_FIXTURES, tmp);
    int rc = test_run(cmd, &out);
    char p1[1200], p2[1200], p3[1200];
    snprintf(p1, sizeof p1, "%s/im_000001.png", tmp);
    snprintf(p2, sizeof p2, "%s/im_000002.png", tmp);
    snprintf(p3, sizeof p3, "%s/im_000003.png", tmp);
    FILE *f1 = fopen(p1, "rb"), *f2 = fopen(p2, "rb"), *f3 = fopen(p3, "rb");
    CHECKF(rc == 0 && f1 && f2 && !f3, "--interactive: rc %d, images %d %d %d\n%s", rc, !!f1, !!f2,
           !!f3, out ? out : "");
    if (f1)
        fclose(f1);
    if (f2)
        fclose(f2);
    if (f3)
        fclose(f3);
    free(out);
}

int main(void) {
    Error err = {{0}};
    tensor_set_init(&expected);
    CHECK_OK(safetensors_open(test_fixture("generate/expected.safetensors"), &expected, &err),
             &err);
    cJSON *cases = cJSON_Parse(tensor_set_get_meta(&expected, "cases"));
    CHECK(cases != NULL);
    if (cases) {
        check_model("sd1-tiny", cases);
        check_model("sd2-tiny", cases);
        check_cli_run(cases);
    }
    check_bad_inputs();
    check_cli_vae();
    check_cli_interactive();
    cJSON_Delete(cases);
    tensor_set_free(&expected);
    return test_finish();
}
