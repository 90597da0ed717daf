/*
** ir.h -- petrel's graph IR: values, nodes with normalized arguments, the
** graph signature (weights, state, user inputs/outputs) and symbolic sizes.
** Built by the .pt2 importer (src/pt2), executed by the runtime, rewritten
** by the compiler.  Depends on core only.
*/
#ifndef PETREL_IR_H
#define PETREL_IR_H

#include "../core/core.h"
#include "../core/ops.h"

/* ---- symbolic expressions ----------------------------------------------- */

/* A node of a sympy expression tree as torch.export writes it (srepr form):
 * Symbol('s27'), Integer(3), Add(..), Mul(..), FloorDiv(a, b), ... */
typedef enum pt_expr_kind {
    PT_EXPR_INT,       /* literal */
    PT_EXPR_SYM,       /* symbol: `sym` indexes pt_graph.syms */
    PT_EXPR_ADD,
    PT_EXPR_MUL,
    PT_EXPR_POW,
    PT_EXPR_FLOORDIV,
    PT_EXPR_MOD,       /* Mod and PythonMod (sizes are non-negative) */
    PT_EXPR_MAX,
    PT_EXPR_MIN,
    PT_EXPR_CEILDIV,   /* CeilToInt(IntTrueDiv(a, b)) */
    PT_EXPR_RATIONAL,  /* p/q literal, only inside Mul/Pow */
    PT_EXPR_UNKNOWN,   /* a form petrel cannot evaluate (e.g. Piecewise): the
                          size is taken from the kernel, never checked */
    PT_EXPR_KIND_COUNT
} pt_expr_kind;

typedef struct pt_expr {
    pt_expr_kind kind;
    int64_t v;         /* INT value, RATIONAL numerator */
    int64_t q;         /* RATIONAL denominator */
    int32_t sym;       /* SYM */
    int32_t nkids;
    struct pt_expr **kids;
} pt_expr;

typedef struct pt_symbol {
    char *name;        /* "s27" */
    int64_t min, max;  /* range_constraints; INT64_MIN/INT64_MAX = unbounded */
    int64_t hint;      /* value seen at export, or -1 */
} pt_symbol;

/* One dimension of a tensor: a literal, or an expression over symbols. */
typedef struct pt_dim {
    int64_t lit;       /* valid when expr == NULL; also the export hint */
    pt_expr *expr;
} pt_dim;

/* ---- values ------------------------------------------------------------- */

typedef enum pt_vkind {
    PT_V_TENSOR,
    PT_V_INT,
    PT_V_FLOAT,
    PT_V_BOOL,
    PT_V_NONE,
    PT_V_KIND_COUNT
} pt_vkind;

/* Where a value comes from. */
typedef enum pt_vsrc {
    PT_SRC_NODE,        /* produced by a node */
    PT_SRC_USER_INPUT,  /* bound by the caller */
    PT_SRC_PARAM,       /* read-only weight in the archive */
    PT_SRC_CONST,       /* read-only tensor constant / non-persistent buffer */
    PT_SRC_BUFFER,      /* mutable state, private copy, persists across calls */
    PT_SRC_LITERAL,     /* a constant non-tensor input (constant_input spec) */
    PT_VSRC_COUNT
} pt_vsrc;

typedef struct pt_value {
    char *name;
    pt_vkind kind;
    pt_vsrc src;
    /* tensors: meta recorded at export */
    petrel_dtype dtype;
    int32_t rank;
    pt_dim shape[PETREL_MAX_RANK];
    /* weights (PARAM/CONST/BUFFER): bytes in the archive (borrowed from the
     * mapping), element strides and offset of the stored view */
    const uint8_t *data;
    int64_t data_bytes;              /* size of the stored storage */
    int64_t strides[PETREL_MAX_RANK];
    int64_t storage_offset;
    char *fqn;                       /* state-dict name ("model.layers.0.k_cache") */
    /* LITERAL and scalar meta: */
    int64_t ival;
    double fval;
} pt_value;

/* ---- arguments ---------------------------------------------------------- */

