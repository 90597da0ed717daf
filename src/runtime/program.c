/*
** program.c -- the public petrel_program_* API: open a `.pt2`, import it,
** prepare the executor, and move inputs/outputs across the boundary.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../backends/cuda/caps.h"
#include "../core/quant.h"
#include "../format/format.h"
#include "../pt2/pt2.h"
#include "exec.h"

struct petrel_program {
    pt_err err;
    pt_mapping map;      /* owned mapping (loads from a path) */
    bool compiled;       /* a .petrel program file, else a .pt2 archive */
    const uint8_t *bytes; /* the whole file (mapped or the caller's buffer) */
    uint64_t file_bytes;
    pz_archive zip;      /* .pt2 index; weights point into the bytes */
    pt_graph graph;
    pt_exec exec;
    char **out_names;    /* "output_<i>" */
    void *out_buf;       /* contiguous copy of the last strided output read */
    size_t out_buf_cap;
    pt_rvalue scalar_out;
    bool inspect_only;   /* loaded without a backend: no executor */
};

/* Where the nodes run: a compiled program keeps its placement unless a
 * backend is asked for; "cpu" puts everything on the CPU; "cuda" keeps a
 * program compiled for it and partitions any other. */
static void place(pt_graph *g, const petrel_load_opts *opts) {
    const char *backend = opts ? opts->backend : NULL;
    if (!backend) return;
    if (!strcmp(backend, "cpu")) {
        pt_partition(g, PT_DEV_CPU, NULL, NULL);
        return;
    }
    for (int32_t i = 0; i < g->nnodes; i++)
        if (g->nodes[i].device == PT_DEV_CUDA) return;
    const pt_device_ops *dev = pt_device_get(PT_DEV_CUDA);
    pt_partition(g, PT_DEV_CUDA, dev && dev->supports ? dev->supports : pt_cuda_supports, NULL);
}

/* Import or read `buf` (either format) and prepare the executor. */
/* Does a data node run on the CPU?  Only then are the CPU kernels' worker
 * threads worth starting (a program all on the GPU never wakes them). */
static bool has_cpu_work(const pt_graph *g) {
    for (int32_t i = 0; i < g->nnodes; i++)
        if (g->nodes[i].device == PT_DEV_CPU && !pt_op_is_meta(g->nodes[i].op)) return true;
    return false;
}

static petrel_status load_common(petrel_program_t *p, const uint8_t *buf, uint64_t size, const petrel_load_opts *opts) {
    petrel_status st;
    p->bytes = buf;
    p->file_bytes = size;
    if (pf_is_program(buf, size)) {
        p->compiled = true;
        st = pf_read(&p->graph, buf, size, opts && opts->verify_weights, &p->err);
    } else {
        st = pz_open_memory(&p->zip, buf, size, &p->err);
        if (st == PETREL_OK) st = pt2_import(&p->graph, &p->zip, &p->err);
    }
    if (st == PETREL_OK) place(&p->graph, opts);
    if (st == PETREL_OK && opts && opts->inspect_only) {
        /* no backend: plan the arenas only for the stats */
        p->inspect_only = true;
        uint8_t *vdev = pt_malloc((size_t)(p->graph.nvalues ? p->graph.nvalues : 1));
        if (!vdev) st = pt_fail(&p->err, PETREL_ERR_NOMEM, "out of memory");
        if (st == PETREL_OK) {
            pt_value_devices(&p->graph, vdev);
            st = pt_plan_memory_on(&p->graph, vdev, PT_DEV_CPU, &p->exec.plan, &p->err);
            if (st == PETREL_OK) st = pt_plan_memory_on(&p->graph, vdev, PT_DEV_CUDA, &p->exec.dplan, &p->err);
        }
        pt_free(vdev);
    } else if (st == PETREL_OK) {
        st = pt_exec_init(&p->exec, &p->graph, &p->err);
        int threads = opts && opts->threads > 0 ? opts->threads : pt_pool_default_threads();
        if (st == PETREL_OK && threads > 1 && has_cpu_work(&p->graph))
            p->exec.pool = pt_pool_new(threads); /* NULL: one thread, still right */
    }
    if (st == PETREL_OK) {
        p->out_names = pt_calloc((size_t)(p->graph.noutputs ? p->graph.noutputs : 1), sizeof(char *));
        if (!p->out_names) st = pt_fail(&p->err, PETREL_ERR_NOMEM, "out of memory");
        for (int i = 0; st == PETREL_OK && i < p->graph.noutputs; i++) {
            char nm[32];
            snprintf(nm, sizeof nm, "output_%d", i);
            p->out_names[i] = pt_strdup(nm);
            if (!p->out_names[i]) st = pt_fail(&p->err, PETREL_ERR_NOMEM, "out of memory");
        }
    }
    return st;
}

