/*
** exec.c -- the executor behind petrel_program_execute, and the pk_* kernel
** interface.  Node by node: resolve the kernel (once, at init), run it,
** apply in-place semantics, verify the produced shapes against the export
** record, and release values after their last use.  Buffers (KV caches)
** live in persistent private storage, so state carries across calls
** exactly as torch's module buffers do.
*/
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../backends/cpu/cpu.h"
#include "exec.h"

static void drop_graph(pt_exec *ex);

/* ---- storage ------------------------------------------------------------ */

/* Largest weight made of zeros when the archive stored no bytes for it. */
#define PT_MAX_ZERO_FILL ((int64_t)1 << 30)

pt_storage *pt_storage_new(int64_t nbytes) {
    pt_storage *s = pt_calloc(1, sizeof *s);
    if (!s) return NULL;
    size_t n = (size_t)(nbytes > 0 ? nbytes : 1);
    s->raw = pt_malloc(n + 64);
    if (!s->raw) {
        pt_free(s);
        return NULL;
    }
    /* 64-byte alignment keeps vector loads happy in the fast paths */
    s->data = (uint8_t *)(((uintptr_t)s->raw + 63) & ~(uintptr_t)63);
    s->refs = 1;
    s->owned = true;
    s->nbytes = nbytes;
    return s;
}

/* Fresh device storage of `nbytes` (owned, refcount 1). */
static petrel_status dev_storage_new(pt_exec *ex, int64_t nbytes, pt_storage **out) {
    *out = NULL;
    pt_storage *s = pt_calloc(1, sizeof *s);
    if (!s) return pt_fail(ex->err, PETREL_ERR_NOMEM, "out of memory");
    petrel_status st = ex->dev->alloc(ex->dctx, (size_t)(nbytes > 0 ? nbytes : 1), &s->raw, ex->err);
    if (st != PETREL_OK) {
        pt_free(s);
        return st;
    }
    s->data = s->raw;
    s->refs = 1;
    s->owned = true;
    s->device = PT_DEV_CUDA;
    s->nbytes = nbytes;
    *out = s;
    return PETREL_OK;
}

static void storage_free_bytes(pt_storage *s) {
    if (!s->owned) return;
    if (s->device == PT_DEV_CPU) pt_free(s->raw);
    else pt_device_get(s->device)->free(s->raw);
    s->raw = NULL;
}

/* Drop the copy of s kept on the other side. */
static void twin_drop(pt_storage *s) {
    if (!s->twin || s->is_twin) return;
    storage_free_bytes(s->twin);
    pt_free(s->twin);
    s->twin = NULL;
    s->twin_fresh = false;
}

void pt_storage_release(pt_storage *s) {
    if (!s || s->is_static) return;
    if (--s->refs > 0) return;
    twin_drop(s);
    storage_free_bytes(s);
    pt_free(s);
}

static void release_value(pt_rvalue *v) {
    if (v->kind == PT_V_TENSOR) pt_storage_release(v->t.storage);
    memset(v, 0, sizeof *v);
    v->kind = PT_V_NONE;
}

/* The bytes of s changed: its copy on the other side is out of date. */
static inline void storage_written(pt_storage *s) {
    if (s && !s->is_twin && !s->read_only && !s->dev_newer) s->twin_fresh = false;
}

/* Describe a row-major tensor over storage `s` (from its start). */
static void set_contiguous(pt_tensor *t, petrel_dtype dt, int rank, const int64_t *shape, pt_storage *s) {
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->rank = rank;
    int64_t st = 1;
    for (int i = rank - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->stride[i] = st;
        st *= shape[i] > 0 ? shape[i] : 1;
    }
    t->storage = s;
    t->data = s->data;
}

/* Bytes of a contiguous tensor of this shape, checked. */
static petrel_status tensor_bytes(petrel_dtype dt, int rank, const int64_t *shape, int64_t *bytes, pt_err *err) {
    *bytes = 0;
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0 || !pt_mul_ok(n, shape[i], &n))
            return pt_fail(err, PETREL_ERR_SHAPE, "tensor size overflows or is negative");
    }
    if (!pt_mul_ok(n, (int64_t)petrel_dtype_size(dt), bytes) || *bytes > ((int64_t)1 << 46))
        return pt_fail(err, PETREL_ERR_NOMEM, "tensor of %" PRId64 " elements is too large", n);
    return PETREL_OK;
}

/* A contiguous tensor over fresh storage on the host or the device. */
static petrel_status new_tensor_on(pt_exec *ex, int dev, pt_tensor *t, petrel_dtype dt, int rank, const int64_t *shape) {
    int64_t bytes = 0;
    PT_TRY(tensor_bytes(dt, rank, shape, &bytes, ex->err));
    pt_storage *s;
    if (dev != PT_DEV_CPU) {
        ex->capture_spoiled |= ex->capturing; /* a graph must not keep a pointer the next run frees */
        PT_TRY(dev_storage_new(ex, bytes, &s));
    } else if (!(s = pt_storage_new(bytes))) {
        return pt_fail(ex->err, PETREL_ERR_NOMEM, "out of memory allocating %" PRId64 " bytes", bytes);
    }
    set_contiguous(t, dt, rank, shape, s);
    return PETREL_OK;
}

/* ---- crossing the host/device boundary ------------------------------------ */

/* The bytes of t's storage that t can touch: [*off, *off + *len). */
static void tensor_extent(const pt_tensor *t, int64_t *off, int64_t *len) {
    int64_t n = pt_numel(t), last = 0;
    *off = t->data - t->storage->data;
    for (int i = 0; i < t->rank; i++) last += (t->shape[i] - 1) * t->stride[i];
    *len = n > 0 ? (last + 1) * (int64_t)pt_elsize(t) : 0;
    if (*off < 0 || *off + *len > t->storage->nbytes) { /* not expected: fall back to everything */
        *off = 0;
        *len = t->storage->nbytes;
    }
}

/* Make the bytes of t on the other side of the boundary current, in its
 * storage's twin (created the first time and kept, so steady-state calls
 * allocate nothing).  Only t's extent is copied (an arena slot is sized
 * for the largest shapes); a copy of the whole storage marks the twin
 * fresh, so read-only data such as weights crosses once. */
static petrel_status twin_sync(pt_exec *ex, const pt_tensor *t) {
    pt_storage *s = t->storage;
    if (!s->twin) {
        pt_storage *tw;
        if (s->device == PT_DEV_CPU) {
            PT_TRY(dev_storage_new(ex, s->nbytes, &tw));
        } else if (!(tw = pt_storage_new(s->nbytes))) {
            return pt_fail(ex->err, PETREL_ERR_NOMEM, "out of memory copying a result to the host");
        }
        tw->is_twin = true;
        tw->twin = s;
        s->twin = tw;
        s->twin_fresh = false;
    }
    if (s->twin_fresh) return PETREL_OK;
    int64_t off, len;
    tensor_extent(t, &off, &len);
    if (off == 0 && len >= s->nbytes) len = s->nbytes;
    if (len > 0) {
        if (s->device == PT_DEV_CPU) PT_TRY(ex->dev->upload(ex->dctx, s->twin->data + off, s->data + off, (size_t)len, ex->err));
        else PT_TRY(ex->dev->download(ex->dctx, s->twin->data + off, s->data + off, (size_t)len, ex->err));
    }
    if (off == 0 && len == s->nbytes) s->twin_fresh = true;
    return PETREL_OK;
}

/* t re-based onto the twin of its storage. */
static pt_tensor twin_view(const pt_tensor *t) {
    pt_tensor r = *t;
    r.storage = t->storage->twin;
    r.data = r.storage->data + (t->data - t->storage->data);
    return r;
}

/* Write what a node wrote through a twin (t, a view of the twin) back
 * into the storage the twin copies. */
static petrel_status twin_writeback(pt_exec *ex, const pt_tensor *t) {
    pt_storage *twin = t->storage, *s = twin->twin;
    int64_t off, len;
    tensor_extent(t, &off, &len);
    if (len > 0) {
        if (s->device == PT_DEV_CPU) PT_TRY(ex->dev->download(ex->dctx, s->data + off, twin->data + off, (size_t)len, ex->err));
        else PT_TRY(ex->dev->upload(ex->dctx, s->data + off, twin->data + off, (size_t)len, ex->err));
    }
    return PETREL_OK;
}

petrel_status pk_copy_into(pt_exec *ex, const pt_tensor *dst, const pt_tensor *src) {
    int dd = dst->storage ? dst->storage->device : PT_DEV_CPU;
    int sd = src->storage ? src->storage->device : PT_DEV_CPU;
    if (dd != sd)
        return pt_fail(ex->err, PETREL_ERR_RUNTIME, "copy between host and device tensors inside a node");
    if (dd == PT_DEV_CPU) pt_copy_into(dst, src);
    else PT_TRY(ex->dev->copy_into(ex, dst, src));
    storage_written(dst->storage);
    return PETREL_OK;
}

/* Copy src into dst wherever each lives (src brought to dst's side). */
static petrel_status copy_across(pt_exec *ex, const pt_tensor *dst, const pt_tensor *src) {
    int dd = dst->storage->device, sd = src->storage ? src->storage->device : PT_DEV_CPU;
    if (dd == sd) return pk_copy_into(ex, dst, src);
    PT_TRY(twin_sync(ex, src));
    pt_tensor v = twin_view(src);
    return pk_copy_into(ex, dst, &v);
}

