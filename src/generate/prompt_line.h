/* One prompt line as kohya's gen_img_diffusers.py reads it: the line is stripped and split on
 * " --"; the first part is the prompt, each other part a per-prompt option matched at its
 * start, case-insensitively (kohya's re.match with re.IGNORECASE):
 *   w N width, h N height, s N steps (clamped to 1..1000), d S[,S..] seeds, l F scale,
 *   nl F|none negative scale, n TEXT negative prompt, c TEXT clip prompt, t F strength.
 * am (network multipliers), dsd1/dst1/dsd2/dst2/dsr (Deep Shrink) and glt/glr/gle/gls/glsn/
 * glus (Gradual Latent) are refused as not supported yet; anything else kohya ignores, and so
 * does sdti (with a warning). Dynamic-prompt variants ({a|b}) are expanded before this
 * (dynamic_prompt.h). Regional prompts (" AND ") need networks and are refused too. */
#ifndef SDTI_GENERATE_PROMPT_LINE_H
#define SDTI_GENERATE_PROMPT_LINE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"

typedef struct PromptLine {
    char *prompt;          /* text before the first " --" */
    char *negative_prompt; /* --n, NULL when not given (kohya then uses "") */
    char *clip_prompt;     /* --c, NULL when not given */
    bool has_width, has_height, has_steps, has_scale, has_strength;
    long width, height, steps;
    double scale, strength;
    int negative_scale_set; /* 0: not given, 1: a value, 2: "none" */
    double negative_scale;
    int64_t *seeds; /* --d, NULL / 0 when not given */
    int seed_count;
} PromptLine;

/* Parses `raw` (one line, UTF-8). `where` names the line in messages ("prompts.txt line 3"). */
int prompt_line_parse(const char *raw, const char *where, PromptLine *out, Error *err);
void prompt_line_free(PromptLine *p);

#endif
