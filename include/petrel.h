/*
** petrel.h -- the public C API of petrel: load an exported PyTorch program
** (a torch.export `.pt2` archive), bind inputs, execute it on a backend and
** read its outputs.  Runners and the CLI use nothing but this header.
**
** Usage:
**
**     petrel_program_t *prog = NULL;
**     if (petrel_program_load(&prog, "model.pt2", NULL) != PETREL_OK) {
**         fprintf(stderr, "%s\n", petrel_last_error());   // load failed: no handle
**     }
**     petrel_tensor_desc in = { .dtype = PETREL_DTYPE_F32, .rank = 2,
**                               .shape = {1, 8}, .data = x };
**     petrel_program_set_input(prog, "x", &in);         // copies the data
**     petrel_program_execute(prog);
**     petrel_tensor_desc out;
**     petrel_program_get_output(prog, 0, &out);         // borrows until next execute
**     petrel_program_free(prog);
**
** Conventions: every fallible function returns a petrel_status and writes its
** result through its first pointer argument.  On failure the message is kept
** on the handle (petrel_program_error) or, when no handle exists yet, in a
** thread-local buffer (petrel_last_error).  The library never prints and
** never exits.
*/
#ifndef PETREL_H
#define PETREL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define PETREL_API __declspec(dllexport)
#else
#define PETREL_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- statuses ----------------------------------------------------------- */

typedef enum petrel_status {
    PETREL_OK = 0,
    /* argument / state errors */
    PETREL_ERR_INVALID_ARG = 1,   /* a caller passed something impossible */
    PETREL_ERR_STATE = 2,         /* call out of order (e.g. missing input) */
    PETREL_ERR_SHAPE = 3,         /* shapes or dtypes do not fit the program */
    /* resource errors */
    PETREL_ERR_NOMEM = 10,
    PETREL_ERR_IO = 11,
    PETREL_ERR_NOT_FOUND = 12,
    /* program / format errors */
    PETREL_ERR_FORMAT = 20,       /* malformed archive or file */
    PETREL_ERR_VERSION = 21,      /* well-formed but a version we do not read */
    PETREL_ERR_UNSUPPORTED = 22,  /* valid but uses a feature petrel lacks */
    /* backend errors */
    PETREL_ERR_BACKEND_UNAVAILABLE = 30,
    PETREL_ERR_UNSUPPORTED_OP = 31,
    PETREL_ERR_DEVICE = 32,
    PETREL_ERR_RUNTIME = 33,      /* a kernel rejected its inputs at run time */
    PETREL_STATUS_COUNT
} petrel_status;

/** A short constant name for a status ("PETREL_ERR_FORMAT"); never NULL. */
PETREL_API const char *petrel_status_str(petrel_status s);

/** The message of the last failure on this thread that had no handle to
 *  carry it (e.g. a failed petrel_program_load).  Never NULL. */
PETREL_API const char *petrel_last_error(void);

/* ---- dtypes ------------------------------------------------------------- */

/* petrel's own numbering (stable, append-only; not torch's). */
typedef enum petrel_dtype {
    PETREL_DTYPE_F32 = 0,
    PETREL_DTYPE_F16 = 1,
    PETREL_DTYPE_BF16 = 2,
    PETREL_DTYPE_F64 = 3,
    PETREL_DTYPE_I64 = 4,
    PETREL_DTYPE_I32 = 5,
    PETREL_DTYPE_I16 = 6,
    PETREL_DTYPE_I8 = 7,
    PETREL_DTYPE_U8 = 8,
    PETREL_DTYPE_BOOL = 9,
    PETREL_DTYPE_COUNT
} petrel_dtype;

/** Bytes per element of a dtype (0 for an invalid dtype). */
PETREL_API size_t petrel_dtype_size(petrel_dtype dt);
/** Lower-case name ("f32", "bf16", ...); "?" for an invalid dtype. */
PETREL_API const char *petrel_dtype_name(petrel_dtype dt);

#define PETREL_MAX_RANK 8

/* A dense, row-major (contiguous) tensor described by the caller or by
 * petrel.  Who owns `data` is stated by each function using it. */
typedef struct petrel_tensor_desc {
    petrel_dtype dtype;
    int32_t rank;
    int64_t shape[PETREL_MAX_RANK];
    void *data;
} petrel_tensor_desc;

/** Number of elements of a descriptor (1 for rank 0). */
PETREL_API int64_t petrel_tensor_numel(const petrel_tensor_desc *t);
/** Element i (row-major) of a tensor as a double (half floats widened,
 *  bools 0/1). */
PETREL_API double petrel_tensor_get_f64(const petrel_tensor_desc *t, int64_t i);

