/* The text clean-up CLIP's slow Hugging Face tokenizer applies before BPE, on code points:
 * strict UTF-8 decoding, the ftfy.fix_text repairs (ftfy 6.3.1 defaults, without mojibake
 * repair: see docs/tokenizer.md), whitespace_clean, Python's str.lower, and the character
 * classes of the pre-tokenizing regular expression. */
#ifndef SDTI_TEXT_NORMALIZE_H
#define SDTI_TEXT_NORMALIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* A growable array of Unicode code points. Zero-initialise before first use. */
typedef struct CodePoints {
    uint32_t *data;
    size_t len, cap;
} CodePoints;

int codepoints_push(CodePoints *cps, uint32_t c);
int codepoints_append(CodePoints *cps, const uint32_t *c, size_t n);
/* Appends a NUL-terminated UTF-8 string that is known to be valid (table data). */
int codepoints_append_utf8(CodePoints *cps, const char *utf8);
void codepoints_free(CodePoints *cps);

/* Decodes `size` bytes as Python's strict UTF-8 decoder does (no surrogates, no overlong
 * forms, nothing above U+10FFFF). On bad input fails with "invalid UTF-8 at byte N". */
int text_utf8_decode(const char *text, size_t size, CodePoints *out, Error *err);
/* Writes the UTF-8 form of c (a valid scalar value) to out; returns its length, 1..4. */
size_t text_utf8_encode(uint32_t c, unsigned char out[4]);

/* ftfy.fix_text(text) with ftfy's default configuration except fix_encoding: per line,
 * HTML entities (unless a '<' has been seen), C1 controls, Latin ligatures, character width,
 * curly quotes, line breaks, terminal escapes, control characters, NFC, repeated until the
 * line no longer changes. Appends to `out`. */
int text_fix(const uint32_t *in, size_t n, CodePoints *out, Error *err);

/* whitespace_clean(text).lower(): runs of regex \s become one space, str.strip(), then
 * Python's str.lower (full mapping, final sigma). Appends to `out`. */
int text_clean_lower(const uint32_t *in, size_t n, CodePoints *out, Error *err);

/* The classes of the pre-tokenizing pattern as the `regex` module applies them with
 * IGNORECASE: [\p{L}], [\p{N}], [^\s\p{L}\p{N}] (a few characters are in none), and \s. */
bool text_is_letter(uint32_t c);
bool text_is_number(uint32_t c);
bool text_is_other(uint32_t c);
bool text_is_regex_space(uint32_t c);
/* Python's str.isspace (what str.strip removes). */
bool text_is_python_space(uint32_t c);

#endif
