/*
** rotary.c -- the cos and sin tables of HF's rotary embedding
** (LlamaRotaryEmbedding.forward and its copies in Qwen3, Gemma 3, Phi-3,
** ...) become one petrel.rope_table (ops.def), a matcher of pc_fuse:
**
**   A   = float32(expand(inv_freq[None, :, None], (B, -1, 1)))   (B', H, 1)
**   P   = float32(positions[:, None, :])                          (B, 1, L)
**   t   = transpose(matmul(A, P), 1, 2)                           (B, L, H)
**   e   = cat([t, t], -1)                                         (B, L, 2H)
**   cos = cos(e) [* scale] [-> dtype], sin = sin(e) [* scale] [-> dtype]
**
** The core-ATen form writes the matmul as a bmm between an expand + view
** of each operand, with a view of its result, and the transpose as a
** permute; the no-op removal (passes.c) has taken a scale of 1 already.
**
** Between inv_freq or positions and the matmul, and between the matmul
** and the cat, only nodes that move elements may stand (views that add or
** drop dims of size 1, unsqueeze, expand, transpose, permute) and casts
** to float32 (after the first, the values are float32 already: Qwen3's
** export casts three times).  Which element lands where is tracked per
** dim as a tag: the input index the dim follows (inv_freq's, or the
** positions' batch or length index) or none (size 1, or broadcast by
** expand: the values do not change along it).  The checks at the matmul
** and the cat are on these tags, so a graph that puts an index anywhere
** else does not match.  Conservative as pc_fuse: every intermediate is
** read only inside the match (never a graph result), and no node between
** the first matched node and the fused one writes the memory of inv_freq
** or the positions.  The fused node takes the place of the earlier of the
** two results' nodes (the later one's readers follow it).  Layer:
** compiler.
*/
#include "match.h"

enum { TG_NONE, TG_B, TG_L, TG_H }; /* what index a dim follows */

/* Each dim's tag, for the value a chain node makes. */
typedef struct rt_tags {
    int rank;
    int8_t t[PETREL_MAX_RANK];
} rt_tags;

#define RT_MAX_CHAIN 12 /* nodes between an input and the matmul, or the matmul and the cat */

static bool is_one(const pt_dim *d) { return !d->expr && d->lit == 1; }

static bool is_cast_op(pt_op op) {
    return op == PETREL_OP_TO_DTYPE || op == PETREL_OP_TO_COPY || op == PETREL_OP_TO_DTYPE_LAYOUT ||
           op == PETREL_OP_TO_DEVICE || op == PETREL_OP_TYPE_AS;
}

/* A view that only adds or drops dims of size 1 (the others keep their
 * order and sizes): *o gets x's tags on y's dims. */
static bool view_tags(const pt_value *x, const pt_value *y, const rt_tags *l, rt_tags *o) {
    int j = 0;
    for (int k = 0; k < y->rank; k++) {
        if (is_one(&y->shape[k])) {
            o->t[k] = TG_NONE;
            continue;
        }
        while (j < x->rank && is_one(&x->shape[j])) j++;
        if (j == x->rank || !pt_dim_eq(&x->shape[j], &y->shape[k])) return false;
        o->t[k] = l->t[j++];
    }
    while (j < x->rank && is_one(&x->shape[j])) j++;
    return j == x->rank;
}

/* The tags of node n's result from those of its argument 0 (*l, updated).
 * False when n is not a node that only moves elements or casts to
 * float32, or its recorded shapes disagree. */