/* ---- logging ------------------------------------------------------------ */

typedef enum petrel_log_level {
    PETREL_LOG_ERROR = 0,
    PETREL_LOG_WARN = 1,
    PETREL_LOG_INFO = 2,
    PETREL_LOG_DEBUG = 3,
    PETREL_LOG_LEVEL_COUNT
} petrel_log_level;

typedef void (*petrel_log_fn)(petrel_log_level level, const char *msg, void *user);

/** Install a process-wide log callback (NULL = silent, the default). */
PETREL_API void petrel_log_set(petrel_log_fn fn, void *user);

/* ---- programs ----------------------------------------------------------- */

typedef struct petrel_program petrel_program_t;

typedef struct petrel_load_opts {
    const char *backend;  /* "cpu" or "cuda"; NULL: a program file's own placement
                           * (compiled with --backend), a .pt2 on the cpu */
    bool verify_weights;  /* program files: also checksum the weights (reads every page) */
    bool inspect_only;    /* read and verify, but prepare no backend (cannot execute):
                           * for looking at a program on a machine without its device */
    int32_t threads;      /* threads of the CPU kernels: 0 = one per online CPU, 1 = the
                           * caller's only (results are the same for any count) */
} petrel_load_opts;

/* What a program input or output is. */
typedef enum petrel_value_kind {
    PETREL_VALUE_TENSOR = 0,
    PETREL_VALUE_INT = 1,     /* a symbolic or constant int (e.g. a size) */
    PETREL_VALUE_FLOAT = 2,
    PETREL_VALUE_BOOL = 3,
    PETREL_VALUE_NONE = 4,
    PETREL_VALUE_KIND_COUNT
} petrel_value_kind;

typedef struct petrel_io_info {
    const char *name;        /* user-input name, or "output_<i>" */
    petrel_value_kind kind;
    petrel_dtype dtype;      /* tensors only */
    int32_t rank;            /* tensors only */
    /* Sizes seen at export; -1 marks a dynamic dimension. */
    int64_t shape[PETREL_MAX_RANK];
    /* Largest accepted size per dimension (== shape for static ones; -1
     * when unbounded). */
    int64_t max_shape[PETREL_MAX_RANK];
} petrel_io_info;

/**
 * Load a program from a `.pt2` archive or a compiled `.petrel` file (told
 * apart by their first bytes).  The file is mapped read-only and
 * weights are used in place; mutable buffers (KV caches) get private copies
 * that persist across executions.
 * @param out  receives the program; left NULL on failure
 * @param path file to load (borrowed)
 * @param opts NULL for defaults
 * @return PETREL_OK, or a status with petrel_last_error() describing the
 *         first problem (which file, which field).
 */
PETREL_API petrel_status petrel_program_load(petrel_program_t **out, const char *path,
                                             const petrel_load_opts *opts);
/** Load from memory (either format); `buf` is borrowed and must outlive
 *  the program. */
PETREL_API petrel_status petrel_program_load_memory(petrel_program_t **out, const void *buf, size_t size,
                                                    const petrel_load_opts *opts);
/** Free a program; NULL is a no-op. */
PETREL_API void petrel_program_free(petrel_program_t *p);
/** The message of the last failure on this program.  Never NULL. */
PETREL_API const char *petrel_program_error(const petrel_program_t *p);

PETREL_API int petrel_program_num_inputs(const petrel_program_t *p);
PETREL_API int petrel_program_num_outputs(const petrel_program_t *p);
/** Describe user input i; the strings are borrowed from the program. */
PETREL_API petrel_status petrel_program_input_info(petrel_io_info *out, const petrel_program_t *p,
                                                   int i);
PETREL_API petrel_status petrel_program_output_info(petrel_io_info *out,
                                                    const petrel_program_t *p, int i);
/** Index of the user input named `name`, or -1. */
PETREL_API int petrel_program_find_input(const petrel_program_t *p, const char *name);

/** Bind a tensor input by index; the data is copied (the caller keeps it). */
PETREL_API petrel_status petrel_program_set_input(petrel_program_t *p, int i,
                                                  const petrel_tensor_desc *t);
/** Bind an int input (a dynamic size passed as a SymInt). */
PETREL_API petrel_status petrel_program_set_input_int(petrel_program_t *p, int i, int64_t v);

/** Run the program once on the bound inputs. Mutable buffers keep their new
 *  values for the next call. */
PETREL_API petrel_status petrel_program_execute(petrel_program_t *p);

/**
 * Describe output i of the last execute.  Tensor data is borrowed: it stays
 * valid until the next execute or free.  For int/float/bool outputs,
 * `t->rank` is 0 and `t->data` points at an int64/double/bool.
 */
