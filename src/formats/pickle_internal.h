/* Shared between the pickle files; not part of the API. */
#ifndef SDTI_FORMATS_PICKLE_INTERNAL_H
#define SDTI_FORMATS_PICKLE_INTERNAL_H

#include "formats/pickle.h"

/* A finished tree may not expand (following shared references) past this many values, so any
 * walk over it is bounded however often the file reuses a container. */
#define PICKLE_MAX_EXPANDED (1 << 24)

typedef struct PickleCheckState {
    const char *name;
    Error *err;
} PickleCheckState;

int pickle_check_fail(PickleCheckState *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Python's rule for dict keys, limited to our kinds (tuples of hashables included). */
bool pickle_is_hashable(const PickleValue *v, int depth);
/* Merges repeated dict keys and checks for cycles, depth and expansion. */
int pickle_check_tree(PickleDoc *doc, PickleCheckState *st);

/* ---- the unpickler's machine, shared by pickle_read.c and pickle_objects.c ---- */

typedef struct Memo {
    uint32_t *keys;
    PickleValue **values; /* NULL = empty slot */
    size_t capacity, count;
} Memo;

typedef struct Reader {
    const char *name;
    const unsigned char *data;
    size_t size, pos, op_pos;
    PickleDoc *doc;
    Error *err;
    PickleValue **stack;
    size_t sp, stack_capacity;
    size_t *marks;
    size_t mark_count, mark_capacity;
    Memo memo;
} Reader;

/* Each sets the error ("<name> byte <offset>: ...") itself and returns -1 / NULL on failure. */
int reader_fail(Reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
PickleValue *reader_new(Reader *r, PickleKind kind);
PickleValue *reader_bytes(Reader *r, PickleKind kind, const void *src, size_t len);
int reader_push(Reader *r, PickleValue *v);
int reader_pop(Reader *r, PickleValue **out, const char *op);
int reader_peek(Reader *r, PickleValue **out, const char *op);
/* Index of the stack's lowest item above the innermost mark (0 without marks). */
size_t reader_fence(const Reader *r);
int reader_pop_mark(Reader *r, size_t *start, const char *op);
int reader_need(Reader *r, size_t n, const char *what);
uint64_t reader_le(Reader *r, int n);
int reader_line(Reader *r, const char **line, size_t *len);
int reader_push_sequence(Reader *r, PickleKind kind, size_t start);
int reader_append_items(Reader *r, PickleValue *list, size_t start, const char *op);
int reader_put_top(Reader *r, uint64_t key);
int reader_memo_get(Reader *r, uint64_t key);
/* Globals, calls, BUILD, persistent ids, memo and set opcodes (pickle_objects.c). */
int reader_step_objects(Reader *r, unsigned char op);

#endif
