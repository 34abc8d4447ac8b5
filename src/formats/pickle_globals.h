/* The unpickler's allow-list: which globals a torch checkpoint may name, and what each is. */
#ifndef SDTI_FORMATS_PICKLE_GLOBALS_H
#define SDTI_FORMATS_PICKLE_GLOBALS_H

#include <stdbool.h>

#include "formats/pickle.h"

/* Returns true and fills role/dtype for an allowed global, false for everything else. */
bool pickle_global_lookup(const char *module, const char *name, PickleGlobalRole *role,
                          DType *dtype, bool *dtype_known);

#endif