static petrel_status check_backend(const petrel_load_opts *opts) {
    if (opts && opts->threads < 0)
        return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "threads must be 0 (one per CPU) or more, not %d", (int)opts->threads);
    const char *backend = opts && opts->backend ? opts->backend : "cpu";
    if (!strcmp(backend, "cpu")) return PETREL_OK;
    if (strcmp(backend, "cuda") != 0)
        return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "unknown backend '%s' (petrel knows: cpu, cuda)", backend);
    if (!pt_device_get(PT_DEV_CUDA))
        return pt_fail(NULL, PETREL_ERR_BACKEND_UNAVAILABLE, "backend 'cuda' is not available in this build (have: cpu)");
    return PETREL_OK;
}

petrel_status petrel_program_load(petrel_program_t **out, const char *path, const petrel_load_opts *opts) {
    if (!out || !path) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_program_load: NULL argument");
    *out = NULL;
    PT_TRY(check_backend(opts));
    petrel_program_t *p = pt_calloc(1, sizeof *p);
    if (!p) return pt_fail(NULL, PETREL_ERR_NOMEM, "out of memory");
    petrel_status st = pt_map_file(&p->map, path, &p->err);
    if (st == PETREL_OK) st = load_common(p, p->map.data, p->map.size, opts);
    if (st != PETREL_OK) {
        char msg[sizeof p->err.msg + 600];
        snprintf(msg, sizeof msg, "%s: %s", path, p->err.msg);
        pt_set_last_error(msg);
        petrel_program_free(p);
        return st;
    }
    *out = p;
    return PETREL_OK;
}

petrel_status petrel_program_load_memory(petrel_program_t **out, const void *buf, size_t size,
                                         const petrel_load_opts *opts) {
    if (!out || !buf) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_program_load_memory: NULL argument");
    *out = NULL;
    PT_TRY(check_backend(opts));
    petrel_program_t *p = pt_calloc(1, sizeof *p);
    if (!p) return pt_fail(NULL, PETREL_ERR_NOMEM, "out of memory");
    petrel_status st = load_common(p, buf, size, opts);
    if (st != PETREL_OK) {
        pt_set_last_error(p->err.msg);
        petrel_program_free(p);
        return st;
    }
    *out = p;
    return PETREL_OK;
}

void petrel_program_free(petrel_program_t *p) {
    if (!p) return;
    if (p->inspect_only) {
        pt_plan_free(&p->exec.plan);
        pt_plan_free(&p->exec.dplan);
    }
    pt_exec_free(&p->exec);
    if (p->out_names)
        for (int i = 0; i < p->graph.noutputs; i++) pt_free(p->out_names[i]);
    pt_free(p->out_names);
    pt_graph_free(&p->graph);
    pz_close(&p->zip);
    pt_unmap_file(&p->map);
    pt_free(p->out_buf);
    pt_free(p);
}

const char *petrel_program_error(const petrel_program_t *p) { return p ? p->err.msg : petrel_last_error(); }

int petrel_program_num_inputs(const petrel_program_t *p) { return p ? p->graph.ninputs : 0; }
int petrel_program_num_outputs(const petrel_program_t *p) { return p ? p->graph.noutputs : 0; }

static petrel_value_kind public_kind(pt_vkind k) {
    switch (k) {
    case PT_V_TENSOR: return PETREL_VALUE_TENSOR;
    case PT_V_INT: return PETREL_VALUE_INT;
    case PT_V_FLOAT: return PETREL_VALUE_FLOAT;
    case PT_V_BOOL: return PETREL_VALUE_BOOL;
    default: return PETREL_VALUE_NONE;
    }
}

