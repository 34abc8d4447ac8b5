/* `sdti inspect` of a textual-inversion embedding file. */
#ifndef SDTI_CLI_INSPECT_EMBEDDING_H
#define SDTI_CLI_INSPECT_EMBEDDING_H

#include <stdbool.h>

#include "base/error.h"

/* If `path` is a file that reads as an embedding, prints it, sets *exit_code and returns
 * true. Otherwise returns false with the embedding reader's error in `err` (empty when the
 * path is not a regular file or too large to be one), so that a model load failure can say
 * what the file was not as an embedding either. */
bool inspect_embedding(const char *path, Error *err, int *exit_code);

#endif
