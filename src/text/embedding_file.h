/* Textual-inversion embedding files: every layout SD1/SD2 tools write, read into one struct,
 * and written back as kohya and A1111 (and diffusers) write them.
 *
 * Layouts (../shared/reference/kohya-ti-facts.md section 3):
 *   kohya     {"emb_params": [N, dim]}: .safetensors with modelspec metadata, or torch.save .pt
 *   A1111     torch.save {"string_to_token": {"*": 265}, "string_to_param": {"*": [N, dim]},
 *             "name", "step", "sd_checkpoint", "sd_checkpoint_name"} (zip or legacy torch file;
 *             string_to_param may be an old torch.nn.ParameterDict)
 *   diffusers {token: [N, dim] or [dim]}: learned_embeds.bin (torch.save) or .safetensors
 *   any other single-tensor dict ({"*": t} in a .safetensors file): loaded as A1111 and kohya
 *             load it, the key being kept as the token diffusers would register.
 * The file's format is found from its bytes, never from its extension. As in A1111 and kohya,
 * the token an embedding is used by is the file stem ("mychar.pt" -> "mychar").
 *
 * The readers are a security boundary (files come from the internet): any bytes give an
 * Embedding or a one-line error naming the file and why (formats/ already bounds the
 * containers). Values must be finite; SDXL files (clip_l/clip_g) are refused. */
#ifndef SDTI_TEXT_EMBEDDING_FILE_H
#define SDTI_TEXT_EMBEDDING_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/error.h"

/* Limits far beyond real files (kohya: a few dozen vectors; CLIP widths 768/1024/1280). */
#define EMBEDDING_MAX_VECTORS 4096
#define EMBEDDING_MAX_DIM     16384
/* Real files are a few KB (4096 x 1024 float32 vectors are 16 MB); larger files are models. */
#define EMBEDDING_MAX_FILE (64u << 20)

typedef enum EmbeddingFormat {
    EMBEDDING_KOHYA_SAFETENSORS,     /* {"emb_params": t} in a .safetensors file */
    EMBEDDING_KOHYA_PT,              /* {"emb_params": t} through torch.save */
    EMBEDDING_A1111_PT,              /* string_to_param dict through torch.save */
    EMBEDDING_DIFFUSERS_BIN,         /* {token: t} through torch.save */
    EMBEDDING_DIFFUSERS_SAFETENSORS, /* {token: t} in a .safetensors file (any other key) */
    EMBEDDING_FORMAT_COUNT
} EmbeddingFormat;

typedef struct EmbeddingMeta {
    char *key, *value;
} EmbeddingMeta;

typedef struct Embedding {
    char *name; /* the file stem: the token A1111 and kohya use it by */
    char *key;  /* key of the tensor in the file: "emb_params", "*", "<cat-toy>" */
    EmbeddingFormat format;
    bool torch_zip;  /* torch files: zip (torch >= 1.6) or legacy serialization */
    int num_vectors; /* N */
    int dim;         /* width: 768 SD1, 1024 SD2 */
    DType dtype;     /* as stored: F32, F16 or BF16 (F64 is read too) */
    bool one_dim;    /* stored as [dim] (diffusers concepts): one vector */
    float *data;     /* [num_vectors, dim], float32 */
    /* A1111 training metadata; has_step false when the file has none (or None). */
    bool has_step;
    int64_t step;
    char *stored_name;        /* A1111 "name" (NULL if absent) */
    char *sd_checkpoint;      /* A1111 "sd_checkpoint" (a hash) or NULL */
    char *sd_checkpoint_name; /* A1111 "sd_checkpoint_name" or NULL */
    /* safetensors __metadata__ (kohya's modelspec.*), in file order */
    EmbeddingMeta *meta;
    size_t meta_count;
} Embedding;

void embedding_init(Embedding *e);
void embedding_free(Embedding *e);

/* "kohya .safetensors", "A1111 .pt", ... for messages and `sdti inspect`. */
const char *embedding_format_name(EmbeddingFormat format);