static void fill_info(petrel_io_info *o, const pt_graph *g, const pt_value *v, const char *name, pt_vkind kind) {
    memset(o, 0, sizeof *o);
    o->name = name;
    o->kind = public_kind(kind);
    if (!v || v->kind != PT_V_TENSOR) return;
    o->dtype = v->dtype;
    o->rank = v->rank;
    for (int d = 0; d < v->rank; d++) {
        const pt_expr *e = v->shape[d].expr;
        o->shape[d] = e ? -1 : v->shape[d].lit;
        o->max_shape[d] = o->shape[d];
        if (e && e->kind == PT_EXPR_SYM && g->syms[e->sym].max != INT64_MAX) o->max_shape[d] = g->syms[e->sym].max;
    }
}

petrel_status petrel_program_input_info(petrel_io_info *out, const petrel_program_t *p, int i) {
    if (!out || !p || i < 0 || i >= p->graph.ninputs)
        return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "input index %d out of range", i);
    const pt_value *v = &p->graph.values[p->graph.inputs[i]];
    fill_info(out, &p->graph, v, v->name, v->kind);
    return PETREL_OK;
}

petrel_status petrel_program_output_info(petrel_io_info *out, const petrel_program_t *p, int i) {
    if (!out || !p || i < 0 || i >= p->graph.noutputs)
        return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "output index %d out of range", i);
    const pt_user_output *o = &p->graph.outputs[i];
    fill_info(out, &p->graph, o->item.vid >= 0 ? &p->graph.values[o->item.vid] : NULL, p->out_names[i], o->kind);
    return PETREL_OK;
}

int petrel_program_find_input(const petrel_program_t *p, const char *name) {
    if (!p || !name) return -1;
    for (int i = 0; i < p->graph.ninputs; i++)
        if (!strcmp(p->graph.values[p->graph.inputs[i]].name, name)) return i;
    return -1;
}

petrel_status petrel_program_set_input(petrel_program_t *p, int i, const petrel_tensor_desc *t) {
    if (!p || !t || (!t->data && petrel_tensor_numel(t) > 0) || t->rank < 0 || t->rank > PETREL_MAX_RANK)
        return pt_fail(p ? &p->err : NULL, PETREL_ERR_INVALID_ARG, "petrel_program_set_input: bad argument");
    return pt_exec_set_input(&p->exec, i, t);
}

petrel_status petrel_program_set_inputs_from_file(petrel_program_t *p, const petrel_tensor_file_t *f) {
    if (!p || !f) return pt_fail(p ? &p->err : NULL, PETREL_ERR_INVALID_ARG, "petrel_program_set_inputs_from_file: NULL argument");
    for (int i = 0; i < p->graph.ninputs; i++) {
        petrel_io_info io;
        petrel_tensor_desc t;
        PT_TRY(petrel_program_input_info(&io, p, i));
        if (petrel_tensor_file_get(&t, f, io.name) != PETREL_OK)
            return pt_fail(&p->err, PETREL_ERR_NOT_FOUND, "missing input '%s'", io.name);
        PT_TRY(petrel_program_set_input(p, i, &t));
    }
    return PETREL_OK;
}

petrel_status petrel_program_set_input_int(petrel_program_t *p, int i, int64_t v) {
    if (!p) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_program_set_input_int: NULL program");
    return pt_exec_set_input_scalar(&p->exec, i, v, (double)v);
}

petrel_status petrel_program_execute(petrel_program_t *p) {
    if (!p) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_program_execute: NULL program");
    if (p->inspect_only) return pt_fail(&p->err, PETREL_ERR_STATE, "the program was loaded for inspection only");
    return pt_exec_run(&p->exec);
}