PETREL_API petrel_status petrel_program_get_output(petrel_tensor_desc *out, petrel_program_t *p,
                                                   int i, petrel_value_kind *kind);

/**
 * Index of the largest element in row `row` of output i of the last execute
 * (a float tensor; rows run over the last dim, leading dims flattened; a
 * negative row counts from the end):
 * lowest index on ties, NaN ignored, -1 when every element is NaN.  It is
 * computed where the output lives, so for a device result only the index
 * crosses to the host (greedy decoding without reading the logits).
 */
PETREL_API petrel_status petrel_program_output_argmax(petrel_program_t *p, int i, int64_t row, int64_t *index);

/** The most argmax results petrel_program_feed_argmax keeps waiting. */
#define PETREL_FEED_MAX 4

/**
 * Greedy decoding without the host between steps.  Like
 * petrel_program_output_argmax, but the index is not returned: it is
 * written, where the output lives, into input `next` (an integer tensor of
 * one element, bound earlier with petrel_program_set_input), and input
 * `step` (the same kind; -1 for none) grows by one, both for the next
 * execute.  The call does not wait for the device, so the next execute can
 * be enqueued at once; collect the indices, in order, with
 * petrel_program_fed_result.  Binding either input again takes its value
 * from the host as usual.  When the logits are on the host, or a step on
 * the host reads those inputs, the index is computed at once (the call
 * waits) and the inputs are set on the host; the results come back the
 * same way.  PETREL_ERR_STATE when PETREL_FEED_MAX indices wait already.
 */
PETREL_API petrel_status petrel_program_feed_argmax(petrel_program_t *p, int output, int64_t row, int next,
                                                    int step);

/**
 * The oldest index petrel_program_feed_argmax computed (waits for the
 * device): as petrel_program_output_argmax gives it, -1 when every element
 * was NaN.  PETREL_ERR_STATE when none waits.
 */
PETREL_API petrel_status petrel_program_fed_result(petrel_program_t *p, int64_t *index);

/**
 * A hint: the next executes compute positions up to `last` (for an LM, the
 * last cache position of the chunk; -1: unknown, the default).  Results do
 * not depend on it; a device backend may pick kernels for the range of
 * positions it falls in (the CUDA decode attention: one query row per warp
 * below 512 positions) and keeps a captured run per range.
 */
PETREL_API petrel_status petrel_program_hint_position(petrel_program_t *p, int64_t last);

/** The most candidates petrel_program_output_topk gives. */
#define PETREL_TOPK_MAX 64

/**
 * The k largest of x / temperature over row `row` of output i of the last
 * execute (rows as in petrel_program_output_argmax; x read as float and
 * divided in float): larger first, the lower index first among equal
 * values, NaN never.  Fills ids[0 .. *n) and values[0 .. *n), where *n =
 * min(k, the numbers in the row).  Computed where the output lives, so for
 * a device result only the candidates cross to the host (top-k sampling
 * without reading the logits: petrel_sampler_sample_top).
 * @param k            1 .. PETREL_TOPK_MAX
 * @param temperature  > 0 (1 for the values themselves)
 */
PETREL_API petrel_status petrel_program_output_topk(petrel_program_t *p, int i, int64_t row, int32_t k,
                                                    float temperature, int32_t *ids, float *values, int32_t *n);

/**
 * A file the exporter attached to the program (the `.pt2` archive's
 * `extra/<name>`, carried into `.petrel` files by the compiler), such as
 * "tokenizer.json" or "petrel_meta.json".  The bytes are borrowed from the
 * program's mapping.  PETREL_ERR_NOT_FOUND when absent.
 */
PETREL_API petrel_status petrel_program_extra(const void **data, size_t *size, const petrel_program_t *p,
                                              const char *name);

/** Restore every mutable buffer to its value at load time. */
PETREL_API petrel_status petrel_program_reset_state(petrel_program_t *p);

/**
 * Profiling.  While it is on, every execute runs node by node (no device
 * graphs, so a little slower than usual) and each node's time is added up:
 * a device node's from the device's own timestamps (the span since the
 * device finished the previous node), a host node's from the host clock.
 * Turning it on clears the totals; turning it on allocates, executing
 * does not.
 */
PETREL_API petrel_status petrel_program_set_profiling(petrel_program_t *p, bool on);

typedef struct petrel_profile_entry {
    const char *node;         /* node name (borrowed) */
    const char *op;           /* operator target, e.g. "aten.mm.default" (borrowed) */
    const char *backend;      /* where it ran: "cpu" or "cuda" (views and shapes: "cpu") */
    int64_t calls;            /* executes since profiling was turned on */
    double ms;                /* total milliseconds over those calls */
} petrel_profile_entry;

