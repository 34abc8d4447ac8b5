// labels: cli
/* sdti train --console_log_file: kohya's setup_logging(args) with a FileHandler(path, "w"):
 * after the argument checks the log messages go to the file (truncated first, bare messages)
 * instead of the console, while the progress line stays on the console; a file that cannot be
 * created stops the run naming it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "train_support.h"

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 1 << 16);
    if (buf)
        (void)!fread(buf, 1, (1 << 16) - 1, f);
    fclose(f);
    return buf;
}

int main(void) {
    if (!getenv("SDTI_BIN"))
        return test_finish();
    const char *tmp = test_tmp_dir("test_train_console_log");
    char dir[1024], logf[1100], args[4096];
    snprintf(dir, sizeof dir, "%s/data/1_mytok", tmp);
    train_support_make_images(dir, 1, "mytok");
    snprintf(logf, sizeof logf, "%s/train.log", tmp);
    CHECK(test_write_file(logf, "old line\n", 9) == 0);
    snprintf(args, sizeof args,
             "--train_data_dir '%s/data' --caption_extension .txt --resolution 64 "
             "--token_string mytok --max_train_steps 1 --output_dir '%s/out' --seed 1 "
             "--console_log_file '%s'",
             tmp, tmp, logf);
    char *out = NULL;
    int rc = train_support_run(args, &out);
    CHECKF(rc == 0, "sdti train failed (%d): %s", rc, out ? out : "");
    char *text = read_text(logf);
    CHECKF(text && strstr(text, "batches per epoch") && !strstr(text, "old line"), "log file: %s",
           text ? text : "(missing)");
    CHECKF(out && !strstr(out, "batches per epoch") && strstr(out, "steps 1/1"), "console: %s",
           out ? out : "");
    free(text);
    free(out);

    snprintf(args, sizeof args,
             "--train_data_dir '%s/data' --caption_extension .txt --resolution 64 "
             "--token_string mytok --max_train_steps 1 --output_dir '%s/out' "
             "--console_log_file '%s/no/such/dir/x.log'",
             tmp, tmp, tmp);
    rc = train_support_run(args, &out);
    CHECKF(rc != 0 && out && strstr(out, "x.log: cannot create it"), "rc %d: %s", rc,
           out ? out : "");
    free(out);
    return test_finish();
}
