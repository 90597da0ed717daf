/*
** compiler.h -- the "lower" step: .pt2 graph -> passes -> program file.
** Layer: compiler -> format, pt2, ir, core (never the runtime).
*/
#ifndef PETREL_COMPILER_H
#define PETREL_COMPILER_H

#include "../core/quant.h"
#include "../format/format.h"

/* Rewire every use of value `from` to value `to` (nodes, outputs,
 * mutations). */
PT_HIDDEN void pc_replace_uses(pt_graph *g, int32_t from, int32_t to);

/* The memory model the passes share (memory.c).  root[v] (nvalues
 * entries) is the value whose memory v is: v itself, or through views and
 * in-place results the value they were made from (nodes are in
 * topological order). */
PT_HIDDEN void pc_find_roots(const pt_graph *g, int32_t *root);
/* Does node n write memory (an in-place or a state op)? */
PT_HIDDEN bool pc_is_writer(const pt_node *n);
/* Does node n write its argument a?  An in-place op writes argument 0, a
 * state op (petrel.sdpa_cache) its Tensor(a!) arguments. */
PT_HIDDEN bool pc_writes_arg(const pt_node *n, int a);
/* Does node n write memory whose root is marked in `set` (nvalues
 * flags)? */
PT_HIDDEN bool pc_writes(const pt_node *n, const int32_t *root, const bool *set);
/* Same kind and, for tensors, the same dtype and sizes (pt_dim_eq). */
PT_HIDDEN bool pc_same_meta(const pt_value *a, const pt_value *b);

/* Drop aliasing no-ops (alias, detach, eval-mode dropout), checks that
 * compute nothing (_assert_tensor_metadata) and multiplications and
 * divisions by the number 1 that keep their input's dtype, rewiring their
 * users (the last only where no write can tell the result from its input).
 * Returns the number of nodes removed. */
PT_HIDDEN int pc_remove_noops(pt_graph *g);

/* Remove nodes whose results nobody reads and that write no state.
 * Returns the number of nodes removed. */
PT_HIDDEN int pc_dce(pt_graph *g);

/* Mark the nodes that must run (live: g->nnodes flags): those with an
 * effect (in-place and state writes, checks) and those whose results a
 * graph result or a live node reads.  False when memory ran out. */
PT_HIDDEN bool pc_mark_live(const pt_graph *g, bool *live);

/* Remove the nodes marked in `dead` (g->nnodes flags), keeping the order
 * of the rest; the caller guarantees nothing left reads their results.
 * Returns the number removed. */
PT_HIDDEN int pc_remove_nodes(pt_graph *g, const bool *dead);

/* Canonicalize the core-ATen form's linears (a flattening view, mm or
 * addmm of a transposed constant weight, the view back) into
 * aten.linear, as the export form writes them (see canon.c), so that
 * fusion and quantization see one op set; run it before pc_fuse.
 * Conservative like pc_fuse.  Returns the number of linears made (0 also
 * when memory ran out: the graph is then valid, possibly partly
 * rewritten). */
PT_HIDDEN int pc_canonicalize(pt_graph *g);

/* Fuse the decomposed LLM subgraphs into the fused ops of ops.def
 * (RMSNorm, rotate-half RoPE, attention over a static KV cache, the
 * rotary cos/sin tables; see fuse.c and rotary.c).  Conservative: a match whose intermediates are read elsewhere
 * is left alone.  Keeps the graph valid; aten-form cache mutations become
 * in-place writes of the fused attention.  Returns the number of fused
 * ops made (0 also when memory ran out: the graph is then unchanged or
 * partly fused, valid either way). */
PT_HIDDEN int pc_fuse(pt_graph *g);

/* The experts' products of MoE layers (HF's batched_mm experts: a gather
 * of the experts' weights, then bmm) => petrel.expert_linear (fuse.c).
 * Separate from pc_fuse because a backend without that kernel runs the
 * gather and bmm on the device instead; run it after pc_fuse.  Returns
 * the number made. */
PT_HIDDEN int pc_fuse_experts(pt_graph *g);

/* A layer's quantized q/k/v projections (petrel.qlinear, mode "n", three
 * weights) whose results reach one petrel.sdpa_cache only through the
 * heads' view and transpose => petrel.qkv_attn (fuse.c).  Run after
 * pc_quantize, for a backend with that op's kernel.  Returns the number
 * made. */
PT_HIDDEN int pc_fuse_qkv_attn(pt_graph *g);

/* Overwritten state (see state.c): reads of a tensor that was just
 * overwritten by copy_ / copy read the copy's source instead; in-place
 * writes whose memory nobody reads afterwards in the run, and that no
 * later run can observe (a temporary, or a buffer whose first access in
 * every run is a full overwrite), are removed; so are the buffer
 * mutations of the core-ATen form into a buffer read only for its shape,
 * and the dead code all this leaves (as pc_dce).  Exact for every
 * program.  Returns the number of nodes removed (0 also when memory ran
 * out: the graph is then valid, possibly partly rewritten). */
