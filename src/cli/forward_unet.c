/* Placeholder until the component lands. */
#include "cli/forward.h"

int forward_unet(NnContext *ctx, const ForwardRequest *req, const ModelFiles *mf,
                 const TensorSet *in, TensorSet *out, Error *err) {
    (void)ctx;
    (void)mf;
    (void)in;
    (void)out;
    return error_set(err, "--component %s: not built yet", req->component);
}