petrel_status petrel_program_get_output(petrel_tensor_desc *out, petrel_program_t *p, int i,
                                        petrel_value_kind *kind) {
    if (!out || !p || i < 0 || i >= p->graph.noutputs)
        return pt_fail(p ? &p->err : NULL, PETREL_ERR_INVALID_ARG, "output index %d out of range", i);
    if (!p->exec.ran) return pt_fail(&p->err, PETREL_ERR_STATE, "no outputs yet: execute the program first");
    memset(out, 0, sizeof *out);
    const pt_rvalue *v;
    PT_TRY(pt_exec_output(&p->exec, i, &p->scalar_out, &v));
    if (kind) *kind = public_kind(v->kind);
    if (v->kind != PT_V_TENSOR) {
        p->scalar_out = *v;
        out->rank = 0;
        if (v->kind == PT_V_FLOAT) {
            out->dtype = PETREL_DTYPE_F64;
            out->data = &p->scalar_out.f;
        } else {
            out->dtype = v->kind == PT_V_BOOL ? PETREL_DTYPE_BOOL : PETREL_DTYPE_I64;
            out->data = &p->scalar_out.i;
        }
        return PETREL_OK;
    }
    const pt_tensor *t = &v->t;
    out->dtype = t->dtype;
    out->rank = t->rank;
    for (int d = 0; d < t->rank; d++) out->shape[d] = t->shape[d];
    if (pt_is_contiguous(t)) {
        out->data = t->data;
        return PETREL_OK;
    }
    /* strided view: hand out a contiguous copy kept on the program */
    size_t bytes = (size_t)(pt_numel(t) * (int64_t)pt_elsize(t));
    if (bytes > p->out_buf_cap) {
        void *nb = pt_realloc(p->out_buf, bytes);
        if (!nb) return pt_fail(&p->err, PETREL_ERR_NOMEM, "out of memory");
        p->out_buf = nb;
        p->out_buf_cap = bytes;
    }
    pt_tensor dst = *t;
    dst.data = p->out_buf;
    int64_t st = 1;
    for (int d = t->rank - 1; d >= 0; d--) {
        dst.stride[d] = st;
        st *= t->shape[d];
    }
    pt_copy_into(&dst, t);
    out->data = p->out_buf;
    return PETREL_OK;
}

petrel_status petrel_program_output_argmax(petrel_program_t *p, int i, int64_t row, int64_t *index) {
    if (!p || !index || i < 0 || i >= p->graph.noutputs)
        return pt_fail(p ? &p->err : NULL, PETREL_ERR_INVALID_ARG, "petrel_program_output_argmax: bad argument");
    if (!p->exec.ran) return pt_fail(&p->err, PETREL_ERR_STATE, "no outputs yet: execute the program first");
    return pt_exec_output_argmax(&p->exec, i, row, index);
}

petrel_status petrel_program_feed_argmax(petrel_program_t *p, int output, int64_t row, int next, int step) {
    if (!p || output < 0 || output >= p->graph.noutputs || next < 0 || next >= p->graph.ninputs || step < -1 ||
        step >= p->graph.ninputs || step == next)
        return pt_fail(p ? &p->err : NULL, PETREL_ERR_INVALID_ARG, "petrel_program_feed_argmax: bad argument");
    if (!p->exec.ran) return pt_fail(&p->err, PETREL_ERR_STATE, "no outputs yet: execute the program first");
    return pt_exec_feed_argmax(&p->exec, output, row, next, step);
}

petrel_status petrel_program_hint_position(petrel_program_t *p, int64_t last) {
    if (!p) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_program_hint_position: bad argument");
    p->exec.hint_pos = last < 0 ? -1 : last;
    return PETREL_OK;
}

petrel_status petrel_program_fed_result(petrel_program_t *p, int64_t *index) {
    if (!p || !index) return pt_fail(p ? &p->err : NULL, PETREL_ERR_INVALID_ARG, "petrel_program_fed_result: bad argument");
    return pt_exec_fed_result(&p->exec, index);
}

petrel_status petrel_program_output_topk(petrel_program_t *p, int i, int64_t row, int32_t k, float temperature,
                                         int32_t *ids, float *values, int32_t *n) {
    if (!p || !ids || !values || !n || i < 0 || i >= p->graph.noutputs || k < 1 || k > PETREL_TOPK_MAX ||
        !(temperature > 0.0f) || isinf(temperature))
        return pt_fail(p ? &p->err : NULL, PETREL_ERR_INVALID_ARG, "petrel_program_output_topk: bad argument");
    if (!p->exec.ran) return pt_fail(&p->err, PETREL_ERR_STATE, "no outputs yet: execute the program first");
    return pt_exec_output_topk(&p->exec, i, row, k, temperature, ids, values, n);
}