static bool step(const fz *f, const pt_node *n, rt_tags *l) {
    const pt_value *x = val(f, tin(n, 0)), *y = val(f, out0(n));
    if (x->kind != PT_V_TENSOR || y->kind != PT_V_TENSOR || x->rank != l->rank || n->nout != 1) return false;
    rt_tags o = {y->rank, {0}};
    int64_t perm[PETREL_MAX_RANK];
    switch (n->op) {
    case PETREL_OP_TRANSPOSE: {
        int d0 = lit_dim_arg(n, 1, x->rank), d1 = lit_dim_arg(n, 2, x->rank);
        if (d0 < 0 || d1 < 0 || y->rank != x->rank) return false;
        for (int k = 0; k < x->rank; k++) perm[k] = k == d0 ? d1 : k == d1 ? d0 : k;
        break;
    }
    case PETREL_OP_PERMUTE:
        if (lit_ints(n, 1, perm, PETREL_MAX_RANK) != x->rank || y->rank != x->rank) return false;
        for (int k = 0; k < x->rank; k++)
            if ((perm[k] = wrap_dim(perm[k], x->rank)) < 0) return false;
        break;
    case PETREL_OP_EXPAND: {
        int lead = y->rank - x->rank;
        if (lead < 0) return false;
        for (int k = 0; k < y->rank; k++) {
            int j = k - lead;
            if (j >= 0 && pt_dim_eq(&x->shape[j], &y->shape[k])) o.t[k] = l->t[j];
            else if (j < 0 || is_one(&x->shape[j])) o.t[k] = TG_NONE; /* repeated values */
            else return false;
        }
        *l = o;
        return true;
    }
    case PETREL_OP_VIEW:
    case PETREL_OP_RESHAPE:
    case PETREL_OP_UNSAFE_VIEW:
    case PETREL_OP_UNSQUEEZE:
    case PETREL_OP_SQUEEZE:
    case PETREL_OP_SQUEEZE_DIM:
    case PETREL_OP_SQUEEZE_DIMS:
        if (y->dtype != x->dtype || !view_tags(x, y, l, &o)) return false;
        *l = o;
        return true;
    default:
        return is_cast_op(n->op) && y->dtype == PETREL_DTYPE_F32 && x->dtype != PETREL_DTYPE_BOOL && same_shape(x, y);
    }
    /* transpose, permute: y's dim k is x's dim perm[k] */
    for (int k = 0; k < x->rank; k++) {
        if (!pt_dim_eq(&y->shape[k], &x->shape[perm[k]])) return false;
        o.t[k] = l->t[perm[k]];
    }
    *l = o;
    return true;
}

/* Do v's dims that are not 1 carry the tags want[0..2] (v of rank 3)? */
static bool tags_are(const pt_value *v, const rt_tags *l, const int8_t *want) {
    if (v->rank != 3 || l->rank != 3) return false;
    for (int k = 0; k < 3; k++)
        if (!is_one(&v->shape[k]) && l->t[k] != want[k]) return false;
    return true;
}

/* Walk up from v, read by node `reader`, through nodes that move elements
 * or cast, each value read only by the next node, to the first value of
 * rank `rank`: the input, whose dims get the tags src[] (none where 1).
 * The nodes are taken; *l gets v's tags.  Returns the input, or -1. */
static int32_t walk_input(const fz *f, int32_t v, int32_t reader, int rank, const int8_t *src, rt_tags *l,
                          fz_match *m) {
    const pt_node *chain[RT_MAX_CHAIN];
    int n = 0;
    while (v >= 0 && val(f, v)->rank != rank) {
        const pt_node *d = defn(f, v);
        if (!d || only_user(f, v) != reader || n == RT_MAX_CHAIN) return -1;
        chain[n++] = d;
        reader = node_index(f, d);
        v = tin(d, 0);
    }
    const pt_value *in = val(f, v);
    if (in->kind != PT_V_TENSOR) return -1;
    *l = (rt_tags){rank, {0}};
    for (int k = 0; k < rank; k++) l->t[k] = is_one(&in->shape[k]) ? TG_NONE : src[k];
    for (int k = n - 1; k >= 0; k--) {
        if (!step(f, chain[k], l)) return -1;
        take(m, f, chain[k]);
    }
    return v;
}

/* cos(e) or sin(e) node c [* scale] [-> cast to a float dtype], each value
 * read only by the next: the last value, with *scale (1 without the mul)
 * and *dt (-1 without the cast); the nodes are taken. */
