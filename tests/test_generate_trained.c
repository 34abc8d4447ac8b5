// labels: cli
/* An embedding trained by `sdti train` on the tiny SD1 model, used in `sdti generate` by its file
 * name: the file loads (kohya's format, the one test_generate checks against diffusers'
 * load_textual_inversion), its token expands to all its vectors, it is reported once with the
 * prompts that used it, and it changes the image against the same seed without it. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/image.h"
#include "test_util.h"
#include "train_support.h"

static int generate(const char *tmp, const char *outdir, const char *extra, char **log) {
    char cmd[8192];
    const char *bin = getenv("SDTI_BIN");
    snprintf(cmd, sizeof cmd,
             "%s generate --ckpt %s/%s --prompt 'a photo of mychar --n blurry --d 7' --W 32 --H 32 "
             "--steps 3 --sampler euler_a --sequential_file_name --outdir '%s/%s' %s",
             bin ? bin : "sdti", SDTI_FIXTURES, TRAIN_SUPPORT_MODEL, tmp, outdir, extra);
    return test_run(cmd, log);
}

int main(void) {
    const char *tmp = test_tmp_dir("test_generate_trained");
    char dir[1024], out[1024], args[4096];
    snprintf(dir, sizeof dir, "%s/img/2_mychar", tmp);
    train_support_make_images(dir, 2, "a photo of mychar");
    snprintf(dir, sizeof dir, "%s/img", tmp);
    snprintf(out, sizeof out, "%s/emb", tmp);
    snprintf(args, sizeof args,
             "--train_data_dir '%s' --caption_extension .txt --resolution 64 --token_string mychar "
             "--init_word cat --num_vectors_per_token 3 --max_train_steps 2 --learning_rate 0.05 "
             "--output_dir '%s' --output_name mychar --save_model_as safetensors --seed 1",
             dir, out);
    char *log = NULL;
    int rc = train_support_run(args, &log);
    CHECKF(rc == 0, "sdti train failed:\n%s", log ? log : "");
    free(log);
    char emb[1200], extra[1400];
    snprintf(emb, sizeof emb, "%s/mychar.safetensors", out);
    CHECKF(train_support_exists(emb), "no %s", emb);
    snprintf(extra, sizeof extra, "--textual_inversion_embeddings '%s'", emb);
    log = NULL;
    rc = generate(tmp, "with", extra, &log);
    CHECKF(rc == 0 && log && strstr(log, "embedding mychar: 3 vectors, used in 1 prompt"),
           "generate with the trained embedding: rc %d\n%s", rc, log ? log : "");
    free(log);
    log = NULL;
    rc = generate(tmp, "without", "", &log);
    CHECKF(rc == 0, "generate without the embedding: rc %d\n%s", rc, log ? log : "");
    free(log);
    /* the same seed and prompt text: only the embedding differs, so the image must */
    Image a = {0}, b = {0};
    Error err = {{0}};
    ImageLoadOptions lo = {0};
    char pa[1200], pb[1200];
    snprintf(pa, sizeof pa, "%s/with/im_000001.png", tmp);
    snprintf(pb, sizeof pb, "%s/without/im_000001.png", tmp);
    CHECK_OK(image_load_file(pa, &lo, &a, &err), &err);
    CHECK_OK(image_load_file(pb, &lo, &b, &err), &err);
    if (a.pixels && b.pixels) {
        size_t n = (size_t)a.width * a.height * 3, differ = 0;
        for (size_t i = 0; i < n; i++)
            differ += a.pixels[i] != b.pixels[i];
        CHECKF(differ > 0, "the embedding did not change the image");
    }
    image_free(&a);
    image_free(&b);
    return test_finish();
}
