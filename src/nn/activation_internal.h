/* activation.c's portable implementation (the one used without AVX-512), public so tests check
 * it on machines that have AVX-512. Layer code calls activation.h. */
#ifndef SDTI_NN_ACTIVATION_INTERNAL_H
#define SDTI_NN_ACTIVATION_INTERNAL_H

#include <stddef.h>

typedef enum ActKind { ACT_SILU, ACT_GELU, ACT_QUICK_GELU } ActKind;

void activation_forward_portable(ActKind kind, size_t n, const float *x, float *y);
void activation_backward_portable(ActKind kind, size_t n, const float *x, const float *dy,
                                  float *dx);

#endif
