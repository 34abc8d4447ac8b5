/* torch checkpoint files: what torch.save writes (a zip holding `<archive>/data.pkl`, the
 * pickled object, and `<archive>/data/<key>` records with the raw storage bytes; .ckpt, .pt,
 * diffusers .bin) and the legacy pre-1.6 serialization (magic number, protocol and sys_info
 * pickles, the object pickle, the storage key list, then each storage's element count and
 * bytes). The object is read by the restricted unpickler (formats/pickle.h): nothing in a
 * file is ever executed, and every global outside a torch state dict's needs is refused. */
#ifndef SDTI_FORMATS_TORCH_FILE_H
#define SDTI_FORMATS_TORCH_FILE_H

#include "base/error.h"
#include "formats/pickle.h"
#include "formats/tensor_set.h"

/* Reads a torch file (zip or legacy) into doc->root (doc freshly initialised) and adds every
 * tensor reachable from the root to `tensors`, contiguous (strided views are copied into a
 * fresh block; offsets and shared storages are handled), each named by its key path from the
 * root ("string_to_param.*"; an object's state adds no component, list items add their index;
 * a repeated path gets "#2"). Each tensor value's `tensor.name` is its entry in `tensors`,
 * which owns the bytes. On failure `tensors` and `doc` are left empty/unchanged. */
int torch_file_load(const char *path, TensorSet *tensors, PickleDoc *doc, Error *err);

/* The same from a file already in memory (`name` for messages); the bytes are copied, so
 * `data` may go away afterwards. */
int torch_file_load_buffer(const char *name, const void *data, size_t size, TensorSet *tensors,
                           PickleDoc *doc, Error *err);

/* Loads a state dict into `set` with dotted names: nested dicts join their keys with '.'; a
 * top-level "state_dict" dict is unwrapped (the other top-level keys are then ignored);
 * non-tensor leaves and anything below lists or objects are ignored. The root must be a dict. */
int torch_file_load_state_dict(const char *path, TensorSet *set, Error *err);

/* Writes `root` as torch.save does (zip, archive named after the file's stem, protocol 2
 * pickle, one 64-byte aligned STORED record per distinct tensor, `.format_version`,
 * `.storage_alignment`, `byteorder`, `version`, and `.data/serialization_id` as forty '0's so
 * output is reproducible). Tensor leaves (pickle_new_tensor) name entries of `tensors`.
 * Atomic: the file appears complete or not at all. */
int torch_file_save(const char *path, const PickleValue *root, const TensorSet *tensors,
                    Error *err);

/* The same zip with only the records torch 1.6 to 2.0 wrote (data.pkl, data/<n>, version; no
 * .format_version, .storage_alignment, byteorder, .data/serialization_id). Every torch since
 * 1.6 loads it, and so do loaders that allow-list record names: A1111's safe unpickler
 * (modules/safe.py, check_zip_filenames) refuses the newer records, so files for A1111 need
 * this layout. */
int torch_file_save_minimal(const char *path, const PickleValue *root, const TensorSet *tensors,
                            Error *err);

#endif
