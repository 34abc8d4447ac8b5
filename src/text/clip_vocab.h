/* The CLIP BPE merges file (data/bpe_simple_vocab_16e6.txt.gz, MIT licence, see
 * data/LICENSE-CLIP.txt), compiled into the library by the root CMakeLists.txt. */
#ifndef SDTI_TEXT_CLIP_VOCAB_H
#define SDTI_TEXT_CLIP_VOCAB_H

#include <stddef.h>

#include "base/error.h"

/* Inflates the embedded file: a malloc'd, NUL-terminated UTF-8 text (header line, then one
 * "left right" merge per line). */
int clip_vocab_merges_text(char **text, size_t *size, Error *err);

#endif