/** Fills up to `max` entries, one per node in execution order; returns the
 *  number of nodes (0 when profiling was never turned on). */
PETREL_API int petrel_program_profile(const petrel_program_t *p, petrel_profile_entry *out, int max);

/** Counts for `petrel inspect`-style summaries. */
typedef struct petrel_program_stats {
    int64_t n_nodes;
    int64_t n_weights;        /* parameters + constants + buffers */
    int64_t weight_bytes;
    int64_t state_bytes;      /* mutable buffers */
    int32_t schema_major, schema_minor;
    const char *dialect;      /* "TRAINING", "ATEN", ... (borrowed) */
    bool compiled;            /* loaded from a .petrel program file */
    int64_t file_bytes;
    int64_t arena_bytes;      /* planned activation arena */
    int64_t naive_bytes;      /* activations if nothing shared memory */
    int32_t unplanned;        /* intermediates without a size bound (heap at run time) */
    int64_t nodes_on_device;  /* nodes placed on the device backend (views included) */
    const char *device;       /* that backend ("cuda"), or NULL when all run on the cpu */
    int64_t device_arena_bytes; /* planned activation arena on the device */
    /* weight bytes one call reads whole: all of weight_bytes but the tables
     * that only embedding lookups read (a token reads one row of those) and
     * the MoE experts' weights (below) -- the bytes a decode step must
     * stream at least */
    int64_t step_weight_bytes;
    /* weight bytes only MoE layers' experts read (a token reads the experts
     * its router chooses: top_k of each layer's E) */
    int64_t expert_weight_bytes;
} petrel_program_stats;

PETREL_API petrel_status petrel_program_get_stats(petrel_program_stats *out,
                                                  const petrel_program_t *p);

/** Which operators the program runs and how often: fills up to `max`
 *  (target, count) pairs, most frequent first; returns the number of
 *  distinct operators.  Targets are borrowed ("aten.mm.default"). */
PETREL_API int petrel_program_op_counts(const petrel_program_t *p, const char **targets, int64_t *counts,
                                        int max);
/** The same for the nodes placed on one backend ("cpu" or "cuda"). */
PETREL_API int petrel_program_op_counts_on(const petrel_program_t *p, const char *backend, const char **targets,
                                           int64_t *counts, int max);

/* A section of a compiled program file. */
typedef struct petrel_section_info {
    const char *kind;         /* "strings", "graph", "weights", "extra" */
    uint64_t offset, size;
    uint32_t align;
} petrel_section_info;

/** Section i of a `.petrel` program (PETREL_ERR_NOT_FOUND past the last one
 *  or for a `.pt2`). */
PETREL_API petrel_status petrel_program_section(petrel_section_info *out, const petrel_program_t *p, int i);

/* A quantized weight of a program (`petrel compile --quant`). */
typedef struct petrel_quant_info {
    char name[256];           /* the float weight it replaces ("model.layers.0.mlp.up_proj.weight") */
    const char *format;       /* "int8", "int8s", "int4", "int4s", "int2", "int2s", "nvfp4" (borrowed) */
    int32_t group_size;       /* values per scale along K */
    int64_t rows, cols;       /* N, K of the weight (of each expert's matrix) */
    int64_t experts;          /* E of an MoE layer's experts' weight (E, N, K); 1 otherwise */
    int64_t bytes;            /* codes + scales + zeros */
    int64_t float_bytes;      /* E * N * K in the compute dtype: what the float weight took */
    int32_t readers;          /* quantized ops reading it (2: a tied embedding and LM head) */
} petrel_quant_info;

/** Quantized weight i of a program, in the order its readers run
 *  (PETREL_ERR_NOT_FOUND past the last one). */
PETREL_API petrel_status petrel_program_quant_weight(petrel_quant_info *out, const petrel_program_t *p, int i);

/* ---- compiling ---------------------------------------------------------- */

/** Progress of a long step ("quantizing"): `done` of `total` units (bytes). */
typedef void (*petrel_progress_fn)(const char *stage, int64_t done, int64_t total, void *user);