petrel_status petrel_program_extra(const void **data, size_t *size, const petrel_program_t *p, const char *name) {
    if (!data || !size || !p || !name) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_program_extra: NULL argument");
    *data = NULL;
    *size = 0;
    if (p->compiled) {
        uint64_t len = 0;
        const uint8_t *b = pf_find_extra(p->bytes, p->file_bytes, name, &len);
        if (b) {
            *data = b;
            *size = (size_t)len;
            return PETREL_OK;
        }
    } else {
        for (int32_t i = 0; i < p->zip.n; i++) {
            const char *extra = pt2_extra_name(&p->zip.entries[i]);
            if (extra && !strcmp(extra, name)) {
                *data = p->zip.entries[i].data;
                *size = (size_t)p->zip.entries[i].size;
                return PETREL_OK;
            }
        }
    }
    return pt_fail(NULL, PETREL_ERR_NOT_FOUND, "the program carries no '%s'", name);
}

petrel_status petrel_program_reset_state(petrel_program_t *p) {
    if (!p) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_program_reset_state: NULL program");
    return pt_exec_reset_state(&p->exec);
}

petrel_status petrel_program_set_profiling(petrel_program_t *p, bool on) {
    if (!p) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_program_set_profiling: NULL program");
    if (p->inspect_only) return pt_fail(&p->err, PETREL_ERR_STATE, "the program was loaded for inspection only");
    return pt_exec_set_profiling(&p->exec, on);
}

int petrel_program_profile(const petrel_program_t *p, petrel_profile_entry *out, int max) {
    if (!p || !p->exec.prof_ms) return 0;
    const pt_graph *g = &p->graph;
    for (int32_t i = 0; i < g->nnodes && i < max && out; i++) {
        const pt_node *n = &g->nodes[i];
        bool dev = n->device != PT_DEV_CPU && !pt_op_is_meta(n->op);
        out[i] = (petrel_profile_entry){.node = n->name,
                                        .op = pt_op_table[n->op].target,
                                        .backend = dev ? p->exec.dev->name : "cpu",
                                        .calls = p->exec.prof_calls[i],
                                        .ms = p->exec.prof_ms[i]};
    }
    return g->nnodes;
}

/* How a call reads weight v: only as the table of embedding lookups
 * (aten.embedding's weight, petrel.qembedding's codes, scales or zeros: a
 * token reads one row), only as an MoE layer's experts (expert_linear's
 * weight, qexpert_linear's codes, scales or zeros, or a 3-D weight an
 * unfused index.Tensor gathers from: a token reads the experts it
 * chooses), or whole (any other read, or no read at all). */
enum { READ_WHOLE, READ_TABLE, READ_EXPERTS };
static int read_kind(const pt_graph *g, int32_t v) {
    int kind = -1;
    for (int32_t i = 0; i < g->nnodes; i++) {
        const pt_node *n = &g->nodes[i];
        for (int a = 0; a < n->nargs; a++)
            for (int k = 0; k < n->args[a].n; k++) {
                if (n->args[a].items[k].vid != v) continue;
                int r = (n->op == PETREL_OP_EMBEDDING && a == 0) || (n->op == PETREL_OP_PETREL_QEMBEDDING && a <= 2)
                            ? READ_TABLE
                        : (n->op == PETREL_OP_PETREL_EXPERT_LINEAR && a == 1) ||
                                (n->op == PETREL_OP_PETREL_QEXPERT_LINEAR && a >= 2 && a <= 4) ||
                                (n->op == PETREL_OP_INDEX_TENSOR && a == 0 && g->values[v].rank == 3)
                            ? READ_EXPERTS
                            : READ_WHOLE;
                if (r == READ_WHOLE || (kind >= 0 && r != kind)) return READ_WHOLE;
                kind = r;
            }
    }
    return kind < 0 ? READ_WHOLE : kind;
}

