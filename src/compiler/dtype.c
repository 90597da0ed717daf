/*
** dtype.c -- compute-dtype conversion (`petrel compile --dtype`): a
** float32 export becomes the program that exporting after torch's
** `model.to(torch.bfloat16)` (or float16) would have given.
**
** torch's .to converts parameters and buffers only; the model's explicit
** casts stay, and every other dtype follows by type promotion.  The pass
** does the same on the graph:
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
** Known gap: the aliasing fix-up (unalias) looks only at the node that
** mixes an upcast result with a half tensor; Qwen3's q/k norms reach the
** residual through views first, so there a part of each layer stays
** float32 (valid and accurate, 4 of 23 fusions missed).  An ATen-form
** export has no no-op casts at all, so its norms would compute in the
** target dtype; llama_aten is refused (a KV cache would receive float32
** values).  Both want per-reader tracking of the aliases.
**
** Only float32 programs are converted (a half-precision export cannot say
** which of its float32 values are deliberate); --dtype fp32 on a float32
** program changes nothing.  The new weight bytes are owned by the result
** until pc_dtype_free (after the program is written).  Layer: compiler.
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
    for (int32_t i = 0; i < g->nmuts; i++)
        if (dt[g->muts[i].buffer_vid] != dt[g->muts[i].value_vid])
            return pt_fail(err, PETREL_ERR_UNSUPPORTED, "--dtype: state buffer '%s' would receive %s values",
                           g->values[g->muts[i].buffer_vid].name, petrel_dtype_name(dt[g->muts[i].value_vid]));
    return PETREL_OK;
}

/* Convert the float32 storage of weight v into a new allocation (once per
 * storage: values sharing it share the copy).  False when memory ran out. */
static bool convert_weight(pt_graph *g, int32_t v, petrel_dtype to, pc_dtype_result *r, const uint8_t **from) {
    pt_value *x = &g->values[v];
    for (int32_t b = 0; b < r->nblobs; b++)
        if (from[b] == x->data) {
            x->data = r->blobs[b];
            x->data_bytes /= 2;
            return true;
        }
    int64_t n = x->data_bytes / 4;
    uint8_t *out = pt_malloc((size_t)(n ? n * 2 : 1));
    if (!out) return false;
    for (int64_t i = 0; i < n; i++) {
        float f;
        memcpy(&f, x->data + i * 4, 4);
        uint16_t h = to == PETREL_DTYPE_BF16 ? pt_f32_to_bf16(f) : pt_f32_to_f16(f);
        memcpy(out + i * 2, &h, 2);
    }
    from[r->nblobs] = x->data;
    r->blobs[r->nblobs++] = out;
    r->converted++;
    r->bytes_before += x->data_bytes;
    r->bytes_after += n * 2;
    x->data = out;
    x->data_bytes = n * 2;
    return true;
}

petrel_status pc_convert_dtype(pt_graph *g, petrel_dtype to, pc_dtype_result *r, pt_err *err) {
    memset(r, 0, sizeof *r);
    r->from = r->to = PETREL_DTYPE_F32;
    for (int32_t v = 0; v < g->nvalues; v++) {
        const pt_value *x = &g->values[v];
        if (x->kind == PT_V_TENSOR && (is_weight(x) || x->src == PT_SRC_USER_INPUT) && pt_dtype_is_float(x->dtype) &&
            x->dtype != PETREL_DTYPE_F32)
            return pt_fail(err, PETREL_ERR_UNSUPPORTED,
                           "--dtype: converting a %s program is not supported yet ('%s' is %s); export in float32",
                           petrel_dtype_name(x->dtype), x->fqn ? x->fqn : x->name, petrel_dtype_name(x->dtype));
    }
    if (to == PETREL_DTYPE_F32) return PETREL_OK;
    if (to != PETREL_DTYPE_BF16 && to != PETREL_DTYPE_F16)
        return pt_fail(err, PETREL_ERR_INVALID_ARG, "--dtype: target %s is not fp32, fp16 or bf16",
                       petrel_dtype_name(to));
    r->to = to;
    petrel_dtype *dt = pt_malloc((size_t)(g->nvalues ? g->nvalues : 1) * sizeof *dt);
    const uint8_t **from = pt_malloc((size_t)(g->nvalues ? g->nvalues : 1) * sizeof *from);
    int32_t *up = pt_malloc((size_t)(g->nvalues ? g->nvalues : 1) * sizeof *up);
    r->blobs = pt_calloc((size_t)(g->nvalues ? g->nvalues : 1), sizeof *r->blobs);
    petrel_status st = PETREL_OK;
    if (!dt || !from || !up || !r->blobs) {
        st = pt_fail(err, PETREL_ERR_NOMEM, "out of memory converting the dtype");
        goto done;
    }
    /* infer first: a refusal converts no bytes (the caller discards the graph) */
    if ((st = infer(g, to, dt, up, err)) != PETREL_OK) goto done;
    for (int32_t v = 0; v < g->nvalues; v++) {
        pt_value *x = &g->values[v];
        if (x->kind != PT_V_TENSOR || dt[v] == x->dtype) continue;
        if (is_weight(x) && x->data && !convert_weight(g, v, to, r, from)) {
            st = pt_fail(err, PETREL_ERR_NOMEM, "out of memory converting the weights");
            goto done;
        }
        x->dtype = dt[v];
    }
done:
    pt_free(dt);
    pt_free(from);
    pt_free(up);
    return st;
}

void pc_dtype_free(pc_dtype_result *r) {
    for (int32_t i = 0; r->blobs && i < r->nblobs; i++) pt_free(r->blobs[i]);
    pt_free(r->blobs);
    r->blobs = NULL;
    r->nblobs = 0;
}