typedef enum pt_arg_kind {
    PT_ARG_NONE,
    PT_ARG_TENSOR,   /* items[0].vid */
    PT_ARG_TENSORS,  /* items[i].vid, -1 for a None element (Tensor?[]) */
    PT_ARG_INT,      /* items[0]: literal i, or vid of a symbolic int */
    PT_ARG_INTS,     /* items[i]: literal or symbolic ints */
    PT_ARG_FLOAT,    /* items[0]: literal f, or vid of a symbolic float */
    PT_ARG_FLOATS,
    PT_ARG_BOOL,     /* items[0].i (0/1), or vid of a symbolic bool */
    PT_ARG_BOOLS,
    PT_ARG_STRING,   /* str */
    PT_ARG_DTYPE,    /* items[0].i = petrel_dtype */
    PT_ARG_OTHER,    /* device / layout / memory format: value ignored */
    PT_ARG_KIND_COUNT
} pt_arg_kind;

typedef struct pt_item {
    int32_t vid;     /* >= 0: reference to a value; -1: literal */
    int64_t i;
    double f;
} pt_item;

typedef struct pt_arg {
    pt_arg_kind kind;
    int32_t n;       /* number of items */
    pt_item *items;
    char *str;
    int32_t fixed_len; /* schema list length ("int[2]" -> 2), 0 if none */
} pt_arg;

/* ---- nodes -------------------------------------------------------------- */

/* Devices a node can run on / a value can live on. */
enum { PT_DEV_CPU = 0, PT_DEV_CUDA = 1, PT_DEV_COUNT };

typedef struct pt_node {
    pt_op op;
    int32_t nargs;   /* == number of schema arguments; absent ones defaulted */
    pt_arg *args;
    int32_t nout;
    int32_t *outs;   /* value ids; -1 for a None output */
    char *name;      /* first output's name, for messages */
    uint8_t device;  /* where it runs (PT_DEV_*, runtime/kernel.h): set by pt_partition */
} pt_node;

/* ---- graph and signature ------------------------------------------------ */

typedef struct pt_user_output {
    pt_item item;        /* vid, or a literal when kind != TENSOR */
    pt_vkind kind;
} pt_user_output;

typedef struct pt_mutation {
    int32_t buffer_vid;  /* the BUFFER value */
    int32_t value_vid;   /* value to store into it after each call */
} pt_mutation;

typedef struct pt_graph {
    int32_t nvalues, cap_values;
    pt_value *values;
    int32_t nnodes;
    pt_node *nodes;
    int32_t ninputs;
    int32_t *inputs;          /* vids of user inputs (incl. LITERAL ones) */
    int32_t noutputs;
    pt_user_output *outputs;
    int32_t nmuts;
    pt_mutation *muts;
    int32_t nsyms;
    pt_symbol *syms;
    char *dialect;            /* "TRAINING", "ATEN", ... */
    int32_t schema_major, schema_minor;
    /* every pt_expr, for freeing */
    int32_t nexprs, cap_exprs;
    pt_expr **exprs;
} pt_graph;

PT_HIDDEN void pt_graph_free(pt_graph *g);
/* Free what a node owns (arguments, outputs, name) and zero it. */
PT_HIDDEN void pt_node_free(pt_node *n);

/* Check the graph's structure: ids in range, argument kinds that fit the
 * op schemas, each value defined once and before use, static weights.
 * Everything that executes has passed this; PETREL_ERR_FORMAT otherwise. */
PT_HIDDEN petrel_status pt_graph_verify(const pt_graph *g, pt_err *err);

/* An expression standing for a size petrel cannot evaluate. */
PT_HIDDEN pt_expr *pt_expr_unknown(pt_graph *g);
/* Parse a sympy srepr string into an expression owned by `g`; symbols are
 * added to g->syms as met.  Returns NULL (with a message in `err`) for
 * anything outside the supported forms; the message starts with "symbolic
 * size: out of memory" when an allocation failed. */
PT_HIDDEN pt_expr *pt_expr_parse(pt_graph *g, const char *s, pt_err *err);
/* Evaluate with symbol values `symv` (g->nsyms entries; INT64_MIN =
 * unknown).  Returns false when a symbol is unknown or the arithmetic is
 * undefined (division by zero, overflow). */
PT_HIDDEN bool pt_expr_eval(const pt_expr *e, const int64_t *symv, int64_t *out);
/* Are two dimensions the same size for every binding of the symbols?
 * True for equal literals and structurally equal expressions; false
 * whenever either holds a form petrel cannot evaluate (PT_EXPR_UNKNOWN). */
PT_HIDDEN bool pt_dim_eq(const pt_dim *a, const pt_dim *b);

/* ---- memory plan -------------------------------------------------------- */

