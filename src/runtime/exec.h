/*
** exec.h -- the graph executor: runs a pt_graph node by node on CPU kernels,
** keeps mutable buffers as persistent state, frees each intermediate after
** its last use, and checks every produced shape against the export's
** record.  Used by program.c (the public API).
*/
#ifndef PETREL_EXEC_H
#define PETREL_EXEC_H

#include "kernel.h"

struct pt_exec {
    const pt_graph *g;
    pt_err *err;
    pt_rvalue *vals;          /* (nvalues) */
    int32_t *last_use;        /* (nvalues) last node reading it; INT32_MAX = keep */
    pt_kernel_fn *kernels;    /* (nnodes) resolved at load */
    int64_t *symv;            /* (nsyms) bound symbol values; INT64_MIN = unknown */
    pt_tensor *state;         /* (nvalues) persistent tensors of BUFFER values */
    bool *input_set;          /* (ninputs) */
    /* activation arena (planned at init; see ir/plan.c) */
    pt_plan plan;
    void *arena_raw;
    uint8_t *arena;
    pt_storage *astor;        /* (nvalues) static storages over arena slots */
    /* per-node scratch: a bump region kept across calls, grown between
     * nodes when a node needed more (so steady-state calls allocate nothing) */
    uint8_t *scr;
    size_t scr_cap, scr_used, scr_need;
    void **spill;             /* overflow blocks of the current node */
    int32_t nspill, cap_spill;
    bool ran;                 /* outputs of a previous execute are alive */
    bool oom;                 /* a helper allocation failed during this node */
};

/* Prepare an executor for `g` (borrowed; must outlive it): resolve kernels,
 * compute lifetimes, copy mutable buffers into private state.  On failure
 * everything allocated is released. */
PT_HIDDEN petrel_status pt_exec_init(pt_exec *ex, const pt_graph *g, pt_err *err);
PT_HIDDEN void pt_exec_free(pt_exec *ex);
/* Bind user input i (a copy is made).  Checks dtype, rank and sizes. */
PT_HIDDEN petrel_status pt_exec_set_input(pt_exec *ex, int i, const petrel_tensor_desc *t);
PT_HIDDEN petrel_status pt_exec_set_input_scalar(pt_exec *ex, int i, int64_t iv, double fv);
PT_HIDDEN petrel_status pt_exec_run(pt_exec *ex);
PT_HIDDEN petrel_status pt_exec_reset_state(pt_exec *ex);
/* Output i of the last run as a runtime value (tensor views may be strided). */
PT_HIDDEN const pt_rvalue *pt_exec_output(pt_exec *ex, int i, pt_rvalue *tmp);

PT_HIDDEN pt_storage *pt_storage_new(int64_t nbytes);
PT_HIDDEN void pt_storage_release(pt_storage *s);

#endif /* PETREL_EXEC_H */
