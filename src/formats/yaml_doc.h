/* Read-only access to small YAML files (the A1111-style LDM config beside a checkpoint), by
 * dotted path: "model.params.unet_config.params.num_heads". Parsing is libyaml's. */
#ifndef SDTI_FORMATS_YAML_DOC_H
#define SDTI_FORMATS_YAML_DOC_H

#include <stdbool.h>

#include "base/error.h"

typedef struct YamlDoc YamlDoc;

int yaml_doc_load(const char *path, YamlDoc **out, Error *err);
void yaml_doc_free(YamlDoc *doc);
/* The scalar at a dotted path of mapping keys (list items by decimal index), or NULL. */
const char *yaml_doc_scalar(const YamlDoc *doc, const char *path);
/* Number of items of the sequence at `path`, or -1 when it is not a sequence. */
int yaml_doc_sequence_length(const YamlDoc *doc, const char *path);
/* Reads an integer / float / bool scalar; returns 0 and sets *out, or -1 when absent, or -1
 * with an error naming the file and path when present but malformed. */
int yaml_doc_int(const YamlDoc *doc, const char *path, long *out, bool *found, Error *err);
int yaml_doc_bool(const YamlDoc *doc, const char *path, bool *out, bool *found, Error *err);

#endif