static int32_t walk_output(const fz *f, const pt_node *c, double *scale, int *dt, fz_match *m) {
    const pt_value *e = val(f, tin(c, 0));
    int32_t v = out0(c);
    if (c->nout != 1 || val(f, v)->dtype != PETREL_DTYPE_F32 || !same_shape(val(f, v), e)) return -1;
    take(m, f, c);
    *scale = 1, *dt = -1;
    const pt_node *u = node(f, only_user(f, v));
    if (u && (u->op == PETREL_OP_MUL_TENSOR || u->op == PETREL_OP_MUL_SCALAR) && u->nout == 1 &&
        ((tin(u, 0) == v && lit_num(u, 1, scale)) || (tin(u, 1) == v && lit_num(u, 0, scale))) &&
        val(f, out0(u))->dtype == PETREL_DTYPE_F32 && same_shape(val(f, out0(u)), e)) {
        take(m, f, u);
        v = out0(u);
        u = node(f, only_user(f, v));
    } else {
        *scale = 1;
    }
    if (u && is_cast_op(u->op) && u->nout == 1 && tin(u, 0) == v && is_float_tensor(val(f, out0(u))) &&
        same_shape(val(f, out0(u)), e)) {
        take(m, f, u);
        *dt = (int)val(f, out0(u))->dtype;
        v = out0(u);
    }
    return v;
}

/* The freqs t (B, L, H), read twice by the cat ci: walk up through nodes
 * that move elements to the matmul or bmm, whose node *prod gets; *l gets
 * t's tags with the product's (B, H, L) tagged b, h, l.  The nodes are
 * taken.  False when t is made any other way. */
static bool walk_freqs(const fz *f, int32_t t, int32_t ci, const pt_node **prod, rt_tags *l, fz_match *m) {
    if (nuse(f, t) != 2 || f->result[t] || f->nmut[t] || f->users[f->ustart[t]] != ci ||
        f->users[f->ustart[t] + 1] != ci)
        return false;
    const pt_node *chain[RT_MAX_CHAIN];
    int n = 0;
    int32_t v = t, reader = ci;
    const pt_node *d;
    while ((d = defn(f, v)) != NULL && d->op != PETREL_OP_MATMUL && d->op != PETREL_OP_BMM) {
        if ((v != t && only_user(f, v) != reader) || n == RT_MAX_CHAIN) return false;
        chain[n++] = d;
        reader = node_index(f, d);
        v = tin(d, 0);
    }
    const pt_value *p = val(f, v);
    if (!d || d->nout != 1 || p->rank != 3 || p->dtype != PETREL_DTYPE_F32 ||
        (v != t && only_user(f, v) != reader))
        return false;
    *prod = d;
    take(m, f, d);
    *l = (rt_tags){3, {0}};
    static const int8_t bhl[3] = {TG_B, TG_H, TG_L};
    for (int k = 0; k < 3; k++) l->t[k] = is_one(&p->shape[k]) ? TG_NONE : bhl[k];
    for (int k = n - 1; k >= 0; k--) {
        if (!step(f, chain[k], l)) return false;
        take(m, f, chain[k]);
    }
    return true;
}

/* Anchor: cat([t, t], -1) of float32 freqs t (B, L, H), read by one cos
 * and one sin and nothing else.  See the file comment. */
