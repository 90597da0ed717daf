/*
** canon.c -- canonicalization: the core-ATen form writes a linear as a
** transposed weight and a matrix product, the export form as
** aten.linear; this pass rewrites the first into the second, so that
** fusion (fuse.c) and quantization (quant.c) meet one op set:
**
**   [view(x, (M, K)) ->] mm(x2, Wt)                        [-> view(., x.shape[:-1] + (N,))]
**   [view(x, (M, K)) ->] addmm(b, x2, Wt, beta=1, alpha=1) [-> view(., x.shape[:-1] + (N,))]
**     Wt = permute(W, [1, 0]), t(W) or transpose(W, 0, 1)
**   => aten.linear(x, W[, b])
**
** W is a 2-D program constant (PARAM or CONST) and b a vector of W's N
** rows, all of x's float dtype.  The two views are taken together or not
** at all: the first flattens x's leading dims (a view keeps the element
** count, so a 2-D view with x's last dim is exactly that flattening), the
** second restores them; without them the linear is the 2-D one on mm's
** operands and any views around it stay.  The numbers are torch's:
** linear is x W^T + b, which is what mm and addmm with beta = alpha = 1
** compute (other scalings stay addmm).  Conservative like fuse.c, whose
** match kit (match.h) this pass uses: every intermediate (the transposed
** weight, the flattened x, the 2-D product) must be read only inside the
** match and be no graph result, and no node between the first and the
** last matched node may write the memory of x, W or b, which the linear
** reads in the last node's place; anything else leaves the graph
** unchanged.  The linear replaces the last matched node and keeps its
** output value.  Layer: compiler.
*/
#include "match.h"

/* If node n transposes a 2-D program constant (the weight), that
 * constant, else -1. */
static int32_t transposed_weight(const fz *f, const pt_node *n) {
    if (!n || n->nout != 1) return -1;
    int64_t d[2];
    bool swaps = n->op == PETREL_OP_T ||
                 (n->op == PETREL_OP_PERMUTE && lit_ints(n, 1, d, 2) == 2 && wrap_dim(d[0], 2) == 1 &&
                  wrap_dim(d[1], 2) == 0) ||
                 (n->op == PETREL_OP_TRANSPOSE && lit_dim_arg(n, 1, 2) >= 0 && lit_dim_arg(n, 2, 2) >= 0 &&
                  lit_dim_arg(n, 1, 2) != lit_dim_arg(n, 2, 2));
    int32_t w = tin(n, 0);
    const pt_value *wv = val(f, w);
    if (!swaps || wv->kind != PT_V_TENSOR || wv->rank != 2 || (wv->src != PT_SRC_PARAM && wv->src != PT_SRC_CONST))
        return -1;
    return w;
}

/* With y2 = mm(x2, .) (M, N) read by the view `post`: is x2 a view of x
 * flattening its leading dims, read only by mm node mi, and `post` the
 * view giving y2 back x's leading dims? */
static bool flattened(const fz *f, int32_t mi, const pt_node *pre, const pt_node *post, int32_t y2) {
    if (!pre || !post || !is_view_op(pre->op) || !is_view_op(post->op) || tin(post, 0) != y2 ||
        only_user(f, out0(pre)) != mi || post->nout != 1)
        return false;
    const pt_value *x = val(f, tin(pre, 0)), *x2 = val(f, out0(pre)), *y = val(f, out0(post)), *yv2 = val(f, y2);
    if (x->kind != PT_V_TENSOR || x->rank < 2 || y->kind != PT_V_TENSOR || y->rank != x->rank ||
        y->dtype != yv2->dtype || !pt_dim_eq(&x->shape[x->rank - 1], &x2->shape[1]) ||
        !pt_dim_eq(&y->shape[y->rank - 1], &yv2->shape[1]))
        return false;
    for (int d = 0; d < x->rank - 1; d++)
        if (!pt_dim_eq(&x->shape[d], &y->shape[d])) return false;
    return true;
}

/* Anchor: mm(x2, Wt) or addmm(b, x2, Wt) with beta = alpha = 1, Wt a
 * transposed constant read only here, x2 (M, K) and the product of one
 * float dtype  => aten.linear (see the file comment). */
static bool match_linear(const fz *f, int32_t mi, fz_match *m) {
    const pt_node *mm = node(f, mi);
    int base = mm->op == PETREL_OP_MM ? 0 : mm->op == PETREL_OP_ADDMM ? 1 : -1;
    if (base < 0 || mm->nout != 1 || (base && (!lit_is(mm, 3, 1) || !lit_is(mm, 4, 1)))) return false;
    const pt_node *tr = defn(f, tin(mm, base + 1));
    int32_t w = transposed_weight(f, tr), x2 = tin(mm, base), b = base ? tin(mm, 0) : -1, y2 = out0(mm);
    if (w < 0 || only_user(f, out0(tr)) != mi) return false;
    const pt_value *wv = val(f, w), *xv = val(f, x2), *yv = val(f, y2), *bv = val(f, b);
    if (!is_float_tensor(xv) || xv->rank != 2 || wv->dtype != xv->dtype || yv->kind != PT_V_TENSOR ||
        yv->rank != 2 || yv->dtype != xv->dtype || !pt_dim_eq(&xv->shape[1], &wv->shape[1]) ||
        !pt_dim_eq(&yv->shape[1], &wv->shape[0]))
        return false;
    if (base && (bv->kind != PT_V_TENSOR || bv->rank != 1 || bv->dtype != xv->dtype ||
                 !pt_dim_eq(&bv->shape[0], &wv->shape[0])))
        return false;
    const pt_node *pre = defn(f, x2), *post = node(f, only_user(f, y2));
    int32_t x = x2;
    take(m, f, tr);
    take(m, f, mm);
    m->final = mi;
    if (flattened(f, mi, pre, post, y2)) {
        x = tin(pre, 0);
        take(m, f, pre);
        take(m, f, post);
        m->final = node_index(f, post);
    }
    m->late[m->nlate++] = x;
    m->late[m->nlate++] = w;
    if (b >= 0) m->late[m->nlate++] = b;
    m->op = PETREL_OP_LINEAR;
    put_tensor(m, x);
    put_tensor(m, w);
    put_tensor(m, b); /* None when b < 0 */
    return true;
}

int pc_canonicalize(pt_graph *g) { return pc_match_all(g, match_linear); }
