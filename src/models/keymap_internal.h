/* Inside the key map: name rules, and the modules that place them.
 *
 * A rule pairs an LDM name pattern with a canonical one, relative to a module's prefixes:
 * `#` is a number and `$` is `weight` or `bias`, both carried across in order; `@` (canonical
 * side only) is one of q, k, v (the thirds of a fused in_proj). A module pairs an LDM prefix
 * with a canonical prefix ("input_blocks.4.1" <-> "down_blocks.1.attentions.0") and names the
 * rules valid below it. Each component builds its module list from the structure it finds in
 * the keys; one engine then renames in either direction. */
#ifndef SDTI_MODELS_KEYMAP_INTERNAL_H
#define SDTI_MODELS_KEYMAP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "formats/tensor_set.h"
#include "models/keymap.h"

enum {
    RULE_CONV1X1_AS_LINEAR = 1, /* LDM [C, C, 1, 1] (or [C, C, 1]) <-> canonical [C, C] */
    RULE_SPLIT_QKV = 2,         /* LDM fused in_proj [3C, ...] <-> canonical q, k, v [C, ...] */
    RULE_IGNORE = 4,            /* a known name that neither side needs (skipped, counted) */
};

typedef struct KeyRule {
    const char *ldm;   /* NULL: only ever seen on the canonical side (must be RULE_IGNORE) */
    const char *canon; /* NULL: only ever seen on the LDM side (must be RULE_IGNORE) */
    unsigned flags;
} KeyRule;

#define KEYMAP_PREFIX_MAX 96

typedef struct KeyModule {
    char ldm[KEYMAP_PREFIX_MAX];   /* "" = the component's top level */
    char canon[KEYMAP_PREFIX_MAX]; /* "" = top level; ignore_all: unused */
    bool ignore_all;               /* an LDM-only module whose every key is skipped (SD2's
                                      last resblock) */
    const KeyRule *rules;
    size_t rule_count;
} KeyModule;

typedef struct KeyModuleList {
    KeyModule *items;
    size_t count, capacity;
} KeyModuleList;

int key_modules_add(KeyModuleList *list, const char *ldm, const char *canon, const KeyRule *rules,
                    size_t rule_count, Error *err);
int key_modules_add_ignored(KeyModuleList *list, const char *ldm, const KeyRule *rules,
                            size_t rule_count, Error *err);
void key_modules_free(KeyModuleList *list);

#define KEYMAP_MAX_CAPTURES 6

typedef struct KeyMatch {
    const KeyModule *module;
    const KeyRule *rule;
    char captures[KEYMAP_MAX_CAPTURES][24];
    int capture_count;
    char qkv; /* the `@` captured on the canonical side, 0 if none */
} KeyMatch;

/* Finds the module and rule that name `name` (relative to the component prefix) on the
 * canonical side (`from_canon`) or the LDM side. */
bool key_modules_match(const KeyModuleList *list, const char *name, bool from_canon, KeyMatch *m);
/* Writes the name a match has on one side (`canon_side`), with `qkv` for `@` (0: the captured
 * one). Returns -1 when it does not fit. */
int key_match_format(const KeyMatch *m, bool canon_side, char qkv, char *out, size_t size);

/* The largest number n such that some key is "<prefix><n>." or "<prefix><n>" , -1 if none. */
int keymap_max_index(const TensorSet *set, const char *prefix);
bool keymap_has_prefix(const TensorSet *set, const char *prefix);

/* Per component: the module list from the keys found, on the LDM side (`ldm_prefix` is the
 * component prefix, "model.diffusion_model." ...) or the canonical side (a component set). */
int keymap_unet_modules_from_ldm(const TensorSet *ldm, const char *prefix, KeyModuleList *mods,
                                 Error *err);
int keymap_unet_modules_from_canon(const TensorSet *unet, KeyModuleList *mods, Error *err);
int keymap_vae_modules_from_ldm(const TensorSet *ldm, const char *prefix, KeyModuleList *mods,
                                Error *err);
int keymap_vae_modules_from_canon(const TensorSet *vae, KeyModuleList *mods, Error *err);
int keymap_clip_modules_from_ldm(const TensorSet *ldm, SdVersion version, const char *prefix,
                                 KeyModuleList *mods, Error *err);
int keymap_clip_modules_from_canon(const TensorSet *text, SdVersion version, KeyModuleList *mods,
                                   Error *err);
/* The LDM prefix of each component's keys. */
const char *keymap_ldm_prefix(ModelComponent c, SdVersion version);

#endif