petrel_status petrel_program_get_stats(petrel_program_stats *out, const petrel_program_t *p) {
    if (!out || !p) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_program_get_stats: NULL argument");
    memset(out, 0, sizeof *out);
    const pt_graph *g = &p->graph;
    out->n_nodes = g->nnodes;
    for (int32_t i = 0; i < g->nvalues; i++) {
        const pt_value *v = &g->values[i];
        if (v->src != PT_SRC_PARAM && v->src != PT_SRC_CONST && v->src != PT_SRC_BUFFER) continue;
        int64_t n = 1;
        for (int d = 0; d < v->rank; d++) n *= v->shape[d].lit;
        int64_t b = n * (int64_t)petrel_dtype_size(v->dtype);
        out->n_weights++;
        if (v->src == PT_SRC_BUFFER) {
            out->state_bytes += b;
        } else {
            out->weight_bytes += b;
            int r = read_kind(g, i);
            if (r == READ_WHOLE) out->step_weight_bytes += b;
            else if (r == READ_EXPERTS) out->expert_weight_bytes += b;
        }
    }
    out->schema_major = g->schema_major;
    out->schema_minor = g->schema_minor;
    out->dialect = g->dialect;
    out->compiled = p->compiled;
    out->arena_bytes = p->exec.plan.arena_bytes;
    out->naive_bytes = p->exec.plan.naive_bytes;
    out->unplanned = p->exec.plan.unplanned + p->exec.dplan.unplanned;
    out->device_arena_bytes = p->exec.dplan.arena_bytes;
    for (int32_t i = 0; i < g->nnodes; i++) out->nodes_on_device += g->nodes[i].device != PT_DEV_CPU;
    if (out->nodes_on_device) out->device = "cuda";
    out->file_bytes = (int64_t)p->file_bytes;
    return PETREL_OK;
}

/* Op histogram of the nodes on device dev (-1: all). */
static int op_counts(const petrel_program_t *p, int dev, const char **targets, int64_t *counts, int max) {
    if (!p) return 0;
    int64_t per_op[PETREL_OP_COUNT] = {0};
    for (int32_t i = 0; i < p->graph.nnodes; i++)
        if (dev < 0 || p->graph.nodes[i].device == dev) per_op[p->graph.nodes[i].op]++;
    int distinct = 0;
    for (int op = 0; op < PETREL_OP_COUNT; op++) distinct += per_op[op] > 0;
    /* selection of the most frequent, `max` times */
    for (int k = 0; k < max && k < distinct; k++) {
        int best = -1;
        for (int op = 0; op < PETREL_OP_COUNT; op++)
            if (per_op[op] > 0 && (best < 0 || per_op[op] > per_op[best])) best = op;
        targets[k] = pt_op_table[best].target;
        counts[k] = per_op[best];
        per_op[best] = -per_op[best]; /* taken */
    }
    return distinct;
}

int petrel_program_op_counts(const petrel_program_t *p, const char **targets, int64_t *counts, int max) {
    return op_counts(p, -1, targets, counts, max);
}

int petrel_program_op_counts_on(const petrel_program_t *p, const char *backend, const char **targets, int64_t *counts,
                                int max) {
    int dev = !backend ? -2 : !strcmp(backend, "cpu") ? PT_DEV_CPU : !strcmp(backend, "cuda") ? PT_DEV_CUDA : -2;
    return dev == -2 ? 0 : op_counts(p, dev, targets, counts, max);
}

/* Where a quantized node keeps its codes, scales, zeros and format
 * arguments (qlinear: lists; qembedding, qexpert_linear: one tensor each). */
typedef struct quant_args {
    int codes, scales, zeros, fmt;
} quant_args;

static bool quant_layout(const pt_node *n, quant_args *q) {
    switch (n->op) {
    case PETREL_OP_PETREL_QLINEAR: *q = (quant_args){1, 2, 3, 5}; return true;
    case PETREL_OP_PETREL_QEMBEDDING: *q = (quant_args){0, 1, 2, 4}; return true;
    case PETREL_OP_PETREL_QEXPERT_LINEAR: *q = (quant_args){2, 3, 4, 5}; return true;
    case PETREL_OP_PETREL_QKV_ATTN: *q = (quant_args){1, 2, 3, 18}; return true;
    default: return false;
    }
}