PT_HIDDEN int pc_forward_state(pt_graph *g);

/* Common-subexpression elimination (cse.c): a pure, deterministic node
 * with the same op and the same arguments as an earlier one, with no
 * write to their inputs in between, is removed and its readers read the
 * earlier node's results.  Run it after fusion (see cse.c).  Returns the
 * number of nodes removed (0 when memory ran out; the graph stays
 * valid). */
PT_HIDDEN int pc_cse(pt_graph *g);

/* Compute-dtype conversion (dtype.c): what the pass did; `blobs` own the
 * converted weights' bytes until pc_dtype_free (after the program is
 * written).  from == to when nothing was converted. */
typedef struct pc_dtype_result {
    petrel_dtype from, to;
    int32_t converted;             /* weight storages converted (shared ones once) */
    int64_t bytes_before, bytes_after;
    void **blobs;
    int32_t nblobs;
} pc_dtype_result;

/* Parse "fp32|fp16|bf16" (or float32, float16, half, bfloat16);
 * PETREL_ERR_INVALID_ARG naming the problem. */
PT_HIDDEN petrel_status pc_dtype_parse(const char *name, petrel_dtype *out, pt_err *err);

/* Convert a float32, bf16 or fp16 program to compute in `to` as exporting
 * after torch's model.to(to) would (the rules: dtype.c).  What those rules
 * cannot convert exactly is refused (PETREL_ERR_UNSUPPORTED); `to` equal
 * to the program's dtype changes nothing.  On failure the
 * graph must be discarded; *r is always to be freed with pc_dtype_free,
 * after the graph. */
PT_HIDDEN petrel_status pc_convert_dtype(pt_graph *g, petrel_dtype to, pc_dtype_result *r, pt_err *err);
PT_HIDDEN void pc_dtype_free(pc_dtype_result *r);

/* Constant folding (fold.c): casts and copies of constants (weights and
 * buffers nothing writes), arange/full/zeros/ones with literal arguments,
 * integer add/sub/mul and views of constants, with static shapes, become
 * CONST values; their nodes are removed.  Computed bytes
 * (at most 1 MiB per result) join own->blobs, freed by pc_dtype_free after
 * the program is written.  Returns the number of nodes folded (when
 * memory runs out it stops early; the graph stays valid). */
PT_HIDDEN int pc_fold(pt_graph *g, pc_dtype_result *own);

/* Weight quantization (quant.c): what to quantize and how. */
typedef struct pc_quant_opts {
    pt_qfmt format;
    int group_size;                /* 32, 64 or 128; 16 for nvfp4 */
    bool embedding;                /* also aten.embedding -> petrel.qembedding */
    bool experts;                  /* also petrel.expert_linear -> petrel.qexpert_linear
                                      (false: the target backend has no kernel for it) */
    bool bias;                     /* also linears with a bias -> qlinear mode "bias"
                                      (false: the target backend has no kernel for it) */
    const char *const *skip;       /* fnmatch patterns on weight names kept float */
    int nskip;
    petrel_progress_fn progress;   /* optional: called as weights are done */
    void *progress_user;
} pc_quant_opts;

/* What the pass did; `blobs` own the bytes of the new constants (the
 * graph's codes, scales and zeros point into them) until pc_quant_free. */
typedef struct pc_quant_result {
    int32_t quantized;             /* weights quantized (a tied one once) */
    int32_t kept;                  /* weights of those nodes kept in float */
    int64_t bytes_before;          /* float bytes of the quantized weights */
    int64_t bytes_after;           /* their codes + scales + zeros */
    char kept_why[512];            /* "name (reason); ..." (truncated) */
    void **blobs;
    int32_t nblobs;
} pc_quant_result;

/* Parse a scheme "int8|int4|int2[:sym][:gs=32|64|128]" or "nvfp4" into
 * o->format and o->group_size; PETREL_ERR_INVALID_ARG naming the problem. */
PT_HIDDEN petrel_status pc_quant_parse(const char *scheme, pc_quant_opts *o, pt_err *err);

/* Quantize the weights of the linears (and with o->embedding the
 * embeddings) into petrel.qlinear / petrel.qembedding (see quant.c).  The
 * graph stays valid.  On failure (out of memory) the graph may be partly
 * rewritten and must be discarded; *r is always to be freed with
 * pc_quant_free, after the graph. */
PT_HIDDEN petrel_status pc_quantize(pt_graph *g, const pc_quant_opts *o, pc_quant_result *r, pt_err *err);
PT_HIDDEN void pc_quant_free(pc_quant_result *r);

#endif /* PETREL_COMPILER_H */
