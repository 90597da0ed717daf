/*
** dtype.c -- compute-dtype conversion (`petrel compile --dtype`): an
** export becomes the program that exporting after torch's
** `model.to(dtype)` would have given.  Two sources, two rules.
**
** A float32 export to bf16 or fp16.  torch's .to converts parameters and
** buffers only; the model's explicit casts stay, and every other dtype
** follows by type promotion.  The pass does the same on the graph:
**
**   - float32 weights, constants, state buffers (KV caches) and float32
**     user inputs take the target dtype; their bytes are converted (round
**     to nearest even), a storage shared by several values once;
**   - a node's float32 results follow its inputs: an in-place op's result
**     is its argument 0's dtype, any other op's is the promotion of its
**     float tensor inputs (0-d ones only when all are 0-d), as torch
**     computes it, when one of those inputs changed dtype; a node whose
**     inputs kept their dtypes, or that names its result dtype (creation
**     ops, softmax/sum/mean with dtype=), keeps it;
**   - a cast to float32 (to / _to_copy) of a value that changed dtype is a
**     deliberate upcast and stays (HF's RMSNorm `hidden.to(torch.float32)`,
**     the rotary `inv_freq.float()`), as does a cast from an integer
**     (positions); a cast to float32 of a value that is still float32
**     becomes a cast to the target: in a float32 export that no-op cast is
**     the model's `.to(x.dtype)` / `.type_as(x)` (the rotary cos/sin, the
**     norm's `.to(input_dtype)`), which a half-precision export shows with
**     the half dtype.  For the HF decoders this reproduces the bf16 export
**     value for value (test_dtype compares them).  A float32 -> float32
**     cast meant as a literal `.float()` of an already-float32 value is
**     indistinguishable and becomes a cast to the target too.
**
** A bf16 or fp16 export to the other half dtype or to float32.  There
** every float32 value is one of the model's deliberate upcasts (the model
** was made half precision, so only its own casts make float32), and every
** cast between the half dtype and float32 is a real conversion that both
** export forms keep.  So float32 values and casts to float32 stay, and
** every tensor (weight, buffer, input, intermediate) and every dtype
** argument (casts, creation ops, dtype=) of the source dtype takes the
** target dtype.  As long as the program holds no tensor of the target
** half dtype (refused: bf16 + fp16 promote to float32, target + target do
** not), that renaming is torch's promotion of the renamed inputs: the
** source dtype with float32 gives float32 before and after.  The bf16
** core-ATen Llama export converted to fp16 is the fp16 one value for
** value (and back); the bf16 export converted to float32 is the float32
** one but for reads through its no-op upcasts (test_dtype).  Weights are
** rounded once (bf16 -> fp16 is exact within fp16's range, beyond it a
** value becomes inf as under torch's .to; to float32 nothing rounds).
**
** Known gap (float32 sources): the aliasing fix-up (unalias) looks only
** at the node that mixes an upcast result with a half tensor; Qwen3's q/k
** norms reach the residual through views first, so there a part of each
** layer stays float32 (valid and accurate, 4 of 23 fusions missed).  A
** float32 core-ATen export has no no-op casts at all (decomposition drops
** them), so its norms would compute in the target dtype; llama_aten is
** refused (a KV cache would receive float32 values).  Both want
** per-reader tracking of the aliases.  Half-precision core-ATen exports
** convert: they lose no cast that matters (a no-op cast there is one in
** the target too).
**
** Refused: float64 weights or inputs, a program holding both half dtypes,
** view.dtype of a tensor whose dtype changes (its bits would mean another
** value).  --dtype equal to the program's dtype changes nothing.  The new
** weight bytes are owned by the result until pc_dtype_free (after the
** program is written).  Layer: compiler.
*/
#include <stdio.h>
#include <string.h>

#include "compiler.h"

petrel_status pc_dtype_parse(const char *name, petrel_dtype *out, pt_err *err) {
    static const struct {
        const char *name;
        petrel_dtype dt;
    } names[] = {{"fp32", PETREL_DTYPE_F32},     {"float32", PETREL_DTYPE_F32}, {"fp16", PETREL_DTYPE_F16},
                 {"float16", PETREL_DTYPE_F16},  {"half", PETREL_DTYPE_F16},    {"bf16", PETREL_DTYPE_BF16},
                 {"bfloat16", PETREL_DTYPE_BF16}};
    for (size_t i = 0; name && i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i].name)) return *out = names[i].dt, PETREL_OK;
    return pt_fail(err, PETREL_ERR_INVALID_ARG, "--dtype '%s': expected fp32, fp16 or bf16", name ? name : "");
}

