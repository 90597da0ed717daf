/*
** exec.h -- the graph executor: runs a pt_graph node by node, each node on
** the backend the partitioner placed it on (CPU kernels, or a device
** backend's: runtime/device.h), keeps mutable buffers as persistent state,
** frees each intermediate after its last use, and checks every produced
** shape against the export's record.  A value read on the other side of
** the host/device boundary is copied there (its storage's twin) and kept
** while it is current.  When every data node runs on the device, a run
** whose inputs have the shapes of the previous run is captured as a
** device graph and later runs with those shapes replay it.  Used by
** program.c (the public API).
*/
#ifndef PETREL_EXEC_H
#define PETREL_EXEC_H

#include "device.h"

#define PT_GRAPHS 4 /* captured runs kept (shapes and position ranges) */

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
    struct pt_pool *pool;     /* the CPU kernels' worker threads (NULL: one thread) */
    bool oom;                 /* a helper allocation failed during this node */
    /* device (NULL when every node runs on the CPU) */
    const pt_device_ops *dev;
    void *dctx;               /* the device backend's context */
    uint8_t *vdev;            /* (nvalues) PT_DEV_* where each value lives */
    pt_plan dplan;            /* device activation arena */
    void *darena;
    struct pt_subst { int32_t vid; pt_tensor t; } *subst; /* args of this node read through twins */
    int32_t nsubst, cap_subst;
    /* whole-run device graph */
    bool graph_ok;            /* every data node runs on the device */
    bool graph_off;           /* a capture failed: run eagerly from now on */
    struct pt_gentry {        /* a captured run, for runs keyed as key */
        void *graph;          /* NULL: the entry is free */
        int64_t *key;         /* (nkey) */
        pt_rvalue *gout;      /* (noutputs) its outputs, restored on replay */
        uint64_t used;        /* when it last ran (the least recent goes first) */
    } gc[PT_GRAPHS];
    uint64_t tick;
    int64_t *lkey, *key;      /* (nkey) the last run's / this run's key: inputs' shapes, the position bound */
    int32_t nkey;
    bool lkey_set;
    int64_t hint_pos;         /* petrel_program_hint_position: the last position of the next runs, -1 unknown */
    int64_t pos_bound;        /* this run's: its positions are below this (0: no bound; device.h pos_bound) */
    bool capturing;           /* inside a capture: a heap allocation on the device spoils it */
    bool capture_spoiled;
    int64_t replays;          /* runs served by the graph (stats) */
    /* argmax results fed into inputs (pt_exec_feed_argmax), oldest first:
     * a device slot, or the index itself when computed on the host */
    struct pt_fed { bool on_dev; int32_t slot; int64_t index; } fed[PETREL_FEED_MAX];
    int32_t fed_head, nfed;
    int8_t *feed_ok;          /* (ninputs) 0 unknown, 1 fed on the device, -1 on the host */
    /* profiling (pt_exec_set_profiling): runs go node by node, no graph */
    bool profiling;
    double *prof_ms;          /* (nnodes) accumulated milliseconds */
    int64_t *prof_calls;      /* (nnodes) */
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
/* Profiling on (counts cleared) or off.  While on, every run goes node by
 * node and adds each node's time to prof_ms: a device node's from the
 * device's marks, a host node's from the host clock. */
PT_HIDDEN petrel_status pt_exec_set_profiling(pt_exec *ex, bool on);
/* Output i of the last run as a runtime value on the host (tensor views may
 * be strided); device results are copied to the host first. */
PT_HIDDEN petrel_status pt_exec_output(pt_exec *ex, int i, pt_rvalue *tmp, const pt_rvalue **out);
/* argmax over the last dim of row `row` of output i (leading dims
 * flattened), computed where the output lives: lowest index on ties, NaN
 * ignored, -1 when all are NaN. */
PT_HIDDEN petrel_status pt_exec_output_argmax(pt_exec *ex, int i, int64_t row, int64_t *index);
/* petrel_program_feed_argmax / petrel_program_fed_result (indices
 * checked). */
PT_HIDDEN petrel_status pt_exec_feed_argmax(pt_exec *ex, int out, int64_t row, int next, int step);
PT_HIDDEN petrel_status pt_exec_fed_result(pt_exec *ex, int64_t *index);
/* petrel_program_output_topk (arguments checked), computed where the
 * output lives. */
PT_HIDDEN petrel_status pt_exec_output_topk(pt_exec *ex, int i, int64_t row, int32_t k, float temperature,
                                            int32_t *ids, float *values, int32_t *n);

PT_HIDDEN pt_storage *pt_storage_new(int64_t nbytes);
PT_HIDDEN void pt_storage_release(pt_storage *s);

#endif /* PETREL_EXEC_H */