/* ---- init --------------------------------------------------------------- */

static void mark_use(pt_exec *ex, int32_t vid, int32_t node) {
    if (vid >= 0 && ex->last_use[vid] != INT32_MAX && ex->last_use[vid] < node) ex->last_use[vid] = node;
}

/* Materialize a weight value as a tensor view over the mapped archive. */
static void weight_view(const pt_value *v, pt_tensor *t, pt_storage *s) {
    memset(t, 0, sizeof *t);
    t->dtype = v->dtype;
    t->rank = v->rank;
    for (int i = 0; i < v->rank; i++) {
        t->shape[i] = v->shape[i].lit;
        t->stride[i] = v->strides[i];
    }
    t->storage = s;
    t->data = s->data + v->storage_offset * (int64_t)petrel_dtype_size(v->dtype);
}

/* Contiguous private copy of a buffer's load-time values into st (host or
 * device), from the mapping (or zeros when the archive stored none). */
static petrel_status load_state(pt_exec *ex, const pt_value *v, const pt_tensor *st) {
    int64_t bytes = pt_numel(st) * (int64_t)pt_elsize(st);
    pt_tensor host = *st;
    pt_storage *tmp = NULL;
    if (st->storage->device != PT_DEV_CPU) {
        /* stage on the host, then upload */
        if (!(tmp = pt_storage_new(bytes))) return pt_fail(ex->err, PETREL_ERR_NOMEM, "out of memory");
        host.storage = tmp;
        host.data = tmp->data;
    }
    if (!v->data) {
        memset(host.data, 0, (size_t)bytes);
    } else {
        pt_storage src = {.refs = 1, .is_static = true, .data = (uint8_t *)v->data, .nbytes = v->data_bytes};
        pt_tensor w;
        weight_view(v, &w, &src);
        pt_copy_into(&host, &w);
    }
    petrel_status rc = PETREL_OK;
    if (tmp) {
        rc = ex->dev->upload(ex->dctx, st->data, tmp->data, (size_t)bytes, ex->err);
        if (rc == PETREL_OK) rc = ex->dev->sync(ex->dctx, ex->err); /* tmp dies now */
        pt_storage_release(tmp);
    }
    storage_written(st->storage);
    return rc;
}

/* Arena storages for the planned values of one side. */
static petrel_status make_arena(pt_exec *ex, int dev, const pt_plan *plan, void **raw) {
    uint8_t *base;
    if (dev == PT_DEV_CPU) {
        *raw = pt_malloc((size_t)plan->arena_bytes + 64);
        if (!*raw) return pt_fail(ex->err, PETREL_ERR_NOMEM, "out of memory for the activation arena");
        base = (uint8_t *)(((uintptr_t)*raw + 63) & ~(uintptr_t)63);
    } else {
        PT_TRY(ex->dev->alloc(ex->dctx, (size_t)(plan->arena_bytes > 0 ? plan->arena_bytes : 1), raw, ex->err));
        base = *raw;
    }
    for (int32_t i = 0; i < ex->g->nvalues; i++) {
        if (plan->offset[i] < 0) continue;
        ex->astor[i] = (pt_storage){.refs = 1, .is_static = true, .device = (uint8_t)dev,
                                    .data = base + plan->offset[i], .nbytes = plan->size[i]};
    }
    return PETREL_OK;
}

/* Placement: resolve each node's kernel on its device; start the device
 * backend when any node uses it. */
static petrel_status init_devices(pt_exec *ex) {
    const pt_graph *g = ex->g;
    bool any = false;
    for (int32_t ni = 0; ni < g->nnodes; ni++) any |= g->nodes[ni].device != PT_DEV_CPU;
    if (any) {
        ex->dev = pt_device_get(PT_DEV_CUDA);
        if (!ex->dev)
            return pt_fail(ex->err, PETREL_ERR_BACKEND_UNAVAILABLE,
                           "the program is placed on 'cuda', which this build does not have (have: cpu)");
        PT_TRY(ex->dev->create(&ex->dctx, ex->err));
        ex->graph_ok = ex->dev->capture_begin != NULL;
    }
    pt_value_devices(g, ex->vdev);
    for (int32_t ni = 0; ni < g->nnodes; ni++) {
        const pt_node *n = &g->nodes[ni];
        if (n->device == PT_DEV_CPU || pt_op_is_meta(n->op)) {
            ex->kernels[ni] = cpu_kernel(n->op);
            if (!pt_op_is_meta(n->op)) ex->graph_ok = false;
            continue;
        }
        ex->kernels[ni] = ex->dev->kernel(n->op);
        if (!ex->kernels[ni])
            return pt_fail(ex->err, PETREL_ERR_UNSUPPORTED_OP, "node '%s' (%s) is placed on %s, which has no kernel for it",
                           n->name, pt_op_table[n->op].target, ex->dev->name);
    }
    /* the key of a run: every input's shape (or scalar value), then the
     * bound of its range of positions */
    ex->nkey = 1;
    for (int32_t i = 0; i < g->ninputs; i++) ex->nkey += 1 + g->values[g->inputs[i]].rank;
    size_t nk = (size_t)ex->nkey;
    ex->lkey = pt_calloc(nk, sizeof *ex->lkey);
    ex->key = pt_calloc(nk, sizeof *ex->key);
    if (!ex->lkey || !ex->key) return pt_fail(ex->err, PETREL_ERR_NOMEM, "out of memory");
    for (int e = 0; e < PT_GRAPHS; e++) {
        ex->gc[e].key = pt_calloc(nk, sizeof *ex->gc[e].key);
        ex->gc[e].gout = pt_calloc((size_t)(g->noutputs ? g->noutputs : 1), sizeof *ex->gc[e].gout);
        if (!ex->gc[e].key || !ex->gc[e].gout) return pt_fail(ex->err, PETREL_ERR_NOMEM, "out of memory");
    }
    return PETREL_OK;
}

petrel_status pt_exec_init(pt_exec *ex, const pt_graph *g, pt_err *err) {
    memset(ex, 0, sizeof *ex);
    ex->g = g;
    ex->err = err;
    ex->hint_pos = -1;
    size_t nv = (size_t)(g->nvalues ? g->nvalues : 1);
    ex->vals = pt_calloc(nv, sizeof *ex->vals);
    ex->last_use = pt_calloc(nv, sizeof *ex->last_use);
    ex->kernels = pt_calloc((size_t)(g->nnodes ? g->nnodes : 1), sizeof *ex->kernels);
    ex->symv = pt_calloc((size_t)(g->nsyms ? g->nsyms : 1), sizeof *ex->symv);
    ex->state = pt_calloc(nv, sizeof *ex->state);
    ex->input_set = pt_calloc((size_t)(g->ninputs ? g->ninputs : 1), sizeof *ex->input_set);
    ex->feed_ok = pt_calloc((size_t)(g->ninputs ? g->ninputs : 1), sizeof *ex->feed_ok);
    ex->vdev = pt_calloc(nv, 1);
    ex->astor = pt_calloc(nv, sizeof *ex->astor);
    if (!ex->vals || !ex->last_use || !ex->kernels || !ex->symv || !ex->state || !ex->input_set || !ex->feed_ok ||
        !ex->vdev || !ex->astor) {
        pt_exec_free(ex);
        return pt_fail(err, PETREL_ERR_NOMEM, "out of memory preparing the program");
    }
    for (int32_t i = 0; i < g->nvalues; i++) {
        ex->last_use[i] = -1;
        ex->vals[i].kind = PT_V_NONE;
    }
    petrel_status pst = init_devices(ex);
    /* activation arenas: one allocation per side for every planned intermediate */
    if (pst == PETREL_OK) pst = pt_plan_memory_on(g, ex->vdev, PT_DEV_CPU, &ex->plan, err);
    if (pst == PETREL_OK) pst = make_arena(ex, PT_DEV_CPU, &ex->plan, &ex->arena_raw);
    if (pst == PETREL_OK && ex->dev) pst = pt_plan_memory_on(g, ex->vdev, PT_DEV_CUDA, &ex->dplan, err);
    if (pst == PETREL_OK && ex->dev) pst = make_arena(ex, PT_DEV_CUDA, &ex->dplan, &ex->darena);
    if (pst != PETREL_OK) {
        pt_exec_free(ex);
        return pst;
    }
    /* values that must survive the whole run */
    for (int32_t i = 0; i < g->nvalues; i++)
        if (g->values[i].src != PT_SRC_NODE) ex->last_use[i] = INT32_MAX;
    for (int32_t i = 0; i < g->noutputs; i++)
        if (g->outputs[i].item.vid >= 0) ex->last_use[g->outputs[i].item.vid] = INT32_MAX;
    for (int32_t i = 0; i < g->nmuts; i++) ex->last_use[g->muts[i].value_vid] = INT32_MAX;
    for (int32_t ni = 0; ni < g->nnodes; ni++) {
        const pt_node *n = &g->nodes[ni];
        for (int a = 0; a < n->nargs; a++)
            for (int k = 0; k < n->args[a].n; k++) mark_use(ex, n->args[a].items[k].vid, ni);
        for (int k = 0; k < n->nout; k++)
            if (n->outs[k] >= 0) mark_use(ex, n->outs[k], ni);
    }
    /* Weights: views over the mapping (a zero-filled storage when the
     * archive held an empty file); a device reading them keeps a copy.
     * Buffers: private, persistent copies where they live. */
    for (int32_t i = 0; i < g->nvalues; i++) {
        const pt_value *v = &g->values[i];
        if (v->src != PT_SRC_PARAM && v->src != PT_SRC_CONST && v->src != PT_SRC_BUFFER) continue;
        if (v->src == PT_SRC_BUFFER) {
            int64_t shape[PETREL_MAX_RANK];
            for (int d = 0; d < v->rank; d++) shape[d] = v->shape[d].lit;
            pt_tensor st = {0};
            ex->err = err;
            petrel_status e1 = new_tensor_on(ex, ex->vdev[i], &st, v->dtype, v->rank, shape);
            if (e1 == PETREL_OK) {
                ex->state[i] = st;
                e1 = load_state(ex, v, &st);
            }
            if (e1 != PETREL_OK) {
                pt_exec_free(ex);
                return e1;
            }
            ex->vals[i].kind = PT_V_TENSOR;
            ex->vals[i].t = st;
            st.storage->refs++; /* the state slot's own reference */
            continue;
        }
        pt_storage *s;
        if (v->data) {
            s = pt_calloc(1, sizeof *s);
            if (!s) goto nomem;
            s->refs = 1;
            s->owned = false;
            s->data = (uint8_t *)v->data; /* never written: weights are read-only views */
            s->nbytes = v->data_bytes;
        } else {
            /* torch stores fake/empty storages as 0-byte files and loads
             * zeros; the size then comes from the metadata alone, so it is
             * bounded here rather than trusted */
            int64_t n = 1, b = 0;
            bool ok = true;
            for (int d = 0; ok && d < v->rank; d++) ok = pt_mul_ok(n, v->shape[d].lit, &n);
            ok = ok && pt_add_ok(n, v->storage_offset, &n) && pt_mul_ok(n, (int64_t)petrel_dtype_size(v->dtype), &b);
            if (!ok || b > PT_MAX_ZERO_FILL) {
                pt_exec_free(ex);
                return pt_fail(err, PETREL_ERR_FORMAT, "'%s' has no stored bytes and a size too large to fill with zeros",
                               v->fqn ? v->fqn : v->name);
            }
            s = pt_storage_new(b);
            if (!s) goto nomem;
            memset(s->data, 0, (size_t)b);
        }
        s->read_only = true; /* a graph replay, which marks what it may write, leaves its device copy alone */
        pt_tensor w;
        weight_view(v, &w, s);
        ex->vals[i].kind = PT_V_TENSOR;
        ex->vals[i].t = w;
    }
    return PETREL_OK;
nomem:
    pt_exec_free(ex);
    return pt_fail(err, PETREL_ERR_NOMEM, "out of memory mapping weights");
}