static bool is_cast(pt_op op) {
    return op == PETREL_OP_TO_COPY || op == PETREL_OP_TO_DTYPE || op == PETREL_OP_TO_DTYPE_LAYOUT ||
           op == PETREL_OP_TO_DEVICE;
}

static bool is_weight(const pt_value *v) {
    return v->kind == PT_V_TENSOR && (v->src == PT_SRC_PARAM || v->src == PT_SRC_CONST || v->src == PT_SRC_BUFFER);
}

/* The node's dtype argument (a PT_ARG_DTYPE), or NULL when none is given. */
static pt_arg *dtype_arg(pt_node *n) {
    for (int a = 0; a < n->nargs; a++)
        if (n->args[a].kind == PT_ARG_DTYPE) return &n->args[a];
    return NULL;
}

/* torch's promotion of the float tensors node n reads (new dtypes in dt),
 * 0-d ones counting only when all are 0-d; *changed: one of them changed
 * dtype.  -1 when n reads no float tensor. */
static int promoted(const pt_graph *g, const pt_node *n, const petrel_dtype *dt, bool *changed) {
    int res[2] = {-1, -1}; /* [0]: 0-d inputs, [1]: the others */
    *changed = false;
    for (int a = 0; a < n->nargs; a++) {
        const pt_arg *r = &n->args[a];
        if (r->kind != PT_ARG_TENSOR && r->kind != PT_ARG_TENSORS) continue;
        for (int k = 0; k < r->n; k++) {
            int32_t vid = r->items[k].vid;
            if (vid < 0 || g->values[vid].kind != PT_V_TENSOR || !pt_dtype_is_float(dt[vid])) continue;
            *changed |= dt[vid] != g->values[vid].dtype;
            int *s = &res[g->values[vid].rank > 0];
            if (*s < 0 || *s == (int)dt[vid]) *s = (int)dt[vid];
            else *s = *s == PETREL_DTYPE_F64 || dt[vid] == PETREL_DTYPE_F64 ? PETREL_DTYPE_F64 : PETREL_DTYPE_F32;
        }
    }
    return res[1] >= 0 ? res[1] : res[0];
}

/* torch's `x.to(torch.float32)` of a float32 x returns x itself, and the
 * export traces later uses of x through the cast: HF's residual reads the
 * norm's upcast input in a float32 export, the half input in a bf16 one.
 * So a node mixing the result of such an upcast (up[v]: its source, else
 * -1) with a target-dtype tensor reads the source instead. */
static void unalias(pt_node *n, const pt_graph *g, const petrel_dtype *dt, petrel_dtype to, const int32_t *up) {
    bool half = false;
    for (int a = 0; a < n->nargs; a++)
        for (int k = 0; n->args[a].kind == PT_ARG_TENSOR && k < n->args[a].n; k++) {
            int32_t v = n->args[a].items[k].vid;
            half |= v >= 0 && up[v] < 0 && dt[v] == to && g->values[v].rank > 0;
        }
    for (int a = 0; half && a < n->nargs; a++)
        if (n->args[a].kind == PT_ARG_TENSOR && up[n->args[a].items[0].vid] >= 0)
            n->args[a].items[0].vid = up[n->args[a].items[0].vid];
}

/* New dtypes of every value (dt: nvalues entries), rewriting the casts'
 * dtype arguments as the file comment says (up: nvalues scratch). */