/* Where each node-produced tensor lives in the activation arena. */
typedef struct pt_plan {
    int64_t *offset;      /* (nvalues) byte offset in the arena; -1 = not planned */
    int64_t *size;        /* (nvalues) planned bytes (upper bound) */
    int64_t arena_bytes;  /* arena size */
    int64_t naive_bytes;  /* sum of all planned slots (no sharing) */
    int32_t unplanned;    /* tensors without a finite size bound (heap at run time) */
} pt_plan;

/* Plan the activations of `g` for its largest accepted input shapes.
 * Values whose size has no bound are left unplanned. */
PT_HIDDEN petrel_status pt_plan_memory(const pt_graph *g, pt_plan *plan, pt_err *err);
/* The same for the values whose home is device `dev` (value_dev: one
 * PT_DEV_* per value, see pt_value_devices); value_dev NULL plans all. */
PT_HIDDEN petrel_status pt_plan_memory_on(const pt_graph *g, const uint8_t *value_dev, int dev, pt_plan *plan,
                                          pt_err *err);

/* ---- partitioning (partition.c) ----------------------------------------- */

/* Metadata-only ops (views, shape arithmetic, no-op asserts) touch no
 * tensor data: they run on the CPU whatever device their input lives on
 * and their results live where their input does. */
PT_HIDDEN bool pt_op_is_meta(pt_op op);

/* Does a backend run this node?  *why explains a "no". */
typedef bool (*pt_supports_fn)(const pt_graph *g, const pt_node *n, const char **why);

#define PT_PARTITION_MAX_REASONS 32
typedef struct pt_partition_reason {
    pt_op op;
    const char *why;
    int32_t count;
} pt_partition_reason;

typedef struct pt_partition_report {
    int32_t on_device;      /* data nodes placed on the device */
    int32_t on_cpu;         /* data nodes left on the CPU */
    int32_t meta;           /* metadata-only nodes (placed with their input) */
    int32_t transfers;      /* intermediate values a node reads from the other side */
    int32_t nreasons;
    pt_partition_reason reasons[PT_PARTITION_MAX_REASONS];
} pt_partition_report;

/* Place every node: a data node goes to `dev` when `supports` says so,
 * else to the CPU; a metadata node goes where its input lives.  Sets
 * node->device; the report (optional) counts the placement and why nodes
 * fell back. */
PT_HIDDEN void pt_partition(pt_graph *g, int dev, pt_supports_fn supports, pt_partition_report *rep);
/* The home of every value under the graph's placement (out: nvalues
 * entries): where a node's result is produced; buffers live with the
 * device nodes that use them; inputs, parameters and constants on the
 * CPU (a device keeps a copy of what its nodes read). */
PT_HIDDEN void pt_value_devices(const pt_graph *g, uint8_t *out);
PT_HIDDEN void pt_plan_free(pt_plan *plan);

/* ---- schemas ------------------------------------------------------------ */

typedef enum pt_stype {
    PT_ST_TENSOR, PT_ST_TENSOR_LIST, PT_ST_OPT_TENSOR_LIST,
    PT_ST_INT, PT_ST_INT_LIST, PT_ST_FLOAT, PT_ST_FLOAT_LIST,
    PT_ST_BOOL, PT_ST_BOOL_LIST, PT_ST_SCALAR, PT_ST_STR,
    PT_ST_DTYPE, PT_ST_OTHER, PT_STYPE_COUNT
} pt_stype;

typedef struct pt_schema_arg {
    char name[40];
    pt_stype type;
    bool optional;         /* "T?" */
    bool writes;           /* "Tensor(a!)": written in place (PT_OPF_STATE ops) */
    int32_t list_len;      /* "int[2]" -> 2, else 0 */
    bool has_default;
    char defval[40];       /* default as written in the schema */
} pt_schema_arg;

#define PT_MAX_SCHEMA_ARGS 32
typedef struct pt_schema {
    int32_t nargs;
    pt_schema_arg args[PT_MAX_SCHEMA_ARGS];
} pt_schema;

/* Parse an ops.def schema string.  Returns false on a malformed schema
 * (a bug in ops.def; tests parse every entry). */
PT_HIDDEN bool pt_schema_parse(const char *s, pt_schema *out);
/* The argument a schema default stands for ("None", "1", "[0,1]",
 * "'none'", ...), built into *a (items allocated); `where` names it in
 * the error. */
PT_HIDDEN petrel_status pt_arg_default(const pt_schema_arg *sa, pt_arg *a, const char *where, pt_err *err);

#endif /* PETREL_IR_H */