void pt_exec_free(pt_exec *ex) {
    if (!ex || !ex->g) return;
    const pt_graph *g = ex->g;
    if (ex->dev && ex->dctx) ex->dev->sync(ex->dctx, ex->err); /* nothing in flight uses what is freed */
    if (ex->vals)
        for (int32_t i = 0; i < g->nvalues; i++) release_value(&ex->vals[i]);
    if (ex->state)
        for (int32_t i = 0; i < g->nvalues; i++) pt_storage_release(ex->state[i].storage);
    if (ex->astor)
        for (int32_t i = 0; i < g->nvalues; i++) twin_drop(&ex->astor[i]);
    pt_pool_free(ex->pool);
    for (int32_t i = 0; i < ex->nspill; i++) pt_free(ex->spill[i]);
    pt_free(ex->spill);
    pt_free(ex->scr);
    pt_free(ex->arena_raw);
    if (ex->dev && ex->darena) ex->dev->free(ex->darena);
    if (ex->dev) drop_graph(ex);
    if (ex->dev && ex->dctx && ex->profiling) ex->dev->marks_init(ex->dctx, 0, ex->err);
    if (ex->dev && ex->dctx) ex->dev->destroy(ex->dctx);
    pt_free(ex->astor);
    pt_plan_free(&ex->plan);
    pt_plan_free(&ex->dplan);
    pt_free(ex->vals);
    pt_free(ex->last_use);
    pt_free(ex->kernels);
    pt_free(ex->symv);
    pt_free(ex->state);
    pt_free(ex->input_set);
    pt_free(ex->feed_ok);
    pt_free(ex->vdev);
    pt_free(ex->subst);
    for (int e = 0; e < PT_GRAPHS; e++) pt_free(ex->gc[e].key), pt_free(ex->gc[e].gout);
    pt_free(ex->lkey);
    pt_free(ex->key);
    pt_free(ex->prof_ms);
    pt_free(ex->prof_calls);
    memset(ex, 0, sizeof *ex);
}

/* ---- inputs ------------------------------------------------------------- */

/* Forget captured run e. */
static void drop_entry(pt_exec *ex, struct pt_gentry *e) {
    if (e->graph) ex->dev->graph_free(e->graph);
    e->graph = NULL;
    if (e->gout)
        for (int32_t i = 0; i < ex->g->noutputs; i++) release_value(&e->gout[i]);
}

/* Forget every captured run (their pointers are about to change). */
static void drop_graph(pt_exec *ex) {
    for (int e = 0; e < PT_GRAPHS; e++) drop_entry(ex, &ex->gc[e]);
}

static void format_shape(char *buf, size_t cap, int rank, const int64_t *shape) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < rank && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

petrel_status pt_exec_set_input(pt_exec *ex, int i, const petrel_tensor_desc *t) {
    const pt_graph *g = ex->g;
    if (i < 0 || i >= g->ninputs) return pt_fail(ex->err, PETREL_ERR_INVALID_ARG, "input index %d out of range", i);
    int32_t vid = g->inputs[i];
    const pt_value *v = &g->values[vid];
    if (v->kind != PT_V_TENSOR) {
        if (t->rank != 0 || petrel_tensor_numel(t) != 1)
            return pt_fail(ex->err, PETREL_ERR_SHAPE, "input '%s' is a scalar; got a rank-%d tensor", v->name, t->rank);
        double f = pt_load_f64(t->data, t->dtype);
        int64_t iv = pt_load_i64(t->data, t->dtype);
        return pt_exec_set_input_scalar(ex, i, iv, f);
    }
    if (!pt_dtype_valid((int)t->dtype) || t->dtype != v->dtype)
        return pt_fail(ex->err, PETREL_ERR_SHAPE, "input '%s' must be %s, got %s", v->name,
                       petrel_dtype_name(v->dtype), petrel_dtype_name(t->dtype));
    if (t->rank != v->rank)
        return pt_fail(ex->err, PETREL_ERR_SHAPE, "input '%s' must have rank %d, got %d", v->name, v->rank, t->rank);
    for (int d = 0; d < v->rank; d++) {
        int64_t got = t->shape[d];
        const pt_dim *dim = &v->shape[d];
        if (got < 0) return pt_fail(ex->err, PETREL_ERR_SHAPE, "input '%s': negative size", v->name);
        if (!dim->expr) {
            if (got != dim->lit)
                return pt_fail(ex->err, PETREL_ERR_SHAPE, "input '%s': size %d must be %" PRId64 ", got %" PRId64,
                               v->name, d, dim->lit, got);
        } else if (dim->expr->kind == PT_EXPR_SYM) {
            const pt_symbol *s = &g->syms[dim->expr->sym];
            if (got < s->min || got > s->max)
                return pt_fail(ex->err, PETREL_ERR_SHAPE,
                               "input '%s': size %d is %" PRId64 ", outside the exported range [%" PRId64 ", %" PRId64 "]",
                               v->name, d, got, s->min, s->max == INT64_MAX ? INT64_MAX : s->max);
        }
    }
    int64_t bytes = 0;
    PT_TRY(tensor_bytes(t->dtype, t->rank, t->shape, &bytes, ex->err));
    pt_rvalue *cur = &ex->vals[vid];
    pt_storage *s = cur->kind == PT_V_TENSOR ? cur->t.storage : NULL;
    if (s && s->owned && s->device == PT_DEV_CPU && s->nbytes >= bytes) {
        /* the same storage again: its device copy (and a captured graph
         * reading it) stays valid */
        set_contiguous(&cur->t, t->dtype, t->rank, t->shape, s);
    } else {
        pt_tensor nt = {0};
        PT_TRY(new_tensor_on(ex, PT_DEV_CPU, &nt, t->dtype, t->rank, t->shape));
        release_value(cur);
        cur->kind = PT_V_TENSOR;
        cur->t = nt;
        drop_graph(ex);
    }
    memcpy(cur->t.data, t->data, (size_t)bytes);
    cur->t.storage->dev_newer = false; /* the host's bytes again (after a feed) */
    storage_written(cur->t.storage);
    ex->input_set[i] = true;
    return PETREL_OK;
}