static petrel_status infer(pt_graph *g, petrel_dtype to, petrel_dtype *dt, int32_t *up, pt_err *err) {
    for (int32_t v = 0; v < g->nvalues; v++) {
        const pt_value *x = &g->values[v];
        dt[v] = x->dtype;
        up[v] = -1;
        if (x->kind == PT_V_TENSOR && x->dtype == PETREL_DTYPE_F32 && (is_weight(x) || x->src == PT_SRC_USER_INPUT))
            dt[v] = to;
    }
    for (int32_t i = 0; i < g->nnodes; i++) {
        pt_node *n = &g->nodes[i];
        pt_arg *da = dtype_arg(n);
        int32_t x0 = n->nargs && n->args[0].kind == PT_ARG_TENSOR ? n->args[0].items[0].vid : -1;
        if (n->op == PETREL_OP_ASSERT_TENSOR_METADATA) {
            if (da && x0 >= 0) da->items[0].i = dt[x0];
            continue;
        }
        if (n->op == PETREL_OP_VIEW_AS_DTYPE && x0 >= 0 && dt[x0] != g->values[x0].dtype)
            return pt_fail(err, PETREL_ERR_UNSUPPORTED,
                           "--dtype: node '%s' reinterprets the bits of a converted tensor (view.dtype)", n->name);
        if (!is_cast(n->op)) unalias(n, g, dt, to, up);
        bool changed;
        int p = promoted(g, n, dt, &changed);
        if (is_cast(n->op) && da && da->items[0].i == PETREL_DTYPE_F32) {
            /* still float32 after conversion: the model's .to(x.dtype) */
            if (x0 >= 0 && dt[x0] == PETREL_DTYPE_F32 && g->values[x0].kind == PT_V_TENSOR) da->items[0].i = to;
            else if (x0 >= 0 && dt[x0] == to && n->op != PETREL_OP_TO_COPY && n->nout == 1 && n->outs[0] >= 0)
                up[n->outs[0]] = x0; /* an upcast that was a no-op in the export */
            for (int k = 0; k < n->nout; k++)
                if (n->outs[k] >= 0 && g->values[n->outs[k]].kind == PT_V_TENSOR) dt[n->outs[k]] = (petrel_dtype)da->items[0].i;
            continue;
        }
        if (!changed || (da && !is_cast(n->op))) continue; /* inputs as exported, or a named result dtype */
        for (int k = 0; k < n->nout; k++) {
            int32_t o = n->outs[k];
            if (o < 0 || g->values[o].kind != PT_V_TENSOR || g->values[o].dtype != PETREL_DTYPE_F32) continue;
            if ((pt_op_table[n->op].flags & PT_OPF_INPLACE) && x0 >= 0) dt[o] = dt[x0];
            else if (p >= 0) dt[o] = (petrel_dtype)p;
        }
    }
    return PETREL_OK;
}

/* New dtypes of a half-precision program's values (from: bf16 or fp16),
 * rewriting its dtype arguments (the file comment's second rule). */
static petrel_status rename_half(pt_graph *g, petrel_dtype from, petrel_dtype to, petrel_dtype *dt, pt_err *err) {
    for (int32_t v = 0; v < g->nvalues; v++) {
        const pt_value *x = &g->values[v];
        bool tensor = x->kind == PT_V_TENSOR;
        if (tensor && x->dtype == to && to != PETREL_DTYPE_F32)
            return pt_fail(err, PETREL_ERR_UNSUPPORTED,
                           "--dtype: the %s program already holds %s tensors ('%s'): mixed half dtypes are not converted",
                           petrel_dtype_name(from), petrel_dtype_name(to), x->name);
        dt[v] = tensor && x->dtype == from ? to : x->dtype;
    }
    for (int32_t i = 0; i < g->nnodes; i++) {
        pt_node *n = &g->nodes[i];
        pt_arg *da = dtype_arg(n);
        int32_t x0 = n->nargs && n->args[0].kind == PT_ARG_TENSOR ? n->args[0].items[0].vid : -1;
        bool bits = (x0 >= 0 && dt[x0] != g->values[x0].dtype) || (da && da->items[0].i == from);
        if (n->op == PETREL_OP_VIEW_AS_DTYPE && bits)
            return pt_fail(err, PETREL_ERR_UNSUPPORTED,
                           "--dtype: node '%s' reinterprets the bits of a converted tensor (view.dtype)", n->name);
        for (int a = 0; a < n->nargs; a++)
            if (n->args[a].kind == PT_ARG_DTYPE && n->args[a].items[0].i == from) n->args[a].items[0].i = to;
    }
    return PETREL_OK;
}

/* Refuse a state buffer (KV cache) whose update would change dtype. */
static petrel_status check_state(const pt_graph *g, const petrel_dtype *dt, pt_err *err) {
    for (int32_t i = 0; i < g->nmuts; i++)
        if (dt[g->muts[i].buffer_vid] != dt[g->muts[i].value_vid])
            return pt_fail(err, PETREL_ERR_UNSUPPORTED, "--dtype: state buffer '%s' would receive %s values",
                           g->values[g->muts[i].buffer_vid].name, petrel_dtype_name(dt[g->muts[i].value_vid]));
    return PETREL_OK;
}

/* The float dtype of the program's weights and float user inputs: the half
 * dtype they use, else float32.  Refused: other float dtypes, both half
 * dtypes. */
