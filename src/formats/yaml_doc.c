#define _POSIX_C_SOURCE 200809L
#include "formats/yaml_doc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct YamlDoc {
    yaml_document_t document;
    char *path;
};

int yaml_doc_load(const char *path, YamlDoc **out, Error *err) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return error_set(err, "%s: cannot open: %s", path, strerror(errno));
    YamlDoc *doc = calloc(1, sizeof *doc);
    yaml_parser_t parser;
    if (!doc || !yaml_parser_initialize(&parser)) {
        free(doc);
        fclose(fp);
        return error_set(err, "%s: out of memory", path);
    }
    yaml_parser_set_input_file(&parser, fp);
    int ok = yaml_parser_load(&parser, &doc->document);
    if (!ok) {
        error_set(err, "%s: line %lu, column %lu: invalid YAML: %s", path,
                  (unsigned long)parser.problem_mark.line + 1,
                  (unsigned long)parser.problem_mark.column + 1,
                  parser.problem ? parser.problem : "parse error");
        yaml_parser_delete(&parser);
        fclose(fp);
        free(doc);
        return -1;
    }
    yaml_parser_delete(&parser);
    fclose(fp);
    doc->path = strdup(path);
    *out = doc;
    return 0;
}

void yaml_doc_free(YamlDoc *doc) {
    if (!doc)
        return;
    yaml_document_delete(&doc->document);
    free(doc->path);
    free(doc);
}

static yaml_node_t *lookup(const YamlDoc *doc, const char *path) {
    yaml_document_t *d = (yaml_document_t *)&doc->document;
    yaml_node_t *node = yaml_document_get_root_node(d);
    const char *p = path;
    while (node && *p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        yaml_node_t *next = NULL;
        if (node->type == YAML_MAPPING_NODE) {
            for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
                 pair < node->data.mapping.pairs.top; pair++) {
                yaml_node_t *key = yaml_document_get_node(d, pair->key);
                if (key && key->type == YAML_SCALAR_NODE && key->data.scalar.length == len &&
                    memcmp(key->data.scalar.value, p, len) == 0) {
                    next = yaml_document_get_node(d, pair->value);
                    break;
                }
            }
        } else if (node->type == YAML_SEQUENCE_NODE) {
            char *end;
            long idx = strtol(p, &end, 10);
            long count = node->data.sequence.items.top - node->data.sequence.items.start;
            if (end == p + len && idx >= 0 && idx < count)
                next = yaml_document_get_node(d, node->data.sequence.items.start[idx]);
        }
        node = next;
        p = dot ? dot + 1 : p + len;
    }
    return node;
}

const char *yaml_doc_scalar(const YamlDoc *doc, const char *path) {
    yaml_node_t *n = lookup(doc, path);
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

int yaml_doc_sequence_length(const YamlDoc *doc, const char *path) {
    yaml_node_t *n = lookup(doc, path);
    if (!n || n->type != YAML_SEQUENCE_NODE)
        return -1;
    return (int)(n->data.sequence.items.top - n->data.sequence.items.start);
}

int yaml_doc_int(const YamlDoc *doc, const char *path, long *out, bool *found, Error *err) {
    *found = false;
    const char *s = yaml_doc_scalar(doc, path);
    if (!s)
        return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end)
        return error_set(err, "%s: %s: expected an integer, found '%s'", doc->path, path, s);
    *out = v;
    *found = true;
    return 0;
}

int yaml_doc_bool(const YamlDoc *doc, const char *path, bool *out, bool *found, Error *err) {
    *found = false;
    const char *s = yaml_doc_scalar(doc, path);
    if (!s)
        return 0;
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "yes"))
        *out = true;
    else if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "no"))
        *out = false;
    else
        return error_set(err, "%s: %s: expected true or false, found '%s'", doc->path, path, s);
    *found = true;
    return 0;
}