petrel_status pt_exec_set_input_scalar(pt_exec *ex, int i, int64_t iv, double fv) {
    const pt_graph *g = ex->g;
    if (i < 0 || i >= g->ninputs) return pt_fail(ex->err, PETREL_ERR_INVALID_ARG, "input index %d out of range", i);
    int32_t vid = g->inputs[i];
    const pt_value *v = &g->values[vid];
    if (v->kind == PT_V_TENSOR)
        return pt_fail(ex->err, PETREL_ERR_SHAPE, "input '%s' is a tensor, not a scalar", v->name);
    release_value(&ex->vals[vid]);
    ex->vals[vid].kind = v->kind;
    ex->vals[vid].i = v->kind == PT_V_BOOL ? (iv != 0) : iv;
    ex->vals[vid].f = v->kind == PT_V_FLOAT ? fv : (double)iv;
    ex->input_set[i] = true;
    return PETREL_OK;
}

/* Bind symbols from the user inputs' sizes (bare-symbol dims only) and
 * check that each symbol gets one value. */
static petrel_status bind_symbols(pt_exec *ex) {
    const pt_graph *g = ex->g;
    for (int32_t s = 0; s < g->nsyms; s++) ex->symv[s] = INT64_MIN;
    for (int32_t i = 0; i < g->ninputs; i++) {
        int32_t vid = g->inputs[i];
        const pt_value *v = &g->values[vid];
        if (v->kind != PT_V_TENSOR) continue;
        for (int d = 0; d < v->rank; d++) {
            const pt_expr *e = v->shape[d].expr;
            if (!e || e->kind != PT_EXPR_SYM) continue;
            int64_t got = ex->vals[vid].t.shape[d];
            if (ex->symv[e->sym] != INT64_MIN && ex->symv[e->sym] != got)
                return pt_fail(ex->err, PETREL_ERR_SHAPE,
                               "input '%s': size %d is %" PRId64 " but another input fixed %s = %" PRId64,
                               v->name, d, got, g->syms[e->sym].name, ex->symv[e->sym]);
            ex->symv[e->sym] = got;
        }
    }
    /* derived input dims (e.g. 2*s0) must agree with the bound symbols */
    for (int32_t i = 0; i < g->ninputs; i++) {
        int32_t vid = g->inputs[i];
        const pt_value *v = &g->values[vid];
        if (v->kind != PT_V_TENSOR) continue;
        for (int d = 0; d < v->rank; d++) {
            const pt_expr *e = v->shape[d].expr;
            int64_t want;
            if (!e || e->kind == PT_EXPR_SYM || !pt_expr_eval(e, ex->symv, &want)) continue;
            if (want != ex->vals[vid].t.shape[d])
                return pt_fail(ex->err, PETREL_ERR_SHAPE, "input '%s': size %d must be %" PRId64 " to match the other inputs, got %" PRId64,
                               v->name, d, want, ex->vals[vid].t.shape[d]);
        }
    }
    return PETREL_OK;
}

/* ---- run ---------------------------------------------------------------- */

/* The produced value must match the exported meta (dtype, rank, sizes). */
static petrel_status check_output(pt_exec *ex, const pt_node *n, int32_t vid) {
    const pt_value *v = &ex->g->values[vid];
    const pt_rvalue *r = &ex->vals[vid];
    if (v->kind != PT_V_TENSOR) {
        if (r->kind == PT_V_NONE)
            return pt_fail(ex->err, PETREL_ERR_RUNTIME, "kernel produced no value for '%s'", v->name);
        return PETREL_OK;
    }
    if (r->kind != PT_V_TENSOR)
        return pt_fail(ex->err, PETREL_ERR_RUNTIME, "kernel produced no tensor for '%s'", v->name);
    const pt_tensor *t = &r->t;
    bool ok = t->dtype == v->dtype && t->rank == v->rank;
    for (int d = 0; ok && d < v->rank; d++) {
        const pt_dim *dim = &v->shape[d];
        int64_t want;
        if (!dim->expr) want = dim->lit;
        else if (dim->expr->kind == PT_EXPR_SYM && ex->symv[dim->expr->sym] == INT64_MIN) {
            ex->symv[dim->expr->sym] = t->shape[d]; /* data-dependent size: learn it */
            continue;
        } else if (!pt_expr_eval(dim->expr, ex->symv, &want)) continue;
        ok = t->shape[d] == want;
    }
    if (ok) return PETREL_OK;
    char got[160], exp[160];
    int64_t es[PETREL_MAX_RANK];
    for (int d = 0; d < v->rank; d++) {
        es[d] = v->shape[d].lit;
        if (v->shape[d].expr && !pt_expr_eval(v->shape[d].expr, ex->symv, &es[d])) es[d] = -1;
    }
    format_shape(got, sizeof got, t->rank, t->shape);
    format_shape(exp, sizeof exp, v->rank, es);
    return pt_fail(ex->err, PETREL_ERR_RUNTIME, "'%s' came out %s %s, but the export recorded %s %s", v->name,
                   petrel_dtype_name(t->dtype), got, petrel_dtype_name(v->dtype), exp);
}

/* End of a node: drop overflow blocks, and grow the bump region once if
 * this node needed more, so the next call fits without allocating. */
static void free_scratch(pt_exec *ex) {
    for (int32_t i = 0; i < ex->nspill; i++) pt_free(ex->spill[i]);
    ex->nspill = 0;
    if (ex->scr_need > ex->scr_cap) {
        uint8_t *n = pt_malloc(ex->scr_need);
        if (n) { /* on failure keep the old region: the next call spills again */
            pt_free(ex->scr);
            ex->scr = n;
            ex->scr_cap = ex->scr_need;
        }
    }
    ex->scr_used = 0;
    ex->scr_need = 0;
}

/* Before a node: every tensor it reads from the other side of the
 * host/device boundary is read through that storage's current twin. */
static petrel_status bring_args(pt_exec *ex, const pt_node *n, int dev) {
    ex->nsubst = 0;
    for (int a = 0; a < n->nargs; a++) {
        const pt_arg *g = &n->args[a];
        if (g->kind != PT_ARG_TENSOR && g->kind != PT_ARG_TENSORS) continue;
        for (int k = 0; k < g->n; k++) {
            int32_t vid = g->items[k].vid;
            if (vid < 0 || ex->vals[vid].kind != PT_V_TENSOR) continue;
            pt_tensor *t = &ex->vals[vid].t;
            if (t->storage->device == dev) continue; /* also: already brought */
            if (ex->nsubst == ex->cap_subst) {
                int32_t cap = ex->cap_subst ? 2 * ex->cap_subst : 16;
                struct pt_subst *ns = pt_realloc(ex->subst, (size_t)cap * sizeof *ns);
                if (!ns) return pt_fail(ex->err, PETREL_ERR_NOMEM, "out of memory");
                ex->subst = ns;
                ex->cap_subst = cap;
            }
            PT_TRY(twin_sync(ex, t));
            ex->subst[ex->nsubst++] = (struct pt_subst){vid, *t};
            *t = twin_view(t);
        }
    }
    return PETREL_OK;
}

/* After a node: what it wrote through a twin goes back to the original,
 * results that alias a twin are re-based onto the original, and the
 * arguments read their own storage again. */
static petrel_status return_args(pt_exec *ex, const pt_node *n, bool ran) {
    petrel_status st = PETREL_OK;
    bool writes = pt_op_table[n->op].flags & PT_OPF_STATE; /* in-place results are copied by run_node */
    for (int32_t i = 0; i < ex->nsubst; i++) {
        int32_t vid = ex->subst[i].vid;
        pt_tensor *t = &ex->vals[vid].t;
        pt_storage *twin = t->storage;
        /* a state op writes its buffers, never a weight it reads (a
         * read-only view of the program file) */
        bool weight = ex->g->values[vid].src == PT_SRC_PARAM || ex->g->values[vid].src == PT_SRC_CONST;
        if (ran && writes && !weight && st == PETREL_OK && twin->is_twin) st = twin_writeback(ex, t);
        for (int k = 0; k < n->nout; k++) {
            pt_rvalue *o = n->outs[k] >= 0 ? &ex->vals[n->outs[k]] : NULL;
            if (!o || o->kind != PT_V_TENSOR || o->t.storage != twin) continue;
            o->t.data = twin->twin->data + (o->t.data - twin->data);
            o->t.storage = twin->twin;
            twin->twin->refs++;
            twin->refs--;
        }
        *t = ex->subst[i].t;
    }
    ex->nsubst = 0;
    return st;
}

/* Run node ni's kernel on its device, with the arguments brought there.
 * A device node that ran out of device scratch is repeated once (the
 * scratch has grown by then). */
static petrel_status run_kernel(pt_exec *ex, int32_t ni) {
    const pt_node *n = &ex->g->nodes[ni];
    int dev = pt_op_is_meta(n->op) ? -1 : n->device;
    if (dev < 0) return ex->kernels[ni](ex, n); /* metadata only: runs wherever its input lives */
    PT_TRY(bring_args(ex, n, dev));
    petrel_status st;
    for (int attempt = 0;; attempt++) {
        if (dev != PT_DEV_CPU) ex->dev->node_begin(ex->dctx);
        st = ex->kernels[ni](ex, n);
        if (dev == PT_DEV_CPU) break;
        bool retry = false;
        petrel_status e = ex->dev->node_end(ex->dctx, &retry, ex->err);
        if (retry && attempt == 0) {
            drop_graph(ex); /* the scratch moved */
            continue;
        }
        if (st == PETREL_OK) st = e;
        break;
    }
    petrel_status st2 = return_args(ex, n, st == PETREL_OK);
    return st != PETREL_OK ? st : st2;
}

