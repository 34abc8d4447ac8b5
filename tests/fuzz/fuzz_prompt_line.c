/* libFuzzer target: any text given to prompt_line_parse (sdti generate's prompt lines, kohya's
 * " --w N --h N --d S,S --n TEXT ..." options) must give a filled PromptLine or a one-line
 * error naming the line, never a crash, a leak or undefined behaviour. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "generate/prompt_line.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    log_set_level(LOG_ERROR); /* ignored options warn; keep the fuzzer quiet */
    /* one line, as the callers split them: newlines become spaces, the text ends at a NUL */
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    for (size_t i = 0; i < size; i++)
        text[i] = data[i] == '\n' || data[i] == '\r' ? ' ' : (char)data[i];
    text[size] = '\0';
    PromptLine p;
    Error err;
    err.message[0] = '\0';
    if (prompt_line_parse(text, "fuzz line 1", &p, &err) == 0) {
        if (!p.prompt || p.seed_count < 0 || (p.seed_count > 0 && !p.seeds))
            abort();
        if (p.has_steps && (p.steps < 1 || p.steps > 1000))
            abort(); /* kohya clamps --s to 1..1000 */
        if (p.negative_scale_set < 0 || p.negative_scale_set > 2)
            abort();
        prompt_line_free(&p);
    } else if (err.message[0] == '\0' || strchr(err.message, '\n') ||
               !strstr(err.message, "fuzz line 1")) {
        abort(); /* a failure must come with a one-line message naming the line */
    }
    free(text);
    return 0;
}