static petrel_status source_dtype(const pt_graph *g, petrel_dtype *from, pt_err *err) {
    int32_t first = -1; /* the first half-precision one */
    *from = PETREL_DTYPE_F32;
    for (int32_t v = 0; v < g->nvalues; v++) {
        const pt_value *x = &g->values[v];
        if (x->kind != PT_V_TENSOR || !(is_weight(x) || x->src == PT_SRC_USER_INPUT) || !pt_dtype_is_float(x->dtype) ||
            x->dtype == PETREL_DTYPE_F32 || x->dtype == *from)
            continue;
        const char *name = x->fqn ? x->fqn : x->name;
        if (x->dtype != PETREL_DTYPE_BF16 && x->dtype != PETREL_DTYPE_F16)
            return pt_fail(err, PETREL_ERR_UNSUPPORTED,
                           "--dtype: converting a %s program is not supported ('%s' is %s)", petrel_dtype_name(x->dtype),
                           name, petrel_dtype_name(x->dtype));
        if (first >= 0)
            return pt_fail(err, PETREL_ERR_UNSUPPORTED,
                           "--dtype: '%s' is %s, '%s' %s: mixed half dtypes are not converted",
                           g->values[first].fqn ? g->values[first].fqn : g->values[first].name,
                           petrel_dtype_name(*from), name, petrel_dtype_name(x->dtype));
        *from = x->dtype;
        first = v;
    }
    return PETREL_OK;
}

/* Convert the storage of weight v from `from` to `to` into a new allocation
 * (once per storage: values sharing it share the copy).  False when memory
 * ran out. */
static bool convert_weight(pt_graph *g, int32_t v, petrel_dtype from, petrel_dtype to, pc_dtype_result *r,
                           const uint8_t **src) {
    pt_value *x = &g->values[v];
    size_t fs = pt_dtype_traits_table[from].size, ts = pt_dtype_traits_table[to].size;
    for (int32_t b = 0; b < r->nblobs; b++)
        if (src[b] == x->data) {
            x->data = r->blobs[b];
            x->data_bytes = x->data_bytes / (int64_t)fs * (int64_t)ts;
            return true;
        }
    int64_t n = x->data_bytes / (int64_t)fs;
    uint8_t *out = pt_malloc(n ? (size_t)n * ts : 1);
    if (!out) return false;
    for (int64_t i = 0; i < n; i++) pt_store_f64(out + (size_t)i * ts, to, pt_load_f64(x->data + (size_t)i * fs, from));
    src[r->nblobs] = x->data;
    r->blobs[r->nblobs++] = out;
    r->converted++;
    r->bytes_before += x->data_bytes;
    r->bytes_after += n * (int64_t)ts;
    x->data = out;
    x->data_bytes = n * (int64_t)ts;
    return true;
}

petrel_status pc_convert_dtype(pt_graph *g, petrel_dtype to, pc_dtype_result *r, pt_err *err) {
    memset(r, 0, sizeof *r);
    petrel_dtype from;
    petrel_status st = source_dtype(g, &from, err);
    r->from = r->to = from;
    if (st != PETREL_OK || to == from) return st;
    if (to != PETREL_DTYPE_F32 && to != PETREL_DTYPE_BF16 && to != PETREL_DTYPE_F16)
        return pt_fail(err, PETREL_ERR_INVALID_ARG, "--dtype: target %s is not fp32, fp16 or bf16",
                       petrel_dtype_name(to));
    r->to = to;
    petrel_dtype *dt = pt_malloc((size_t)(g->nvalues ? g->nvalues : 1) * sizeof *dt);
    const uint8_t **src = pt_malloc((size_t)(g->nvalues ? g->nvalues : 1) * sizeof *src);
    int32_t *up = pt_malloc((size_t)(g->nvalues ? g->nvalues : 1) * sizeof *up);
    r->blobs = pt_calloc((size_t)(g->nvalues ? g->nvalues : 1), sizeof *r->blobs);
    if (!dt || !src || !up || !r->blobs) {
        st = pt_fail(err, PETREL_ERR_NOMEM, "out of memory converting the dtype");
        goto done;
    }
    /* infer first: a refusal converts no bytes (the caller discards the graph) */
    st = from == PETREL_DTYPE_F32 ? infer(g, to, dt, up, err) : rename_half(g, from, to, dt, err);
    if (st == PETREL_OK) st = check_state(g, dt, err);
    if (st != PETREL_OK) goto done;
    for (int32_t v = 0; v < g->nvalues; v++) {
        pt_value *x = &g->values[v];
        if (x->kind != PT_V_TENSOR || dt[v] == x->dtype) continue;
        if (is_weight(x) && x->data && !convert_weight(g, v, from, to, r, src)) {
            st = pt_fail(err, PETREL_ERR_NOMEM, "out of memory converting the weights");
            goto done;
        }
        x->dtype = dt[v];
    }
done:
    pt_free(dt);
    pt_free(src);
    pt_free(up);
    return st;
}

void pc_dtype_free(pc_dtype_result *r) {
    for (int32_t i = 0; r->blobs && i < r->nblobs; i++) pt_free(r->blobs[i]);
    pt_free(r->blobs);
    r->blobs = NULL;
    r->nblobs = 0;
}