static petrel_status run_node(pt_exec *ex, int32_t ni) {
    const pt_graph *g = ex->g;
    const pt_node *n = &g->nodes[ni];
    ex->oom = false;
    petrel_status st = run_kernel(ex, ni);
    free_scratch(ex);
    /* a kernel sees a failed scratch allocation as a missing (or empty)
     * argument; whatever it returned, report what really happened */
    if (ex->oom) return pt_fail(ex->err, PETREL_ERR_NOMEM, "out of memory");
    if (st != PETREL_OK) return st;
    if ((pt_op_table[n->op].flags & PT_OPF_INPLACE) && n->nout > 0 && n->outs[0] >= 0) {
        /* the kernel computed the functional result; write it into self */
        const pt_tensor *self = pk_tensor(ex, n, 0);
        pt_rvalue *o = &ex->vals[n->outs[0]];
        if (!self || o->kind != PT_V_TENSOR)
            return pt_fail(ex->err, PETREL_ERR_RUNTIME, "in-place op without a tensor result");
        pt_tensor src;
        if (!pt_broadcast_to(&o->t, self->rank, self->shape, &src))
            return pt_fail(ex->err, PETREL_ERR_SHAPE, "in-place result does not fit its target");
        PT_TRY(copy_across(ex, self, &src));
        pt_storage_release(o->t.storage);
        o->t = *self;
        o->t.storage->refs++;
    }
    if (pt_op_table[n->op].flags & PT_OPF_STATE)
        for (int a = 0; a < n->nargs; a++) {
            const pt_tensor *t = n->args[a].kind == PT_ARG_TENSOR ? pk_tensor(ex, n, a) : NULL;
            if (t) storage_written(t->storage);
        }
    for (int k = 0; k < n->nout; k++)
        if (n->outs[k] >= 0) PT_TRY(check_output(ex, n, n->outs[k]));
    /* release what this node was the last to read (and unused outputs) */
    for (int a = 0; a < n->nargs; a++)
        for (int k = 0; k < n->args[a].n; k++) {
            int32_t vid = n->args[a].items[k].vid;
            if (vid >= 0 && ex->last_use[vid] == ni) release_value(&ex->vals[vid]);
        }
    for (int k = 0; k < n->nout; k++) {
        int32_t vid = n->outs[k];
        if (vid >= 0 && ex->last_use[vid] == ni) release_value(&ex->vals[vid]);
    }
    return PETREL_OK;
}

/* This run's key: the shapes of the tensor inputs, the scalar inputs' values. */
static void make_key(pt_exec *ex) {
    int32_t k = 0;
    for (int32_t i = 0; i < ex->g->ninputs; i++) {
        const pt_rvalue *v = &ex->vals[ex->g->inputs[i]];
        if (v->kind != PT_V_TENSOR) {
            ex->key[k++] = v->i;
            continue;
        }
        ex->key[k++] = v->t.rank;
        for (int d = 0; d < v->t.rank && k < ex->nkey - 1; d++) ex->key[k++] = v->t.shape[d];
    }
    ex->key[ex->nkey - 1] = ex->pos_bound;
}

static bool key_eq(const pt_exec *ex, const int64_t *a) { return !memcmp(a, ex->key, (size_t)ex->nkey * sizeof *a); }

/* ---- profiling ----------------------------------------------------------- */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* Does node ni run its kernel on the device (a profiling mark follows it)? */
static bool on_device(const pt_exec *ex, int32_t ni) {
    const pt_node *n = &ex->g->nodes[ni];
    return ex->dev && n->device != PT_DEV_CPU && !pt_op_is_meta(n->op);
}

petrel_status pt_exec_set_profiling(pt_exec *ex, bool on) {
    int32_t nn = ex->g->nnodes;
    if (on && !ex->prof_ms) {
        ex->prof_ms = pt_calloc((size_t)(nn ? nn : 1), sizeof *ex->prof_ms);
        ex->prof_calls = pt_calloc((size_t)(nn ? nn : 1), sizeof *ex->prof_calls);
        if (!ex->prof_ms || !ex->prof_calls) return pt_fail(ex->err, PETREL_ERR_NOMEM, "out of memory");
    }
    if (on) {
        memset(ex->prof_ms, 0, (size_t)nn * sizeof *ex->prof_ms);
        memset(ex->prof_calls, 0, (size_t)nn * sizeof *ex->prof_calls);
    }
    if (ex->dev && on != ex->profiling) PT_TRY(ex->dev->marks_init(ex->dctx, on ? nn + 1 : 0, ex->err));
    ex->profiling = on;
    return PETREL_OK;
}

/* After a profiled run has synchronized: each device node's time is the
 * span from the previous device mark to its own. */
static petrel_status prof_collect(pt_exec *ex) {
    int32_t prev = 0;
    for (int32_t ni = 0; ni < ex->g->nnodes; ni++) {
        if (!on_device(ex, ni)) continue;
        double ms;
        PT_TRY(ex->dev->elapsed(ex->dctx, prev, ni + 1, &ms, ex->err));
        ex->prof_ms[ni] += ms;
        prev = ni + 1;
    }
    return PETREL_OK;
}

/* Node by node. */
static petrel_status run_nodes(pt_exec *ex) {
    const pt_graph *g = ex->g;
    /* drop the previous run's values; re-bind state */
    for (int32_t i = 0; i < g->nvalues; i++) {
        if (g->values[i].src == PT_SRC_NODE) release_value(&ex->vals[i]);
        if (g->values[i].src == PT_SRC_BUFFER && ex->vals[i].t.data != ex->state[i].data) {
            release_value(&ex->vals[i]);
            ex->vals[i].kind = PT_V_TENSOR;
            ex->vals[i].t = ex->state[i];
            ex->state[i].storage->refs++;
        }
    }
    if (ex->profiling && ex->dev) PT_TRY(ex->dev->mark(ex->dctx, 0, ex->err));
    for (int32_t ni = 0; ni < g->nnodes; ni++) {
        double t0 = ex->profiling ? now_ms() : 0;
        petrel_status st = run_node(ex, ni);
        if (st == PETREL_OK && ex->profiling) {
            if (on_device(ex, ni)) st = ex->dev->mark(ex->dctx, ni + 1, ex->err);
            else ex->prof_ms[ni] += now_ms() - t0;
            ex->prof_calls[ni]++;
        }
        if (st != PETREL_OK) {
            char m[sizeof ex->err->msg];
            snprintf(m, sizeof m, "%s", ex->err->msg);
            return pt_fail(ex->err, st, "node %d '%s' (%s): %s", ni, g->nodes[ni].name,
                           pt_op_table[g->nodes[ni].op].target, m);
        }
    }
    /* functional-form state updates: copy each mutation into its buffer */
    for (int32_t i = 0; i < g->nmuts; i++) {
        const pt_rvalue *src = &ex->vals[g->muts[i].value_vid];
        const pt_tensor *dst = &ex->state[g->muts[i].buffer_vid];
        pt_tensor b;
        if (src->kind != PT_V_TENSOR || !pt_broadcast_to(&src->t, dst->rank, dst->shape, &b))
            return pt_fail(ex->err, PETREL_ERR_RUNTIME, "buffer update of '%s' has the wrong shape",
                           g->values[g->muts[i].buffer_vid].fqn);
        if (b.data != dst->data) PT_TRY(copy_across(ex, dst, &b));
    }
    return PETREL_OK;
}

/* The device copies of the inputs, made current before a graph runs.  An
 * input smaller than its storage (a decode step's ids in the storage of a
 * prompt's) is all the storage holds: its twin counts as current, so that
 * the run captured next does not copy it again -- a copy captured into the
 * graph would read the host's bytes at every replay, over a fed input's
 * device value (petrel_program_feed_argmax). */
static petrel_status upload_inputs(pt_exec *ex) {
    for (int32_t i = 0; i < ex->g->ninputs; i++) {
        pt_rvalue *v = &ex->vals[ex->g->inputs[i]];
        if (v->kind == PT_V_TENSOR && v->t.storage->device == PT_DEV_CPU) {
            PT_TRY(twin_sync(ex, &v->t));
            if (v->t.data == v->t.storage->data) v->t.storage->twin_fresh = true;
        }
    }
    return PETREL_OK;
}

/* A replayed graph wrote the device side of every intermediate and buffer. */
static void graph_wrote(pt_exec *ex) {
    for (int32_t i = 0; i < ex->g->nvalues; i++) {
        storage_written(&ex->astor[i]);
        if (ex->vals[i].kind == PT_V_TENSOR) storage_written(ex->vals[i].t.storage);
        if (ex->state[i].storage) storage_written(ex->state[i].storage);
    }
}

/* Capture this run into a device graph and launch it.  Returns true when
 * the run happened (captured or not); false when it must run eagerly. */
