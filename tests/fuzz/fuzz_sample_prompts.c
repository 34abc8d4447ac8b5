/* libFuzzer target: --sample_prompts files (trainer_sample_prompts.c) as .txt, .toml or .json
 * (the first byte picks the extension, the rest is the file): prompts within kohya's limits or
 * a one-line error naming the file, never a crash, a leak or UB. */
#define _POSIX_C_SOURCE 200809L
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "train/trainer_sample.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    log_set_level(LOG_ERROR); /* ignored options warn */
    if (size < 1)
        return 0;
    static const char *const ext[3] = {"txt", "toml", "json"};
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/fuzz_sample_prompts.%ld.%s", dir, (long)getpid(),
             ext[data[0] % 3]);
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (fwrite(data + 1, 1, size - 1, f) != size - 1 || fclose(f) != 0)
        abort();
    SamplePromptList list;
    Error err;
    err.message[0] = '\0';
    if (sample_prompts_load(path, &list, &err) == 0) {
        if (list.count < 1 || !list.items)
            abort();
        for (int i = 0; i < list.count; i++) {
            const SamplePrompt *p = &list.items[i];
            if (!p->prompt || p->steps < 1 || p->steps > 1000 || p->width < 1 || p->height < 1 ||
                p->width > 16384 || p->height > 16384 || (p->has_seed && p->seed < 0))
                abort();
        }
        sample_prompts_free(&list);
    } else if (err.message[0] == '\0' || strchr(err.message, '\n') ||
               (!strstr(err.message, path) && strcmp(err.message, "out of memory") != 0) ||
               list.items || list.count) {
        abort(); /* one line, naming the file */
    }
    unlink(path);
    return 0;
}