bool pc_match_rope_table(const fz *f, int32_t ci, fz_match *m) {
    const pt_node *cat = node(f, ci);
    if (cat->op != PETREL_OP_CAT || cat->nout != 1 || cat->args[0].kind != PT_ARG_TENSORS || cat->args[0].n != 2)
        return false;
    int32_t t = cat->args[0].items[0].vid, e = out0(cat);
    const pt_value *tv = val(f, t), *ev = val(f, e);
    if (t < 0 || cat->args[0].items[1].vid != t || tv->rank != 3 || tv->dtype != PETREL_DTYPE_F32 ||
        lit_dim_arg(cat, 1, 3) != 2 || ev->dtype != PETREL_DTYPE_F32 || nuse(f, e) != 2 || f->result[e] || f->nmut[e])
        return false;
    const pt_node *u0 = node(f, f->users[f->ustart[e]]), *u1 = node(f, f->users[f->ustart[e] + 1]);
    const pt_node *c = u0->op == PETREL_OP_COS ? u0 : u1, *s = u0->op == PETREL_OP_SIN ? u0 : u1;
    if (c->op != PETREL_OP_COS || s->op != PETREL_OP_SIN || tin(c, 0) != e || tin(s, 0) != e) return false;
    take(m, f, cat);
    /* the product and what feeds it */
    const pt_node *prod;
    rt_tags lt, la, lp;
    if (!walk_freqs(f, t, ci, &prod, &lt, m)) return false;
    int32_t pi = node_index(f, prod);
    static const int8_t h[1] = {TG_H}, bl[2] = {TG_B, TG_L};
    int32_t inv = walk_input(f, tin(prod, 0), pi, 1, h, &la, m);
    int32_t pos = inv >= 0 ? walk_input(f, tin(prod, 1), pi, 2, bl, &lp, m) : -1;
    if (pos < 0 || tin(prod, 0) == tin(prod, 1)) return false;
    const pt_value *iv = val(f, inv), *pv = val(f, pos), *av = val(f, tin(prod, 0)), *fv = val(f, tin(prod, 1));
    const pt_value *pr = val(f, out0(prod));
    int64_t H = lit_size(iv, 0);
    static const int8_t a_want[3] = {TG_NONE, TG_H, TG_NONE}, p_want[3] = {TG_B, TG_NONE, TG_L};
    static const int8_t t_want[3] = {TG_B, TG_L, TG_H};
    if (H < 1 || !pt_dtype_is_float(iv->dtype) || pv->dtype == PETREL_DTYPE_BOOL || av->dtype != PETREL_DTYPE_F32 ||
        fv->dtype != PETREL_DTYPE_F32 || !tags_are(av, &la, a_want) || !tags_are(fv, &lp, p_want) ||
        !tags_are(tv, &lt, t_want))
        return false;
    /* sizes: A (1 or B, H, 1), P (B or 1, 1, L), their product (B, H, L),
     * t (B, L, H), e (B, L, 2H) with B, L the positions' */
    const pt_dim *B = &pv->shape[0], *L = &pv->shape[1];
    if (lit_size(av, 1) != H || !is_one(&av->shape[2]) || !is_one(&fv->shape[1]) || !pt_dim_eq(&fv->shape[2], L) ||
        !pt_dim_eq(&pr->shape[0], B) || lit_size(pr, 1) != H || !pt_dim_eq(&pr->shape[2], L) ||
        !pt_dim_eq(&tv->shape[0], B) || !pt_dim_eq(&tv->shape[1], L) || lit_size(tv, 2) != H ||
        !pt_dim_eq(&ev->shape[0], B) || !pt_dim_eq(&ev->shape[1], L) || lit_size(ev, 2) != 2 * H)
        return false;
    /* the two tables, scaled and cast alike */
    double sc, ss;
    int dc, ds;
    int32_t co = walk_output(f, c, &sc, &dc, m), so = walk_output(f, s, &ss, &ds, m);
    if (co < 0 || so < 0 || sc != ss || dc != ds) return false;
    m->final = f->def[co] < f->def[so] ? f->def[co] : f->def[so];
    m->outs[0] = co, m->outs[1] = so;
    m->nouts = 2;
    m->late[0] = inv, m->late[1] = pos;
    m->nlate = 2;
    m->op = PETREL_OP_PETREL_ROPE_TABLE;
    put_tensor(m, inv);
    put_tensor(m, pos);
    put_float(m, sc);
    put_dtype(m, dc);
    return true;
}