typedef struct petrel_compile_opts {
    const char *backend;      /* "cpu" (default when NULL) */
    /* compute dtype (docs/ARCHITECTURE.md, "Compute dtype"): NULL = as exported;
     * "fp32", "fp16" or "bf16" converts a float32, bf16 or fp16 export as
     * torch's model.to(dtype) before the export would have */
    const char *dtype;
    /* weight quantization (docs/ARCHITECTURE.md, "Quantization"): NULL = float
     * weights; "int8", "int4" or "int2", optionally ":sym" and ":gs=32|64|128"
     * (asymmetric, group size 32 by default), or "nvfp4" */
    const char *quant;
    bool quant_embedding;     /* also quantize embeddings (a tied LM head shares them) */
    const char *const *quant_skip; /* fnmatch patterns: weights whose name matches stay float */
    int32_t n_quant_skip;
    petrel_progress_fn progress;   /* optional */
    void *progress_user;
} petrel_compile_opts;

typedef struct petrel_compile_report {
    int64_t nodes_in;         /* nodes imported from the archive */
    int64_t noops_removed;    /* aliases, detaches, metadata checks dropped */
    int64_t dead_removed;     /* nodes whose results nobody reads */
    int64_t fused;            /* fused ops made (RMSNorm, RoPE, cached attention) */
    int64_t nodes_out;        /* nodes in the program */
    int64_t weight_bytes;     /* tensor bytes carried (tied weights once) */
    int64_t file_bytes;       /* size of the written program */
    int64_t arena_bytes;      /* planned activation arena (largest inputs) */
    int64_t naive_bytes;      /* activations if nothing shared memory */
    int32_t nextras;          /* extra/ files carried along */
    /* partition (--backend): data nodes per side, metadata-only nodes
     * (views, shape arithmetic: they follow their input), intermediate
     * values crossing between the sides, and which ops fell back to the
     * CPU and why ("aten.nonzero.default x1: no CUDA kernel; ...") */
    int64_t on_device, on_cpu, meta_nodes, transfers;
    char fallback[512];
    /* quantization: weights quantized (tied ones once), their float bytes
     * before and codes + scales + zeros after; weights of quantizable ops
     * kept in float and why ("name (reason); ...", truncated) */
    int32_t quantized, quant_kept;
    int64_t quant_bytes_before, quant_bytes_after;
    char quant_kept_why[512];
    /* --dtype: the program's float dtype before and after (equal when
     * nothing changed), weight storages converted, their bytes before/after */
    petrel_dtype dtype_from, dtype_to;
    int32_t dtype_converted;
    int64_t dtype_bytes_before, dtype_bytes_after;
} petrel_compile_report;

/**
 * Compile a `.pt2` archive into a petrel program file (`.petrel`, see
 * docs/FORMAT.md), written atomically: no partial file on failure.
 * @param report receives counts when not NULL
 * @return PETREL_OK, or a status with petrel_last_error() set
 */
PETREL_API petrel_status petrel_compile(petrel_compile_report *report, const char *in_path,
                                        const char *out_path, const petrel_compile_opts *opts);

/* ---- tensor files (safetensors) ----------------------------------------- */

typedef struct petrel_tensor_file petrel_tensor_file_t;

/** Read a safetensors file into memory (validated: header, offsets, sizes). */
PETREL_API petrel_status petrel_tensor_file_read(petrel_tensor_file_t **out, const char *path);
/** An empty file object to add tensors to and write. */
PETREL_API petrel_status petrel_tensor_file_new(petrel_tensor_file_t **out);
PETREL_API void petrel_tensor_file_free(petrel_tensor_file_t *f);
PETREL_API int petrel_tensor_file_count(const petrel_tensor_file_t *f);
/** Name of tensor i (borrowed), or NULL when out of range. */
PETREL_API const char *petrel_tensor_file_name(const petrel_tensor_file_t *f, int i);
/** Look a tensor up by name; `out->data` is borrowed from the file object.
 *  PETREL_ERR_NOT_FOUND when absent. */
PETREL_API petrel_status petrel_tensor_file_get(petrel_tensor_desc *out,
                                                const petrel_tensor_file_t *f, const char *name);

/** Bind every input of program p from f by name (f's other tensors are
 *  ignored: torch bakes some export-time inputs into the program).
 *  PETREL_ERR_NOT_FOUND naming the first input f lacks; otherwise what
 *  petrel_program_set_input returns.  The message is p's. */
PETREL_API petrel_status petrel_program_set_inputs_from_file(petrel_program_t *p, const petrel_tensor_file_t *f);
/** Add a tensor (name and data are copied). */
PETREL_API petrel_status petrel_tensor_file_add(petrel_tensor_file_t *f, const char *name,
                                                const petrel_tensor_desc *t);
/** Write atomically (temp file + rename): no partial file on failure. */
PETREL_API petrel_status petrel_tensor_file_write(const petrel_tensor_file_t *f, const char *path);

#ifdef __cplusplus
}
#endif
#endif /* PETREL_H */