static petrel_status run_captured(pt_exec *ex, bool *done) {
    *done = false;
    PT_TRY(upload_inputs(ex));
    PT_TRY(ex->dev->capture_begin(ex->dctx, ex->err));
    ex->capturing = true;
    ex->capture_spoiled = false;
    petrel_status st = run_nodes(ex);
    ex->capturing = false;
    void *graph = NULL;
    petrel_status st2 = ex->dev->capture_end(ex->dctx, &graph, ex->err);
    if (st != PETREL_OK || st2 != PETREL_OK || !graph || ex->capture_spoiled) {
        /* not capturable (or failed while capturing): eager from now on */
        if (graph) ex->dev->graph_free(graph);
        ex->graph_off = true;
        return PETREL_OK;
    }
    /* into a free entry, or over the least recently run */
    struct pt_gentry *e = &ex->gc[0];
    for (int j = 1; j < PT_GRAPHS && e->graph; j++)
        if (!ex->gc[j].graph || ex->gc[j].used < e->used) e = &ex->gc[j];
    drop_entry(ex, e);
    e->graph = graph;
    e->used = ++ex->tick;
    memcpy(e->key, ex->key, (size_t)ex->nkey * sizeof *ex->key);
    /* the outputs as this run left them: an eager run with other shapes
     * may replace them before the graph is replayed */
    for (int32_t i = 0; i < ex->g->noutputs; i++) {
        int32_t vid = ex->g->outputs[i].item.vid;
        if (vid < 0) continue;
        e->gout[i] = ex->vals[vid];
        if (e->gout[i].kind == PT_V_TENSOR) e->gout[i].t.storage->refs++;
    }
    PT_TRY(ex->dev->replay(ex->dctx, e->graph, ex->err));
    graph_wrote(ex);
    *done = true;
    return PETREL_OK;
}

petrel_status pt_exec_run(pt_exec *ex) {
    const pt_graph *g = ex->g;
    for (int32_t i = 0; i < g->ninputs; i++)
        if (!ex->input_set[i])
            return pt_fail(ex->err, PETREL_ERR_STATE, "input '%s' was not set", g->values[g->inputs[i]].name);
    PT_TRY(bind_symbols(ex));
    ex->ran = false;
    bool done = false;
    ex->pos_bound = ex->dev && ex->dev->pos_bound ? ex->dev->pos_bound(ex->hint_pos) : 0;
    if (ex->graph_ok && !ex->graph_off && !ex->profiling) {
        make_key(ex);
        struct pt_gentry *e = NULL;
        for (int j = 0; j < PT_GRAPHS && !e; j++)
            if (ex->gc[j].graph && key_eq(ex, ex->gc[j].key)) e = &ex->gc[j];
        if (e) {
            /* same shapes as the captured run: replay it */
            PT_TRY(upload_inputs(ex));
            if (!(ex->lkey_set && key_eq(ex, ex->lkey)))
                for (int32_t i = 0; i < g->noutputs; i++) { /* another run came between */
                    int32_t vid = g->outputs[i].item.vid;
                    if (vid < 0) continue;
                    release_value(&ex->vals[vid]);
                    ex->vals[vid] = e->gout[i];
                    if (ex->vals[vid].kind == PT_V_TENSOR) ex->vals[vid].t.storage->refs++;
                }
            PT_TRY(ex->dev->replay(ex->dctx, e->graph, ex->err));
            e->used = ++ex->tick;
            graph_wrote(ex);
            ex->replays++;
            done = true;
        } else if (ex->lkey_set && key_eq(ex, ex->lkey)) {
            /* the second run with these shapes: capture it */
            PT_TRY(run_captured(ex, &done));
        }
        memcpy(ex->lkey, ex->key, (size_t)ex->nkey * sizeof *ex->key);
        ex->lkey_set = true;
    }
    if (ex->profiling) ex->lkey_set = false; /* a replay after this run restores the graph's outputs */
    if (!done) PT_TRY(run_nodes(ex));
    /* No wait for the device here: whatever reads a device result on the
     * host (an output, its argmax or top-k, a host node) waits for it, and
     * work enqueued meanwhile (a decode step's argmax) follows the run
     * without a gap.  Inputs are uploaded from pageable host memory, which
     * the copy stages before it returns, so the caller may rebind them. */
    if (ex->profiling && ex->dev) {
        PT_TRY(ex->dev->sync(ex->dctx, ex->err));
        PT_TRY(prof_collect(ex));
    }
    ex->ran = true;
    return PETREL_OK;
}

petrel_status pt_exec_reset_state(pt_exec *ex) {
    const pt_graph *g = ex->g;
    for (int32_t i = 0; i < g->nvalues; i++)
        if (g->values[i].src == PT_SRC_BUFFER) PT_TRY(load_state(ex, &g->values[i], &ex->state[i]));
    return PETREL_OK;
}

petrel_status pt_exec_output(pt_exec *ex, int i, pt_rvalue *tmp, const pt_rvalue **out) {
    const pt_user_output *o = &ex->g->outputs[i];
    *out = tmp;
    if (o->item.vid < 0) {
        memset(tmp, 0, sizeof *tmp);
        tmp->kind = o->kind;
        tmp->i = o->item.i;
        tmp->f = o->kind == PT_V_FLOAT ? o->item.f : (double)o->item.i;
        return PETREL_OK;
    }
    const pt_rvalue *v = &ex->vals[o->item.vid];
    if (v->kind != PT_V_TENSOR || v->t.storage->device == PT_DEV_CPU) {
        *out = v;
        return PETREL_OK;
    }
    /* a device result: read through its host copy */
    PT_TRY(twin_sync(ex, &v->t));
    *tmp = *v;
    tmp->t = twin_view(&v->t);
    return PETREL_OK;
}

/* Row `row` of output i as a 1-D view *r (leading dims flattened, a
 * negative row from the end), for the selections below. */
static petrel_status output_row(pt_exec *ex, int i, int64_t row, const char *what, pt_tensor *r) {
    int32_t vid = ex->g->outputs[i].item.vid;
    const pt_rvalue *v = vid >= 0 ? &ex->vals[vid] : NULL;
    if (!v || v->kind != PT_V_TENSOR || v->t.rank < 1 || !pt_dtype_is_float(v->t.dtype))
        return pt_fail(ex->err, PETREL_ERR_INVALID_ARG, "%s: output %d is not a float tensor of rank >= 1", what, i);
    const pt_tensor *t = &v->t;
    int64_t last = t->shape[t->rank - 1], rows = last > 0 ? pt_numel(t) / last : 0;
    if (row < 0) row += rows;
    if (row < 0 || row >= rows || last == 0)
        return pt_fail(ex->err, PETREL_ERR_INVALID_ARG, "%s: row %lld out of range (output %d has %lld rows)", what,
                       (long long)row, i, (long long)rows);
    int64_t off = 0, rem = row;
    for (int d = t->rank - 2; d >= 0; d--) {
        off += (rem % t->shape[d]) * t->stride[d];
        rem /= t->shape[d];
    }
    *r = *t;
    r->rank = 1;
    r->shape[0] = last;
    r->stride[0] = t->stride[t->rank - 1];
    r->data = t->data + off * (int64_t)pt_elsize(t);
    return PETREL_OK;
}

/* The host copy of a device row r (of output tensor t). */
static petrel_status host_row(pt_exec *ex, const pt_tensor *t, pt_tensor *r) {
    if (t->storage->device == PT_DEV_CPU) return PETREL_OK;
    PT_TRY(twin_sync(ex, t));
    pt_tensor h = twin_view(t);
    r->data = h.data + (r->data - t->data);
    return PETREL_OK;
}

petrel_status pt_exec_output_argmax(pt_exec *ex, int i, int64_t row, int64_t *index) {
    pt_tensor r;
    PT_TRY(output_row(ex, i, row, "argmax", &r));
    const pt_tensor *t = &ex->vals[ex->g->outputs[i].item.vid].t;
    if (t->storage->device != PT_DEV_CPU && ex->dev->argmax) {
        petrel_status st = ex->dev->argmax(ex->dctx, &r, index, ex->err);
        if (st != PETREL_ERR_UNSUPPORTED) return st;
    }
    PT_TRY(host_row(ex, t, &r));
    *index = pt_argmax_row(&r);
    return PETREL_OK;
}

/* ---- fed argmax ------------------------------------------------------------ */

/* Does anything read value vid's bytes on the host: a host node, through
 * the views of it, the caller (an output), or a buffer update (its copy
 * runs on the host when the buffer lives there)? */
static bool read_on_host(const pt_exec *ex, int32_t vid, int depth) {
    const pt_graph *g = ex->g;
    if (depth > 16) return true;
    for (int32_t i = 0; i < g->noutputs; i++)
        if (g->outputs[i].item.vid == vid) return true;
    for (int32_t i = 0; i < g->nmuts; i++)
        if (g->muts[i].value_vid == vid) return true;
    for (int32_t ni = 0; ni < g->nnodes; ni++) {
        const pt_node *n = &g->nodes[ni];
        bool uses = false;
        for (int a = 0; a < n->nargs && !uses; a++)
            if (n->args[a].kind == PT_ARG_TENSOR || n->args[a].kind == PT_ARG_TENSORS)
                for (int k = 0; k < n->args[a].n; k++) uses |= n->args[a].items[k].vid == vid;
        if (!uses) continue;
        if (pt_op_is_meta(n->op)) { /* a view: what reads it */
            for (int k = 0; k < n->nout; k++)
                if (n->outs[k] >= 0 && read_on_host(ex, n->outs[k], depth + 1)) return true;
        } else if (!on_device(ex, ni)) {
            return true;
        }
    }
    return false;
}

