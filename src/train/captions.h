/* Captions as kohya's TI training builds them (library/train_util.py: DreamBoothDataset's
 * read_caption, BaseDataset.process_caption; train_textual_inversion.py: the two template
 * lists and the token-string replacement). Processing order, as kohya:
 *   prefix/suffix -> wildcard (or first line) -> keep_tokens / shuffle / token warm-up ->
 *   secondary_separator -> replacements (templates or token string -> N tokens).
 * TI has no caption dropout (kohya's TI refuses those keys), so there is none here.
 * Random choices go through PyRandom, which reproduces CPython's `random`: with the same
 * seed and call order the shuffles, wildcards and templates equal kohya's. */
#ifndef SDTI_TRAIN_CAPTIONS_H
#define SDTI_TRAIN_CAPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "train/py_random.h"

typedef struct CaptionRules {
    bool shuffle_caption;
    const char *caption_separator;     /* "," by default; never empty */
    int keep_tokens;                   /* first N pieces stay in place */
    const char *keep_tokens_separator; /* "" or NULL: unused */
    const char *secondary_separator;   /* NULL: unused */
    bool enable_wildcard;
    const char *caption_prefix; /* NULL or "": none */
    const char *caption_suffix;
    int token_warmup_min;     /* 1 */
    double token_warmup_step; /* 0: off; below 1: a fraction of max_train_steps */
} CaptionRules;

/* One replacement: `from` -> `to`, or, with from == "" (kohya's key for templates), the
 * whole caption becomes one of `choices` picked at random. */
typedef struct CaptionReplacement {
    const char *from;
    const char *to;
    const char *const *choices;
    size_t choice_count;
} CaptionReplacement;

typedef struct CaptionStep {
    int64_t current_step;    /* for token warm-up */
    int64_t max_train_steps; /* for a fractional token_warmup_step */
} CaptionStep;

/* process_caption: returns a malloc'd caption in *out. */
int caption_process(const CaptionRules *rules, const CaptionReplacement *repl, size_t repl_count,
                    const CaptionStep *step, PyRandom *rng, const char *caption, char **out,
                    Error *err);

/* read_caption: looks for "<image without extension><ext>", then the same with the last four
 * "_" parts removed (kohya's face-crop file naming). *out is a malloc'd caption (the first
 * line, stripped; with enable_wildcard every non-empty stripped line joined by '\n'), or NULL
 * when no caption file exists. An empty file or one that is not UTF-8 is an error, as in
 * kohya. */
int caption_read_for_image(const char *image_path, const char *caption_extension,
                           bool enable_wildcard, char **out, Error *err);

/* kohya's imagenet_templates_small (27) and imagenet_style_templates_small (19), each with
 * one "{}" where the token strings go. */
extern const char *const caption_object_templates[];
extern const size_t caption_object_template_count;
extern const char *const caption_style_templates[];
extern const size_t caption_style_template_count;

/* The template captions for --use_object_template (style = false) or --use_style_template:
 * each template with "{}" replaced by `tokens` (the N token strings joined by spaces).
 * Returns a malloc'd array of malloc'd strings; free with caption_list_free. */
int caption_make_template_list(bool style, const char *tokens, char ***out, size_t *count,
                               Error *err);
void caption_list_free(char **list, size_t count);

/* kohya's TI token strings: token, token1, token2, ... token{N-1}, joined by spaces
 * (train_textual_inversion.py; the same string as TiTokens.replacement). */
char *caption_join_token_strings(const char *token_string, int num_vectors);

/* The replacements train_textual_inversion.py registers with add_replacement, from the new
 * tokens of src/text/ti_tokens.h: with --use_object_template / --use_style_template one ""
 * entry whose choices are the templates filled with the N tokens (captions are ignored, reg
 * images included); otherwise, for N > 1, token_string -> "S S1 ... S{N-1}"; for N == 1
 * none. */
typedef struct TiTokens TiTokens;
typedef struct CaptionTiReplacements {
    CaptionReplacement entry;
    size_t count; /* 0 or 1: pass &entry, count to caption_process */
    char **templates;
    size_t template_count;
} CaptionTiReplacements;

int caption_ti_replacements(const TiTokens *tokens, bool use_object_template,
                            bool use_style_template, CaptionTiReplacements *out, Error *err);
void caption_ti_replacements_free(CaptionTiReplacements *r);

/* Python's str.strip() whitespace set (ASCII and the Unicode space separators), in place on
 * a [begin, end) byte range: returns the new begin and sets *end. */
const char *caption_strip(const char *begin, const char **end);

#endif