/* The codes argument of a quantized node: its items (NULL for others). */
static const pt_arg *quant_codes(const pt_node *n) {
    quant_args q;
    return quant_layout(n, &q) ? &n->args[q.codes] : NULL;
}

petrel_status petrel_program_quant_weight(petrel_quant_info *out, const petrel_program_t *p, int i) {
    if (!out || !p) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_program_quant_weight: NULL argument");
    const pt_graph *g = &p->graph;
    int seen = 0;
    for (int32_t ni = 0; ni < g->nnodes; ni++) {
        const pt_node *n = &g->nodes[ni];
        const pt_arg *codes = quant_codes(n);
        for (int k = 0; codes && k < codes->n; k++) {
            int32_t c = codes->items[k].vid;
            bool first = true; /* the first reader of these codes */
            for (int32_t nj = 0; nj < ni && first; nj++) {
                const pt_arg *o = quant_codes(&g->nodes[nj]);
                for (int m = 0; o && m < o->n; m++) first &= o->items[m].vid != c;
            }
            for (int m = 0; m < k; m++) first &= codes->items[m].vid != c;
            if (!first || seen++ != i) continue;
            /* the i-th distinct codes tensor: describe it */
            quant_args qa = {0};
            quant_layout(n, &qa);
            bool list = n->op == PETREL_OP_PETREL_QLINEAR || n->op == PETREL_OP_PETREL_QKV_ATTN; /* per weight */
            const pt_value *cv = &g->values[c];
            const pt_value *sv = &g->values[n->args[qa.scales].items[list ? k : 0].vid];
            int fa = qa.fmt;
            int fmt = pt_qfmt_parse(n->args[fa].str);
            const char *nm = cv->fqn ? cv->fqn : cv->name;
            size_t len = strlen(nm), cut = len > 7 && !strcmp(nm + len - 7, ".qcodes") ? len - 7 : len;
            memset(out, 0, sizeof *out);
            snprintf(out->name, sizeof out->name, "%.*s", (int)cut, nm);
            out->format = fmt >= 0 ? pt_qfmt_name((pt_qfmt)fmt) : "?";
            out->group_size = (int32_t)n->args[fa + 1].items[0].i;
            int r = cv->rank;
            out->experts = r == 3 ? cv->shape[0].lit : 1;
            out->rows = cv->shape[r - 2].lit;
            out->cols = fmt >= 0 ? cv->shape[r - 1].lit * 8 / pt_qfmt_bits((pt_qfmt)fmt) : 0;
            out->bytes = cv->data_bytes + sv->data_bytes;
            const pt_arg *zeros = &n->args[qa.zeros];
            int zi = list ? k : 0;
            if (zeros->n > zi) out->bytes += g->values[zeros->items[zi].vid].data_bytes;
            int ko = n->op == PETREL_OP_PETREL_QKV_ATTN ? k + 1 : k; /* qkv_attn: q, k, v after the attention's */
            int32_t y = n->outs[list && n->nout > ko ? ko : 0];
            out->float_bytes = out->experts * out->rows * out->cols *
                               (int64_t)petrel_dtype_size(y >= 0 ? g->values[y].dtype : 0);
            for (int32_t nj = 0; nj < g->nnodes; nj++) {
                const pt_arg *o = quant_codes(&g->nodes[nj]);
                for (int m = 0; o && m < o->n; m++) out->readers += o->items[m].vid == c;
            }
            return PETREL_OK;
        }
    }
    return PETREL_ERR_NOT_FOUND;
}

petrel_status petrel_program_section(petrel_section_info *out, const petrel_program_t *p, int i) {
    if (!out || !p) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_program_section: NULL argument");
    uint32_t kind, align;
    uint64_t off, len;
    if (!p->compiled || !pf_section(p->bytes, p->file_bytes, i, &kind, &off, &len, &align))
        return PETREL_ERR_NOT_FOUND;
    static const char *names[] = {"?", "strings", "graph", "weights", "extra"};
    out->kind = kind < 5 ? names[kind] : "unknown";
    out->offset = off;
    out->size = len;
    out->align = align;
    return PETREL_OK;
}