/* Input i's one-element integer tensor for a feed. */
static petrel_status feed_input(pt_exec *ex, int i, const char *what, pt_tensor **out) {
    pt_rvalue *v = &ex->vals[ex->g->inputs[i]];
    if (!ex->input_set[i] || v->kind != PT_V_TENSOR || pt_numel(&v->t) != 1 ||
        (v->t.dtype != PETREL_DTYPE_I64 && v->t.dtype != PETREL_DTYPE_I32) || v->t.storage->device != PT_DEV_CPU)
        return pt_fail(ex->err, PETREL_ERR_INVALID_ARG,
                       "feed_argmax: input %d ('%s', the %s) must be bound to one int64 or int32 element", i,
                       ex->g->values[ex->g->inputs[i]].name, what);
    *out = &v->t;
    return PETREL_OK;
}

/* Make the host bytes of a fed input current again. */
static petrel_status feed_to_host(pt_exec *ex, pt_tensor *t) {
    pt_storage *s = t->storage;
    if (!s->dev_newer) return PETREL_OK;
    PT_TRY(ex->dev->download(ex->dctx, s->data, s->twin->data, (size_t)s->nbytes, ex->err));
    s->dev_newer = false;
    return PETREL_OK;
}

petrel_status pt_exec_feed_argmax(pt_exec *ex, int out, int64_t row, int next, int step) {
    if (ex->nfed == PETREL_FEED_MAX)
        return pt_fail(ex->err, PETREL_ERR_STATE, "feed_argmax: %d indices wait already (petrel_program_fed_result)",
                       PETREL_FEED_MAX);
    pt_tensor r, *tn = NULL, *ts = NULL;
    PT_TRY(feed_input(ex, next, "next token", &tn));
    if (step >= 0) PT_TRY(feed_input(ex, step, "step", &ts));
    PT_TRY(output_row(ex, out, row, "feed_argmax", &r));
    const pt_tensor *t = &ex->vals[ex->g->outputs[out].item.vid].t;
    /* on the device when the logits are there and no host step reads the
     * inputs (decided once per input) */
    bool dev = t->storage->device != PT_DEV_CPU && ex->dev->argmax_feed;
    for (int k = 0; k < 2 && dev; k++) {
        int i = k ? step : next;
        if (i < 0) continue;
        if (!ex->feed_ok[i]) ex->feed_ok[i] = read_on_host(ex, ex->g->inputs[i], 0) ? -1 : 1;
        dev = ex->feed_ok[i] > 0;
    }
    struct pt_fed *f = &ex->fed[(ex->fed_head + ex->nfed) % PETREL_FEED_MAX];
    if (dev) {
        PT_TRY(twin_sync(ex, tn)); /* the device copies exist and are current */
        if (ts) PT_TRY(twin_sync(ex, ts));
        int32_t slot = (int32_t)(f - ex->fed);
        petrel_status st = ex->dev->argmax_feed(ex->dctx, &r, tn->storage->twin->data, tn->dtype,
                                                ts ? ts->storage->twin->data : NULL,
                                                ts ? ts->dtype : PETREL_DTYPE_I64, slot, ex->err);
        if (st == PETREL_OK) {
            tn->storage->dev_newer = tn->storage->twin_fresh = true;
            if (ts) ts->storage->dev_newer = ts->storage->twin_fresh = true;
            *f = (struct pt_fed){.on_dev = true, .slot = slot};
            ex->nfed++;
            return PETREL_OK;
        }
        if (st != PETREL_ERR_UNSUPPORTED) return st;
    }
    /* on the host: the index now, the inputs' host bytes set */
    int64_t idx;
    PT_TRY(pt_exec_output_argmax(ex, out, row, &idx));
    PT_TRY(feed_to_host(ex, tn));
    pt_store_i64(tn->data, tn->dtype, idx);
    storage_written(tn->storage);
    if (ts) {
        PT_TRY(feed_to_host(ex, ts));
        pt_store_i64(ts->data, ts->dtype, pt_load_i64(ts->data, ts->dtype) + 1);
        storage_written(ts->storage);
    }
    *f = (struct pt_fed){.on_dev = false, .index = idx};
    ex->nfed++;
    return PETREL_OK;
}

petrel_status pt_exec_fed_result(pt_exec *ex, int64_t *index) {
    if (ex->nfed == 0) return pt_fail(ex->err, PETREL_ERR_STATE, "fed_result: no fed argmax waits");
    struct pt_fed f = ex->fed[ex->fed_head];
    ex->fed_head = (ex->fed_head + 1) % PETREL_FEED_MAX;
    ex->nfed--;
    if (!f.on_dev) {
        *index = f.index;
        return PETREL_OK;
    }
    return ex->dev->feed_result(ex->dctx, f.slot, index, ex->err);
}

petrel_status pt_exec_output_topk(pt_exec *ex, int i, int64_t row, int32_t k, float temperature, int32_t *ids,
                                  float *values, int32_t *n) {
    pt_tensor r;
    PT_TRY(output_row(ex, i, row, "topk", &r));
    const pt_tensor *t = &ex->vals[ex->g->outputs[i].item.vid].t;
    if (t->storage->device != PT_DEV_CPU && ex->dev->topk) {
        petrel_status st = ex->dev->topk(ex->dctx, &r, k, temperature, ids, values, n, ex->err);
        if (st != PETREL_ERR_UNSUPPORTED) return st;
    }
    PT_TRY(host_row(ex, t, &r));
    pt_topk_row(&r, k, temperature, ids, values, n);
    return PETREL_OK;
}

/* ---- the pk_* kernel interface ------------------------------------------ */

void pk_parallel(pt_exec *ex, int64_t items, int64_t min_items, pt_pool_fn fn, void *ctx) {
    pt_pool_for(ex->pool, items, min_items, fn, ctx);
}

int pk_threads(pt_exec *ex) { return pt_pool_threads(ex->pool); }

static const pt_arg *arg_at(const pt_node *n, int a) { return &n->args[a]; }

static const pt_rvalue *item_val(pt_exec *ex, const pt_item *it) { return &ex->vals[it->vid]; }

bool pk_is_const(pt_exec *ex, const pt_node *n, int a, int k) {
    if (a >= n->nargs || k < 0 || k >= n->args[a].n) return false;
    int32_t vid = n->args[a].items[k].vid;
    return vid >= 0 && (ex->g->values[vid].src == PT_SRC_PARAM || ex->g->values[vid].src == PT_SRC_CONST);
}

bool pk_is_none(pt_exec *ex, const pt_node *n, int a) {
    (void)ex;
    return a >= n->nargs || arg_at(n, a)->kind == PT_ARG_NONE;
}

/* A Python number passed where the schema wants a Tensor (torch wraps it as
 * a 0-d double/int64/bool tensor) becomes a 0-d tensor in node scratch. */
static const pt_tensor *wrapped_scalar(pt_exec *ex, const pt_arg *g) {
    struct wrapped {
        pt_tensor t;
        pt_storage s;
        union { double f; int64_t i; uint8_t b; } v;
    } *w = pk_scratch(ex, sizeof *w);
    if (!w) return NULL;
    const pt_item *it = &g->items[0];
    const pt_rvalue *rv = it->vid >= 0 ? &ex->vals[it->vid] : NULL;
    bool is_f = rv ? rv->kind == PT_V_FLOAT : g->kind == PT_ARG_FLOAT;
    bool is_b = rv ? rv->kind == PT_V_BOOL : g->kind == PT_ARG_BOOL;
    if (is_f) {
        w->t.dtype = PETREL_DTYPE_F64;
        w->v.f = rv ? rv->f : it->f;
    } else if (is_b) {
        w->t.dtype = PETREL_DTYPE_BOOL;
        w->v.b = (uint8_t)((rv ? rv->i : it->i) != 0);
    } else {
        w->t.dtype = PETREL_DTYPE_I64;
        w->v.i = rv ? rv->i : it->i;
    }
    w->s.refs = 1;
    w->s.is_static = true; /* never freed through refcounting: scratch owns it */
    w->s.data = (uint8_t *)&w->v;
    w->s.nbytes = 8;
    w->t.rank = 0;
    w->t.data = (uint8_t *)&w->v;
    w->t.storage = &w->s;
    return &w->t;
}

const pt_tensor *pk_tensor(pt_exec *ex, const pt_node *n, int a) {
    if (a >= n->nargs) return NULL;
    const pt_arg *g = arg_at(n, a);
    if ((g->kind == PT_ARG_INT || g->kind == PT_ARG_FLOAT || g->kind == PT_ARG_BOOL) && g->n == 1)
        return wrapped_scalar(ex, g);
    if (g->kind != PT_ARG_TENSOR) return NULL;
    const pt_rvalue *v = item_val(ex, &g->items[0]);
    return v->kind == PT_V_TENSOR ? &v->t : NULL;
}

const pt_tensor **pk_tensors(pt_exec *ex, const pt_node *n, int a, int *count) {
    *count = 0;
    if (a >= n->nargs) return NULL;
    const pt_arg *g = arg_at(n, a);
    if (g->kind != PT_ARG_TENSORS) return NULL;
    const pt_tensor **out = pk_scratch(ex, (size_t)(g->n ? g->n : 1) * sizeof *out);
    if (!out) return NULL;
    for (int i = 0; i < g->n; i++) {
        const pt_item *it = &g->items[i];
        out[i] = (it->vid >= 0 && ex->vals[it->vid].kind == PT_V_TENSOR) ? &ex->vals[it->vid].t : NULL;
    }
    *count = g->n;
    return out;
}