/* Reads any supported layout (see above). `e` must be freshly initialised; on failure it is
 * left empty. Fails, naming the file, on: unknown layouts and wrong keys, several terms in one
 * file (A1111's "embedding file has multiple terms in it"), SDXL files, non-tensor values,
 * shapes other than [dim] / [N, dim], non-float dtypes, NaN/Inf values, truncated files. */
int embedding_load(const char *path, Embedding *e, Error *err);
/* The same from bytes in memory; `path` names the file (its stem becomes e->name). */
int embedding_load_buffer(const char *path, const void *data, size_t size, Embedding *e,
                          Error *err);

/* Can the embedding be used with a text encoder `model_width` wide? Fails with a message
 * naming both widths and what they mean ("an SD1.x embedding (768 wide); the model is SD2.x
 * (1024 wide)"), and on all-zero vectors (such a vector is what A1111's create_embedding makes
 * from an empty init text: it was never trained and would act as no token at all). */
int embedding_check_for_model(const Embedding *e, const char *path, int model_width, Error *err);

/* Replaces or adds one metadata entry. */
int embedding_set_meta(Embedding *e, const char *key, const char *value, Error *err);
const char *embedding_get_meta(const Embedding *e, const char *key);

/* What kohya's get_sai_model_spec(textual_inversion=True) writes (library/train_util.py,
 * library/sai_model_spec.py build_metadata): every argument as kohya's option of that name;
 * NULL / negative means "not given". `timestamp` (seconds) becomes modelspec.date in local
 * time as kohya formats it. Replaces e->meta. */
typedef struct KohyaMetadataArgs {
    bool v2, v_parameterization;
    const char *title;      /* --metadata_title, else output_name */
    const char *resolution; /* --resolution "512" or "512,768"; NULL: the model's default */
    int64_t timestamp;
    long clip_skip;                     /* < 0: not given */
    long min_timestep, max_timestep;    /* < 0: not given */
    const char *implementation_version; /* "sdti/<version>" */
    /* --metadata_author, _description, _license, _tags, _usage_hint, _thumbnail (a data: URL
     * is kept, a file name is not read here), _merged_from, _trigger_phrase, _preprocessor,
     * _is_negative_embedding */
    const char *author, *description, *license, *tags, *usage_hint, *thumbnail, *merged_from,
        *trigger_phrase, *preprocessor, *is_negative_embedding;
} KohyaMetadataArgs;
int embedding_set_kohya_metadata(Embedding *e, const KohyaMetadataArgs *args, Error *err);

/* Writers; each converts the float data to `dtype` (F32, F16 or BF16) and writes atomically. */
/* kohya's save_weights: {"emb_params": [N, dim]} with e->meta as __metadata__. */
int embedding_save_kohya_safetensors(const Embedding *e, const char *path, DType dtype, Error *err);
/* kohya's save_weights with .pt: torch.save({"emb_params": [N, dim]}). The torch-file writers
 * (.pt, .bin) keep only the zip records torch <= 2.0 wrote (data.pkl, data/0, version): A1111's
 * safe unpickler (modules/safe.py check_zip_filenames) refuses the records newer torch adds
 * (.format_version, .storage_alignment), so a plain torch 2.4+ torch.save file does not load
 * there. The pickle is torch.save's, byte for byte. */
int embedding_save_kohya_pt(const Embedding *e, const char *path, DType dtype, Error *err);
/* A1111's Embedding.save: name = the file stem, step / sd_checkpoint / sd_checkpoint_name from
 * `e` (None when absent); the tensor as a trained A1111 one (requires_grad). */
int embedding_save_a1111_pt(const Embedding *e, const char *path, DType dtype, Error *err);
/* diffusers' save_progress: {token: [N, dim]} ([dim] for a one_dim embedding) as .safetensors
 * (metadata {"format": "pt"}) or, for any other extension, torch.save (learned_embeds.bin). */
int embedding_save_diffusers(const Embedding *e, const char *path, const char *token, DType dtype,
                             Error *err);

#endif
