/* kohya's sd-dynamic-prompts-like variants (gen_img_diffusers.py, handle_dynamic_prompt_variants):
 *   {a|b|c}          one variant picked at random (Python's random.randint / random.sample)
 *   {2$$a|b|c}       two distinct variants, joined by ", "; {1-3$$...} a random count
 *   {2$$ and $$a|b}  a custom separator
 *   {e$$a|b|c}       enumerate: one prompt per variant (with a count: per combination)
 * Without enumeration the prompt is repeated repeat_count times (--images_per_prompt), each
 * with fresh picks; with enumeration every combination becomes a prompt and the other
 * variants are picked once per prompt. Each {...} is replaced at the first occurrence of its
 * text in the prompt built so far, as kohya's str.replace(..., 1) does. The picks come from
 * the caller's Python random stream in kohya's order, so a --seed gives kohya's prompts. */
#ifndef SDTI_GENERATE_DYNAMIC_PROMPT_H
#define SDTI_GENERATE_DYNAMIC_PROMPT_H

#include "base/error.h"
#include "train/py_random.h"

/* *out (malloc'd, each string too) gets the prompts: just a copy of `prompt` when it has no
 * variants; none when an enumerated count exceeds its variants ({e3$$a|b}, as in kohya). A
 * count range that is not a number ("{1-$$a|b}") or, picked at random, above the number of
 * variants ("{3$$a|b}"), where kohya raises ValueError, is an error, and so is a line that
 * would expand to more than 10000 prompts (kohya runs out of memory or time). */
int dynamic_prompt_expand(const char *prompt, int repeat_count, PyRandom *py, char ***out,
                          int *count, Error *err);
void dynamic_prompt_free(char **prompts, int count);

#endif