/* One scalar item as double / int64, following the referenced value. */
static double item_f(pt_exec *ex, const pt_arg *g, const pt_item *it) {
    if (it->vid < 0) return g->kind == PT_ARG_FLOAT || g->kind == PT_ARG_FLOATS ? it->f : (double)it->i;
    const pt_rvalue *v = item_val(ex, it);
    return v->kind == PT_V_FLOAT ? v->f : (double)v->i;
}

static int64_t item_i(pt_exec *ex, const pt_arg *g, const pt_item *it) {
    if (it->vid < 0) return g->kind == PT_ARG_FLOAT || g->kind == PT_ARG_FLOATS ? (int64_t)it->f : it->i;
    const pt_rvalue *v = item_val(ex, it);
    return v->kind == PT_V_FLOAT ? (int64_t)v->f : v->i;
}

int64_t pk_int(pt_exec *ex, const pt_node *n, int a) {
    if (a >= n->nargs) return 0;
    const pt_arg *g = arg_at(n, a);
    return g->n > 0 ? item_i(ex, g, &g->items[0]) : 0;
}

int pk_ints(pt_exec *ex, const pt_node *n, int a, int64_t *out, int max) {
    if (a >= n->nargs) return 0;
    const pt_arg *g = arg_at(n, a);
    if (g->kind == PT_ARG_NONE) return 0;
    int cnt = g->n;
    if (g->fixed_len > 1 && cnt == 1) {
        /* "int[2] stride=1": one value stands for all */
        int64_t v = item_i(ex, g, &g->items[0]);
        int k = g->fixed_len < max ? g->fixed_len : max;
        for (int i = 0; i < k; i++) out[i] = v;
        return k;
    }
    if (cnt > max) cnt = max;
    for (int i = 0; i < cnt; i++) out[i] = item_i(ex, g, &g->items[i]);
    return cnt;
}

double pk_float(pt_exec *ex, const pt_node *n, int a) {
    if (a >= n->nargs) return 0;
    const pt_arg *g = arg_at(n, a);
    return g->n > 0 ? item_f(ex, g, &g->items[0]) : 0;
}

bool pk_scalar_is_int(pt_exec *ex, const pt_node *n, int a) {
    if (a >= n->nargs) return false;
    const pt_arg *g = arg_at(n, a);
    if (g->n == 0) return false;
    if (g->items[0].vid >= 0) return item_val(ex, &g->items[0])->kind != PT_V_FLOAT;
    return g->kind == PT_ARG_INT || g->kind == PT_ARG_BOOL;
}

bool pk_bool(pt_exec *ex, const pt_node *n, int a) { return pk_int(ex, n, a) != 0; }

const char *pk_str(pt_exec *ex, const pt_node *n, int a) {
    (void)ex;
    if (a >= n->nargs || arg_at(n, a)->kind != PT_ARG_STRING) return NULL;
    return arg_at(n, a)->str;
}

int pk_dtype(pt_exec *ex, const pt_node *n, int a) {
    (void)ex;
    if (a >= n->nargs || arg_at(n, a)->kind != PT_ARG_DTYPE) return -1;
    return (int)arg_at(n, a)->items[0].i;
}

petrel_dtype pk_out_dtype(pt_exec *ex, const pt_node *n, int k) {
    if (k >= n->nout || n->outs[k] < 0) return PETREL_DTYPE_F32;
    return ex->g->values[n->outs[k]].dtype;
}

static petrel_status out_slot(pt_exec *ex, const pt_node *n, int k, pt_rvalue **slot) {
    if (k < 0 || k >= n->nout || n->outs[k] < 0)
        return pt_fail(ex->err, PETREL_ERR_RUNTIME, "kernel wrote output %d, which the node does not have", k);
    *slot = &ex->vals[n->outs[k]];
    release_value(*slot);
    return PETREL_OK;
}

petrel_status pk_out_alloc_dtype(pt_exec *ex, const pt_node *n, int k, petrel_dtype dt, int rank,
                                 const int64_t *shape, pt_tensor **out) {
    pt_rvalue *slot = NULL;
    PT_TRY(out_slot(ex, n, k, &slot));
    if (rank < 0 || rank > PETREL_MAX_RANK)
        return pt_fail(ex->err, PETREL_ERR_SHAPE, "rank %d is not supported", rank);
    int32_t vid = n->outs[k];
    int64_t numel = 1, bytes = -1;
    bool ok = true;
    for (int i = 0; i < rank; i++) ok = ok && shape[i] >= 0 && pt_mul_ok(numel, shape[i], &numel);
    if (ok && !pt_mul_ok(numel, (int64_t)petrel_dtype_size(dt), &bytes)) bytes = -1;
    int dev = ex->vdev[vid];
    const pt_plan *plan = dev == PT_DEV_CPU ? &ex->plan : &ex->dplan;
    if (bytes >= 0 && plan->offset[vid] >= 0 && bytes <= plan->size[vid]) {
        /* the planned arena slot: no allocation */
        set_contiguous(&slot->t, dt, rank, shape, &ex->astor[vid]);
        storage_written(&ex->astor[vid]);
    } else {
        PT_TRY(new_tensor_on(ex, dev, &slot->t, dt, rank, shape));
    }
    slot->kind = PT_V_TENSOR;
    *out = &slot->t;
    return PETREL_OK;
}

petrel_status pk_out_alloc(pt_exec *ex, const pt_node *n, int k, int rank, const int64_t *shape,
                           pt_tensor **out) {
    return pk_out_alloc_dtype(ex, n, k, pk_out_dtype(ex, n, k), rank, shape, out);
}

petrel_status pk_out_view(pt_exec *ex, const pt_node *n, int k, const pt_tensor *base, petrel_dtype dt,
                          int rank, const int64_t *shape, const int64_t *stride, uint8_t *data) {
    if (rank < 0 || rank > PETREL_MAX_RANK)
        return pt_fail(ex->err, PETREL_ERR_SHAPE, "rank %d is not supported", rank);
    pt_storage *s = base->storage;
    s->refs++; /* taken before out_slot: base may be this very slot */
    pt_rvalue *slot = NULL;
    petrel_status st = out_slot(ex, n, k, &slot);
    if (st != PETREL_OK) {
        pt_storage_release(s);
        return st;
    }
    slot->kind = PT_V_TENSOR;
    pt_tensor *t = &slot->t;
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->rank = rank;
    for (int i = 0; i < rank; i++) {
        t->shape[i] = shape[i];
        t->stride[i] = stride[i];
    }
    t->data = data;
    t->storage = s;
    return PETREL_OK;
}

static pt_rvalue *scalar_slot(pt_exec *ex, const pt_node *n, int k) {
    pt_rvalue *slot = NULL;
    if (out_slot(ex, n, k, &slot) != PETREL_OK) return NULL;
    return slot;
}

void pk_out_int(pt_exec *ex, const pt_node *n, int k, int64_t v) {
    pt_rvalue *s = scalar_slot(ex, n, k);
    if (s) { s->kind = PT_V_INT; s->i = v; s->f = (double)v; }
}

void pk_out_float(pt_exec *ex, const pt_node *n, int k, double v) {
    pt_rvalue *s = scalar_slot(ex, n, k);
    if (s) { s->kind = PT_V_FLOAT; s->f = v; s->i = (int64_t)v; }
}

void pk_out_bool(pt_exec *ex, const pt_node *n, int k, bool v) {
    pt_rvalue *s = scalar_slot(ex, n, k);
    if (s) { s->kind = PT_V_BOOL; s->i = v; s->f = v; }
}

static void *scratch_take(pt_exec *ex, size_t nbytes, bool zero) {
    size_t n = (nbytes + 63) & ~(size_t)63;
    if (n == 0) n = 64;
    ex->scr_need += n;
    if (ex->scr_used + n <= ex->scr_cap) {
        void *p = ex->scr + ex->scr_used;
        ex->scr_used += n;
        if (zero) memset(p, 0, nbytes); /* pk_scratch: zeroed, as from calloc */
        return p;
    }
    /* overflow: a temporary block until the node ends */
    if (ex->nspill == ex->cap_spill) {
        int32_t cap = ex->cap_spill ? ex->cap_spill * 2 : 16;
        void **ns = pt_realloc(ex->spill, (size_t)cap * sizeof *ns);
        if (!ns) {
            ex->oom = true;
            return NULL;
        }
        ex->spill = ns;
        ex->cap_spill = cap;
    }
    void *p = pt_calloc(1, n);
    if (p) ex->spill[ex->nspill++] = p;
    else ex->oom = true;
    return p;
}

void *pk_scratch(pt_exec *ex, size_t nbytes) { return scratch_take(ex, nbytes, true); }

void *pk_scratch_raw(pt_exec *ex, size_t nbytes) { return scratch_take(ex, nbytes, false); }

petrel_status pk_fail(pt_exec *ex, petrel_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pt_vfail(ex->err, st, fmt, ap);
    va_end(ap);
    return st;
}
