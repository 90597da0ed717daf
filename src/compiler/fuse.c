/*
** fuse.c -- pattern fusion: the decomposed subgraphs of LLMs become the
** fused ops of ops.def ("fused ops" section):
**
**   RMSNorm   pow(x, 2) -> mean(-1) -> + eps -> rsqrt -> x * r [-> cast]
**             [-> * weight or * (weight + 1)] [-> cast]     => petrel.rms_norm
**   RoPE      x * cos + cat(-x[.., h:], x[.., :h]) * sin, optionally on the
**             first R channels with the rest concatenated   => petrel.rope
**             interleaved pairs (GPT-J's rotate_every_two):
**             x * cos + flatten(stack([-x[.., 1::2], x[.., ::2]], -1)) * sin
**             (core ATen: unsqueeze + cat + view)  => petrel.rope(interleaved)
**             The complex form (view_as_complex, a complex mul) is not
**             matched: petrel has no complex dtype.
**   rotary tables  cos and sin of cat(freqs, freqs), freqs the positions
**             times inv_freq (HF's rotary embedding; rotary.c) => petrel.rope_table
**   attention over a static KV cache                        => petrel.sdpa_cache
**     export form: index_copy_(cache, 2, pos, k) [-> repeat_kv] ->
**                  scaled_dot_product_attention
**     aten form:   index_put(cache, [None, None, pos], k) as a buffer
**                  mutation [-> repeat_kv] -> the decomposed attention
**                  (q, k scaled by sqrt(scale), bmm, _softmax with the
**                  all-masked-row guard, bmm)
**
** aten.rms_norm over the last dim becomes petrel.rms_norm as well.  Then
** the linears of decode-bound models:
**
**   gated MLP input   mul(act(linear(x, Wg)), linear(x, Wu)) => petrel.gated_linear
**   residual          add(r, linear(x, W))                   => petrel.linear_add
**   shared input      several linear(x, W_i) (q/k/v)         => petrel.linear_n
**
** And, as a pass of its own (pc_fuse_experts: only for a backend with
** the kernel), the experts of an MoE layer (HF's batched_mm experts):
**
**   squeeze(bmm(index(W, [ids]), unsqueeze(x, -1)), -1) => petrel.expert_linear
**
** and, after quantization (pc_fuse_qkv_attn: only for a backend with the
** kernel), a layer's q/k/v projections with its attention:
**
**   sdpa_cache(transpose(view(p_i, (B, L, H_i, D_i)), 1, 2) for i = q, k, v),
**   p_0, p_1, p_2 the results of one qlinear of mode "n" => petrel.qkv_attn
**
** Last, two folds (not counted as fused ops).  petrel.sdpa_cache of
** petrel.rope(q, cos, sin) and petrel.rope(k, cos, sin) (rotate-half
** ones: its rope_cos/rope_sin mean that), the same cos and
** sin broadcasting over q's and k's leading dims, becomes
** petrel.sdpa_cache(q, k, ..., rope_cos=cos, rope_sin=sin): one kernel
** instead of three at decode.  Then a petrel.rms_norm read only by one
** petrel.linear_n or petrel.gated_linear, as its x, with its input's
** dtype becomes that linear's RMSNorm prologue (norm=True and the norm's
** arguments, the linear reading the norm's input): a layer's two norms
** cost no kernel of their own, nor does the final norm before the LM head
** (a plain linear of a constant weight; a slice cutting the norm's rows to
** the last one is moved before the norm first).  Last, Qwen3's and Gemma 3's per-head q/k
** norms: petrel.rms_norm results read only by a petrel.sdpa_cache as its q
** and k (Qwen3 normalizes before the heads' transpose, which is moved
** before the norm first: a norm over the last dim commutes with a
** transpose of the others) become its qk_norm arguments, two kernels fewer
** per layer at decode.  Norms read elsewhere (Gemma 3's post-norms, an
** MoE's router input) stay.
**
** Matching walks def-use chains from an anchor node.  Conservative: every
** intermediate must be read only inside the match (never a graph result),
** no node between the first and the last matched node may write memory
** (for the folds, which move the ropes' or the norm's reads to the node
** that absorbs them: no memory those read, views and in-place results
** sharing their source's), and
** every literal and shape the fused op's meaning relies on is checked;
** anything else leaves the graph unchanged.  The fused node replaces the
** match's last node, keeping its output value, so readers are untouched;
** the other matched nodes are removed.  The graph stays valid
** (pt_graph_verify) and topologically ordered.  Layer: compiler.
*/
#include <math.h>
#include <string.h>

#include "match.h"

#define FZ_MAX_GROUP 12 /* linears fused into one petrel.linear_n, at most */

/* Exact conversion to float32 (and float32 arithmetic stays exact in the
 * double the fused kernels compute in). */
static bool widens_to_f32(petrel_dtype dt) {
    return dt == PETREL_DTYPE_F16 || dt == PETREL_DTYPE_BF16 || dt == PETREL_DTYPE_F32;
}

/* If node n is a pure float-to-float dtype conversion, its source value. */
static int32_t cast_source(const fz *f, const pt_node *n) {
    if (!n || n->nout != 1 || n->outs[0] < 0) return -1;
    switch (n->op) {
    case PETREL_OP_TO_DTYPE:
    case PETREL_OP_TO_COPY:
    case PETREL_OP_TO_DTYPE_LAYOUT:
    case PETREL_OP_TO_DEVICE:
    case PETREL_OP_TYPE_AS: break;
    default: return -1;
    }
    int32_t src = tin(n, 0);
    if (src < 0 || !is_float_tensor(val(f, src)) || !is_float_tensor(val(f, n->outs[0]))) return -1;
    return same_shape(val(f, src), val(f, n->outs[0])) ? src : -1;
}

/* The cast reading v, when v is read once and only by a cast. */
static const pt_node *cast_user(const fz *f, int32_t v) {
    const pt_node *u = node(f, only_user(f, v));
    return u && cast_source(f, u) == v ? u : NULL;
}

/* ---- RMSNorm ---------------------------------------------------------------- */

/* Anchor: pow(x, 2).  See the file comment for the chain. */
static bool match_rms_norm(const fz *f, int32_t pi, fz_match *m) {
    const pt_node *pw = node(f, pi);
    if (pw->op != PETREL_OP_POW_TENSOR_SCALAR || !lit_is(pw, 1, 2.0)) return false;
    int32_t x = tin(pw, 0);
    if (x < 0) return false;
    const pt_value *xv = val(f, x);
    if (xv->kind != PT_V_TENSOR || xv->rank < 1 ||
        (xv->dtype != PETREL_DTYPE_F32 && xv->dtype != PETREL_DTYPE_F64))
        return false;
    take(m, f, pw);
    const pt_node *mean = node(f, only_user(f, out0(pw)));
    int64_t dims[2];
    if (!mean || mean->op != PETREL_OP_MEAN_DIM || lit_ints(mean, 1, dims, 2) != 1 ||
        wrap_dim(dims[0], xv->rank) != xv->rank - 1 || !lit_is(mean, 2, 1) || !none_arg(mean, 3))
        return false;
    take(m, f, mean);
    const pt_node *add = node(f, only_user(f, out0(mean)));
    double eps;
    if (!add || (add->op != PETREL_OP_ADD_TENSOR && add->op != PETREL_OP_ADD_SCALAR) ||
        tin(add, 0) != out0(mean) || !lit_num(add, 1, &eps) || !lit_is(add, 2, 1))
        return false;
    take(m, f, add);
    const pt_node *rs = node(f, only_user(f, out0(add)));
    if (!rs || rs->op != PETREL_OP_RSQRT) return false;
    take(m, f, rs);
    const pt_node *nm = node(f, only_user(f, out0(rs)));
    if (!nm || nm->op != PETREL_OP_MUL_TENSOR ||
        !((tin(nm, 0) == x && tin(nm, 1) == out0(rs)) || (tin(nm, 1) == x && tin(nm, 0) == out0(rs))))
        return false;
    take(m, f, nm);
    const pt_node *chain[4] = {pw, mean, add, rs};
    for (int i = 0; i < 4; i++)
        if (val(f, out0(chain[i]))->dtype != xv->dtype) return false;
    if (val(f, out0(nm))->dtype != xv->dtype || !same_shape(val(f, out0(nm)), xv)) return false;

    const pt_node *last = nm;
    int norm_dt = -1, w = -1;
    bool add_one = false;
    const pt_node *c = cast_user(f, out0(last));
    if (c) { /* n.to(input_dtype), before the weight (HF Llama) */
        norm_dt = (int)val(f, out0(c))->dtype;
        take(m, f, c);
        last = c;
    }
    const pt_node *wm = node(f, only_user(f, out0(last)));
    int64_t D = lit_size(xv, -1);
    if (wm && wm->op == PETREL_OP_MUL_TENSOR && D > 0) {
        int32_t cand = tin(wm, 0) == out0(last) ? tin(wm, 1) : tin(wm, 1) == out0(last) ? tin(wm, 0) : -1;
        const pt_node *wa = NULL, *wc = NULL;
        if (cand >= 0 && (wa = def_op(f, cand, PETREL_OP_ADD_TENSOR)) != NULL) {
            /* Gemma: (1 + weight), weight maybe cast to float32 first */
            if (only_user(f, cand) != node_index(f, wm) || !lit_is(wa, 1, 1.0) || !lit_is(wa, 2, 1)) cand = -1;
            else cand = tin(wa, 0), add_one = true;
        }
        if (cand >= 0 && cast_source(f, defn(f, cand)) >= 0) {
            wc = defn(f, cand);
            int32_t src = cast_source(f, wc);
            if (only_user(f, cand) != node_index(f, wa ? wa : wm) || !widens_to_f32(val(f, src)->dtype) ||
                val(f, cand)->dtype != PETREL_DTYPE_F32)
                cand = -1;
            else cand = src;
        }
        if (cand >= 0 && is_float_tensor(val(f, cand)) && val(f, cand)->rank == 1 && lit_size(val(f, cand), 0) == D &&
            same_shape(val(f, out0(wm)), xv)) {
            w = cand;
            if (wa) take(m, f, wa);
            if (wc) take(m, f, wc);
            take(m, f, wm);
            last = wm;
            const pt_node *oc = norm_dt < 0 ? cast_user(f, out0(last)) : NULL;
            if (oc) { /* (n * w).type_as(x) (HF Gemma) */
                take(m, f, oc);
                last = oc;
            }
        } else {
            add_one = false;
        }
    }
    /* x.to(float32) inside the norm (half-precision models): read x itself */
    int32_t xin = x;
    const pt_node *xc = defn(f, x);
    if (xc && cast_source(f, xc) >= 0 && widens_to_f32(val(f, cast_source(f, xc))->dtype) &&
        xv->dtype == PETREL_DTYPE_F32 && !f->result[x] && !f->nmut[x]) {
        bool inside = true;
        for (int32_t u = f->ustart[x]; u < f->ustart[x + 1]; u++) inside &= taken(m, f->users[u]);
        if (inside) {
            xin = cast_source(f, xc);
            take(m, f, xc);
        }
    }
    m->final = node_index(f, last);
    m->op = PETREL_OP_PETREL_RMS_NORM;
    put_tensor(m, xin);
    put_tensor(m, w);
    put_float(m, eps);
    put_bool(m, add_one);
    put_dtype(m, norm_dt);
    return true;
}

/* aten.rms_norm over the last dim is the same op with its own defaults:
 * all in float, weight applied before the one rounding, eps None = the
 * float32 epsilon (float64's for float64 inputs).  Rewritten so that
 * backends meet one RMSNorm. */
static bool match_aten_rms_norm(const fz *f, int32_t ni, fz_match *m) {
    const pt_node *n = node(f, ni);
    if (n->op != PETREL_OP_RMS_NORM) return false;
    int32_t x = tin(n, 0), w = none_arg(n, 2) ? -1 : tin(n, 2);
    const pt_value *xv = val(f, x);
    int64_t ns[2], D = lit_size(xv, -1);
    double eps = xv->dtype == PETREL_DTYPE_F64 ? 2.220446049250313e-16 : 1.1920928955078125e-07;
    if (!is_float_tensor(xv) || D < 1 || lit_ints(n, 1, ns, 2) != 1 || ns[0] != D ||
        (!none_arg(n, 2) && (w < 0 || val(f, w)->rank != 1 || lit_size(val(f, w), 0) != D)) ||
        (!none_arg(n, 3) && !lit_num(n, 3, &eps)))
        return false;
    take(m, f, n);
    m->final = ni;
    m->op = PETREL_OP_PETREL_RMS_NORM;
    put_tensor(m, x);
    put_tensor(m, w);
    put_float(m, eps);
    put_bool(m, false);
    put_dtype(m, -1);
    return true;
}

/* ---- RoPE --------------------------------------------------------------------- */

/* cat(-x[..., h:], x[..., :h], dim=-1) with x's last dim 2h: x, else -1. */
static int32_t match_rotate_half(const fz *f, int32_t rh, fz_match *m) {
    const pt_node *cat = def_op(f, rh, PETREL_OP_CAT);
    if (!cat || cat->args[0].kind != PT_ARG_TENSORS || cat->args[0].n != 2) return -1;
    int r = val(f, rh)->rank;
    if (r < 1 || lit_dim_arg(cat, 1, r) != r - 1) return -1;
    const pt_node *neg = def_op(f, cat->args[0].items[0].vid, PETREL_OP_NEG);
    const pt_node *hi = neg ? def_op(f, tin(neg, 0), PETREL_OP_SLICE) : NULL;
    const pt_node *lo = def_op(f, cat->args[0].items[1].vid, PETREL_OP_SLICE);
    if (!hi || !lo || tin(hi, 0) != tin(lo, 0) || tin(hi, 0) < 0) return -1;
    int32_t x = tin(lo, 0);
    int64_t D = lit_size(val(f, x), -1);
    if (val(f, x)->rank != r || D <= 0 || D % 2 != 0) return -1;
    int64_t h = D / 2;
    double end;
    bool lo_ok = lit_dim_arg(lo, 1, r) == r - 1 && (none_arg(lo, 2) || lit_is(lo, 2, 0)) && lit_is(lo, 3, (double)h) &&
                 lit_is(lo, 4, 1);
    bool hi_ok = lit_dim_arg(hi, 1, r) == r - 1 && lit_is(hi, 2, (double)h) &&
                 (none_arg(hi, 3) || (lit_num(hi, 3, &end) && end >= (double)D)) && lit_is(hi, 4, 1);
    if (!lo_ok || !hi_ok) return -1;
    take(m, f, cat);
    take(m, f, neg);
    take(m, f, hi);
    take(m, f, lo);
    return x;
}

/* x[..., start::2] with x's last dim D (end None or >= D): x, else -1. */
static int32_t every_other(const fz *f, const pt_node *sl, int64_t start) {
    int32_t x = tin(sl, 0);
    int r = val(f, x)->rank;
    int64_t D = lit_size(val(f, x), -1);
    double end;
    if (!sl || sl->op != PETREL_OP_SLICE || x < 0 || r < 1 || D <= 0 || lit_dim_arg(sl, 1, r) != r - 1 ||
        !(start ? lit_is(sl, 2, (double)start) : none_arg(sl, 2) || lit_is(sl, 2, 0)) ||
        !(none_arg(sl, 3) || (lit_num(sl, 3, &end) && end >= (double)D)) || !lit_is(sl, 4, 2))
        return -1;
    return x;
}

/* rotate_every_two (GPT-J), x's last dim even:
 *   export form: flatten(stack([-x[..., 1::2], x[..., ::2]], -1), -2)
 *   core ATen:   view(cat([unsqueeze(-x[..., 1::2], -1),
 *                          unsqueeze(x[..., ::2], -1)], -1), x.shape)
 * x, else -1. */
static int32_t match_rotate_every_two(const fz *f, int32_t rh, fz_match *m) {
    const pt_value *rv = val(f, rh);
    int r = rv->rank;
    const pt_node *fl = defn(f, rh), *st = NULL;
    if (r < 1 || !fl) return -1;
    bool aten = is_view_op(fl->op);
    if (fl->op == PETREL_OP_FLATTEN && lit_dim_arg(fl, 1, r + 1) == r - 1 && lit_dim_arg(fl, 2, r + 1) == r)
        st = def_op(f, tin(fl, 0), PETREL_OP_STACK);
    else if (aten)
        st = def_op(f, tin(fl, 0), PETREL_OP_CAT);
    if (!st || st->args[0].kind != PT_ARG_TENSORS || st->args[0].n != 2 || lit_dim_arg(st, 1, r + 1) != r)
        return -1;
    const pt_node *un[2] = {NULL, NULL};
    int32_t part[2];
    for (int k = 0; k < 2; k++) {
        part[k] = st->args[0].items[k].vid;
        if (!aten) continue;
        un[k] = def_op(f, part[k], PETREL_OP_UNSQUEEZE);
        if (!un[k] || lit_dim_arg(un[k], 1, r + 1) != r) return -1;
        part[k] = tin(un[k], 0);
    }
    const pt_node *neg = def_op(f, part[0], PETREL_OP_NEG);
    const pt_node *odd = neg ? defn(f, tin(neg, 0)) : NULL, *even = defn(f, part[1]);
    int32_t x = every_other(f, even, 0);
    if (x < 0 || every_other(f, odd, 1) != x || val(f, x)->rank != r || lit_size(val(f, x), -1) % 2 != 0 ||
        !same_shape(rv, val(f, x)))
        return -1;
    take(m, f, fl);
    take(m, f, st);
    for (int k = 0; k < 2; k++)
        if (un[k]) take(m, f, un[k]);
    take(m, f, neg);
    take(m, f, odd);
    take(m, f, even);
    return x;
}

/* The other operand of a two-tensor mul when one of them is `v`, else -1. */
static int32_t mul_other(const pt_node *n, int32_t v) {
    if (!n || n->op != PETREL_OP_MUL_TENSOR) return -1;
    if (tin(n, 0) == v) return tin(n, 1);
    if (tin(n, 1) == v) return tin(n, 0);
    return -1;
}

/* Anchor: the add of x*cos + rotate_half(x)*sin, or of
 * x*cos + rotate_every_two(x)*sin (interleaved). */
static bool match_rope(const fz *f, int32_t ai, fz_match *m) {
    const pt_node *add = node(f, ai);
    if (add->op != PETREL_OP_ADD_TENSOR || !lit_is(add, 2, 1) || tin(add, 0) < 0 || tin(add, 1) < 0) return false;
    for (int sw = 0; sw < 2; sw++) {
        m->n = 0;
        const pt_node *mc = def_op(f, tin(add, sw), PETREL_OP_MUL_TENSOR);
        const pt_node *ms = def_op(f, tin(add, 1 - sw), PETREL_OP_MUL_TENSOR);
        if (!mc || !ms) continue;
        for (int k = 0; k < 2; k++) {
            m->n = 0;
            int32_t rh = tin(ms, k), sin = tin(ms, 1 - k);
            int32_t x = rh >= 0 ? match_rotate_half(f, rh, m) : -1;
            bool interleaved = x < 0 && rh >= 0 && (x = match_rotate_every_two(f, rh, m)) >= 0;
            int32_t cos = mul_other(mc, x);
            if (x < 0 || cos < 0 || sin < 0) continue;
            const pt_value *xv = val(f, x), *cv = val(f, cos), *sv = val(f, sin), *ov = val(f, out0(add));
            int64_t R = lit_size(xv, -1);
            if (!is_float_tensor(xv) || !is_float_tensor(cv) || !is_float_tensor(sv) || cv->rank > xv->rank ||
                sv->rank > xv->rank || lit_size(cv, -1) != R || lit_size(sv, -1) != R || !same_shape(ov, xv) ||
                val(f, out0(mc))->dtype != ov->dtype || val(f, out0(ms))->dtype != ov->dtype)
                continue;
            take(m, f, mc);
            take(m, f, ms);
            take(m, f, add);
            m->final = ai;
            /* partial rotary: cat([rope(x[..., :R]), x0[..., R:]], -1) */
            int32_t xin = x;
            const pt_node *cat = node(f, only_user(f, out0(add)));
            int r = xv->rank;
            if (cat && cat->op == PETREL_OP_CAT && cat->args[0].kind == PT_ARG_TENSORS && cat->args[0].n == 2 &&
                cat->args[0].items[0].vid == out0(add) && lit_dim_arg(cat, 1, r) == r - 1) {
                const pt_node *pass = def_op(f, cat->args[0].items[1].vid, PETREL_OP_SLICE);
                int32_t x0 = pass ? tin(pass, 0) : -1;
                const pt_node *xs = def_op(f, x, PETREL_OP_SLICE);
                bool rot_ok = x0 == x || (xs && tin(xs, 0) == x0 && lit_dim_arg(xs, 1, r) == r - 1 &&
                                          (none_arg(xs, 2) || lit_is(xs, 2, 0)) && lit_is(xs, 3, (double)R) &&
                                          lit_is(xs, 4, 1));
                int64_t D0 = x0 >= 0 ? lit_size(val(f, x0), -1) : -1;
                double end;
                if (x0 >= 0 && rot_ok && D0 >= R && lit_dim_arg(pass, 1, r) == r - 1 && lit_is(pass, 2, (double)R) &&
                    (none_arg(pass, 3) || (lit_num(pass, 3, &end) && end >= (double)D0)) && lit_is(pass, 4, 1) &&
                    same_shape(val(f, out0(cat)), val(f, x0)) && val(f, x0)->dtype == ov->dtype &&
                    val(f, out0(cat))->dtype == ov->dtype) {
                    take(m, f, pass);
                    take(m, f, cat);
                    if (x0 != x) take(m, f, xs);
                    xin = x0;
                    m->final = node_index(f, cat);
                }
            }
            m->op = PETREL_OP_PETREL_ROPE;
            put_tensor(m, xin);
            put_tensor(m, cos);
            put_tensor(m, sin);
            put_bool(m, interleaved);
            return true;
        }
    }
    return false;
}

/* ---- attention over a static KV cache --------------------------------------- */

/* HF repeat_kv: reshape(expand(unsqueeze(c, 2), (B, H, rep, S, D)),
 * (B, H * rep, S, D)).  Returns c and sets *rep; a value not made that way
 * is returned as is with *rep = 1. */
static int32_t match_repeat_kv(const fz *f, int32_t v, int64_t *rep, fz_match *m) {
    *rep = 1;
    const pt_node *rs = defn(f, v);
    if (!rs || !is_view_op(rs->op)) return v;
    const pt_node *ex = def_op(f, tin(rs, 0), PETREL_OP_EXPAND);
    const pt_node *un = ex ? def_op(f, tin(ex, 0), PETREL_OP_UNSQUEEZE) : NULL;
    if (!un || lit_dim_arg(un, 1, 5) != 2) return v;
    int32_t c = tin(un, 0);
    const pt_value *cv = val(f, c), *uv = val(f, out0(un)), *ev = val(f, out0(ex)), *rv = val(f, v);
    if (cv->rank != 4 || uv->rank != 5 || ev->rank != 5 || rv->rank != 4) return v;
    int64_t B = lit_size(cv, 0), H = lit_size(cv, 1), S = lit_size(cv, 2), D = lit_size(cv, 3);
    int64_t n = lit_size(ev, 2);
    int64_t want_u[5] = {B, H, 1, S, D}, want_e[5] = {B, H, n, S, D}, want_r[4] = {B, H * n, S, D};
    if (B < 0 || H < 0 || S < 0 || D < 0 || n < 1) return v;
    for (int d = 0; d < 5; d++)
        if (lit_size(uv, d) != want_u[d] || lit_size(ev, d) != want_e[d]) return v;
    for (int d = 0; d < 4; d++)
        if (lit_size(rv, d) != want_r[d]) return v;
    take(m, f, rs);
    take(m, f, ex);
    take(m, f, un);
    *rep = n;
    return c;
}

/* The cache write of one side: buffer, positions, new values. */
typedef struct fz_cache {
    int32_t buf, pos, src;
} fz_cache;

/* A state buffer that only this node reads and nothing else updates
 * (the aten form's own buffer mutation is checked by the caller). */
static bool private_buffer(const fz *f, int32_t b) {
    if (b < 0 || val(f, b)->src != PT_SRC_BUFFER || val(f, b)->rank != 4 || nuse(f, b) != 1 || f->result[b])
        return false;
    return true;
}

/* index_copy_(buf, 2, pos, src) producing v (export form). */
static bool match_index_copy(const fz *f, int32_t v, fz_cache *c, fz_match *m) {
    const pt_node *ic = def_op(f, v, PETREL_OP_INDEX_COPY_);
    if (!ic || lit_dim_arg(ic, 1, 4) != 2) return false;
    c->buf = tin(ic, 0), c->pos = tin(ic, 2), c->src = tin(ic, 3);
    if (!private_buffer(f, c->buf) || c->pos < 0 || c->src < 0) return false;
    for (int32_t i = 0; i < f->g->nmuts; i++)
        if (f->g->muts[i].buffer_vid == c->buf) return false;
    take(m, f, ic);
    return true;
}

/* index_put(buf, [None, None, pos], src) producing v, v being the buffer's
 * one mutation (aten form). */
static bool match_index_put(const fz *f, int32_t v, fz_cache *c, fz_match *m) {
    const pt_node *ip = def_op(f, v, PETREL_OP_INDEX_PUT);
    if (!ip) return false;
    const pt_arg *ix = &ip->args[1];
    if (ix->kind != PT_ARG_TENSORS || ix->n != 3 || ix->items[0].vid >= 0 || ix->items[1].vid >= 0 ||
        ix->items[2].vid < 0 || !lit_is(ip, 3, 0))
        return false;
    c->buf = tin(ip, 0), c->pos = ix->items[2].vid, c->src = tin(ip, 2);
    if (!private_buffer(f, c->buf) || c->src < 0 || val(f, c->src)->rank != 4) return false;
    int nm = 0;
    for (int32_t i = 0; i < f->g->nmuts; i++) {
        const pt_mutation *mu = &f->g->muts[i];
        if (mu->buffer_vid == c->buf && mu->value_vid != v) return false;
        if (mu->value_vid == v && mu->buffer_vid != c->buf) return false;
        nm += mu->value_vid == v;
    }
    if (nm != 1 || f->result[v] || m->ndrop == 2) return false;
    m->drop_muts[m->ndrop++] = v;
    take(m, f, ip);
    return true;
}

/* Shared checks of the cache geometry: q (B, Hq, L, E), new k/v (B, Hkv,
 * L, .), caches (B, Hkv, S, .), one position vector, Hq = Hkv * rep. */
static bool cache_geometry(const fz *f, int32_t q, const fz_cache *k, const fz_cache *v, int64_t rep) {
    if (k->pos != v->pos || k->buf == v->buf || q < 0) return false;
    const pt_value *qv = val(f, q), *kb = val(f, k->buf), *vb = val(f, v->buf), *pv = val(f, k->pos);
    const pt_value *ks = val(f, k->src), *vs = val(f, v->src);
    if (qv->rank != 4 || ks->rank != 4 || vs->rank != 4 || pv->rank != 1 || pv->kind != PT_V_TENSOR ||
        pt_dtype_is_float(pv->dtype) || pv->dtype == PETREL_DTYPE_BOOL)
        return false;
    int64_t b = lit_size(qv, 0), hq = lit_size(qv, 1), hkv = lit_size(kb, 1);
    if (b < 1 || lit_size(kb, 0) != b || lit_size(vb, 0) != b || lit_size(ks, 0) != b || lit_size(vs, 0) != b)
        return false;
    if (hq < 1 || hkv < 1 || hq != hkv * rep || lit_size(vb, 1) != hkv || lit_size(ks, 1) != hkv ||
        lit_size(vs, 1) != hkv || lit_size(kb, 3) != lit_size(qv, 3) || lit_size(kb, 2) != lit_size(vb, 2))
        return false;
    return is_float_tensor(qv) && is_float_tensor(kb) && is_float_tensor(vb);
}

/* sdpa_cache's qk_norm arguments (qk_norm, q_norm_weight, k_norm_weight,
 * norm_eps, norm_add_one, norm_dtype), off: fold_qk_norm sets them. */
static void put_no_qk_norm(fz_match *m) {
    put_bool(m, false);
    put_none(m);
    put_none(m);
    put_float(m, 1e-6);
    put_bool(m, false);
    put_dtype(m, -1);
}

static void sdpa_cache_args(fz_match *m, int32_t q, const fz_cache *k, const fz_cache *v, int32_t mask,
                            bool has_scale, double scale, bool causal) {
    m->op = PETREL_OP_PETREL_SDPA_CACHE;
    put_tensor(m, q);
    put_tensor(m, k->src);
    put_tensor(m, v->src);
    put_tensor(m, k->buf);
    put_tensor(m, v->buf);
    put_tensor(m, k->pos);
    put_tensor(m, mask);
    if (has_scale) put_float(m, scale);
    else put_none(m);
    put_bool(m, causal);
    put_none(m); /* rope_cos, rope_sin: folded in later (fold_rope) */
    put_none(m);
    put_no_qk_norm(m);
}

/* Export form, anchor: scaled_dot_product_attention. */
static bool match_sdpa_export(const fz *f, int32_t si, fz_match *m) {
    const pt_node *s = node(f, si);
    if (s->op != PETREL_OP_SDPA || !lit_is(s, 4, 0)) return false;
    double scale = 0, causal, gqa;
    bool has_scale = !none_arg(s, 6);
    if ((has_scale && !lit_num(s, 6, &scale)) || !lit_num(s, 5, &causal) || !lit_num(s, 7, &gqa)) return false;
    int32_t mask = none_arg(s, 3) ? -1 : tin(s, 3);
    if (!none_arg(s, 3) && mask < 0) return false;
    int64_t rk, rv;
    int32_t kc = match_repeat_kv(f, tin(s, 1), &rk, m), vc = match_repeat_kv(f, tin(s, 2), &rv, m);
    fz_cache k, v;
    if (rk != rv || !match_index_copy(f, kc, &k, m) || !match_index_copy(f, vc, &v, m)) return false;
    int32_t q = tin(s, 0);
    int64_t rep = rk;
    if (rep == 1 && gqa != 0 && q >= 0 && lit_size(val(f, k.buf), 1) > 0)
        rep = lit_size(val(f, q), 1) / lit_size(val(f, k.buf), 1); /* enable_gqa on the caches */
    if (!cache_geometry(f, q, &k, &v, rep)) return false;
    take(m, f, s);
    m->final = si;
    sdpa_cache_args(m, q, &k, &v, mask, has_scale, scale, causal != 0);
    return true;
}

/* bmm operand: view(expand(x), (B*H, a, b)) of x (B, H, a, b), the expand
 * changing nothing (it may be absent).  Returns x, or -1. */
static int32_t match_bmm_operand(const fz *f, int32_t v, fz_match *m) {
    const pt_node *vw = defn(f, v);
    if (!vw || !is_view_op(vw->op)) return -1;
    int32_t x = tin(vw, 0);
    const pt_node *ex = def_op(f, x, PETREL_OP_EXPAND);
    if (ex && tin(ex, 0) >= 0 && same_shape(val(f, tin(ex, 0)), val(f, x))) x = tin(ex, 0);
    else ex = NULL;
    const pt_value *xv = val(f, x), *ov = val(f, v);
    int64_t b = lit_size(xv, 0), h = lit_size(xv, 1);
    if (xv->rank != 4 || ov->rank != 3 || b < 1 || h < 1 || lit_size(ov, 0) != b * h ||
        !pt_dim_eq(&ov->shape[1], &xv->shape[2]) || !pt_dim_eq(&ov->shape[2], &xv->shape[3]))
        return -1;
    take(m, f, vw);
    if (ex) take(m, f, ex);
    return x;
}

/* view(bmm_out (B*H, a, b), (B, H, a, b)) read by node r: true when r is
 * that view. */
static bool bmm_result_view(const fz *f, const pt_node *r, const pt_node *bmm) {
    if (!r || !is_view_op(r->op) || tin(r, 0) != out0(bmm)) return false;
    const pt_value *bv = val(f, out0(bmm)), *rv = val(f, out0(r));
    int64_t b = lit_size(rv, 0), h = lit_size(rv, 1);
    return bv->rank == 3 && rv->rank == 4 && b >= 1 && h >= 1 && lit_size(bv, 0) == b * h &&
           pt_dim_eq(&bv->shape[1], &rv->shape[2]) && pt_dim_eq(&bv->shape[2], &rv->shape[3]);
}

/* x * a with a literal a (mul.Scalar, or mul.Tensor of a wrapped number). */
static int32_t match_scaled(const fz *f, int32_t v, double *a, fz_match *m) {
    const pt_node *n = defn(f, v);
    if (!n || (n->op != PETREL_OP_MUL_SCALAR && n->op != PETREL_OP_MUL_TENSOR) || !lit_num(n, 1, a)) return -1;
    take(m, f, n);
    return tin(n, 0);
}

/* An optional float cast in front of v (the decomposition upcasts
 * half-precision attention to float32). */
static int32_t skip_cast(const fz *f, int32_t v, fz_match *m) {
    const pt_node *c = defn(f, v);
    int32_t src = cast_source(f, c);
    if (src < 0) return v;
    take(m, f, c);
    return src;
}

/* Aten form, anchor: _softmax of the decomposed attention. */
static bool match_sdpa_aten(const fz *f, int32_t si, fz_match *m) {
    const pt_node *sm = node(f, si);
    int32_t s2 = tin(sm, 0), p = out0(sm);
    if (sm->op != PETREL_OP_SOFTMAX_ || s2 < 0 || p < 0 || val(f, s2)->rank != 4 ||
        lit_dim_arg(sm, 1, 4) != 3 || !lit_is(sm, 2, 0))
        return false;
    take(m, f, sm);
    /* the guard: where(!any(!(s2 == -inf), -1, keepdim), full_like(p, 0), p) */
    if (nuse(f, p) != 2 || f->result[p] || f->nmut[p] || nuse(f, s2) != 2) return false;
    const pt_node *fl = NULL, *wh = NULL;
    for (int32_t u = f->ustart[p]; u < f->ustart[p + 1]; u++) {
        const pt_node *n = node(f, f->users[u]);
        if (n->op == PETREL_OP_FULL_LIKE) fl = n;
        else if (n->op == PETREL_OP_WHERE_SELF) wh = n;
    }
    if (!fl || !wh || tin(fl, 0) != p || !lit_is(fl, 1, 0) || !none_arg(fl, 2) || tin(wh, 1) != out0(fl) ||
        tin(wh, 2) != p)
        return false;
    const pt_node *n2 = def_op(f, tin(wh, 0), PETREL_OP_LOGICAL_NOT);
    const pt_node *an = n2 ? def_op(f, tin(n2, 0), PETREL_OP_ANY_DIM) : NULL;
    const pt_node *n1 = an ? def_op(f, tin(an, 0), PETREL_OP_LOGICAL_NOT) : NULL;
    const pt_node *eq = n1 ? def_op(f, tin(n1, 0), PETREL_OP_EQ_SCALAR) : NULL;
    if (!eq || tin(eq, 0) != s2 || !lit_is(eq, 1, -INFINITY) || lit_dim_arg(an, 1, 4) != 3 || !lit_is(an, 2, 1))
        return false;
    take(m, f, fl);
    take(m, f, wh);
    take(m, f, n2);
    take(m, f, an);
    take(m, f, n1);
    take(m, f, eq);
    /* scores: view(bmm(q', k')) [+ mask] */
    int32_t s1 = s2, mask = -1;
    const pt_node *ad = def_op(f, s2, PETREL_OP_ADD_TENSOR);
    if (ad) {
        if (!lit_is(ad, 2, 1)) return false;
        for (int k = 0; k < 2; k++) {
            const pt_node *d = defn(f, tin(ad, k));
            if (d && is_view_op(d->op) && def_op(f, tin(d, 0), PETREL_OP_BMM)) s1 = tin(ad, k), mask = tin(ad, 1 - k);
        }
        /* an additive float mask (a bool one would add as 0/1) */
        if (s1 == s2 || mask < 0 || !is_float_tensor(val(f, mask)) || !same_shape(val(f, s1), val(f, s2)))
            return false;
        take(m, f, ad);
    }
    const pt_node *sv = defn(f, s1);
    const pt_node *b1 = sv ? def_op(f, tin(sv, 0), PETREL_OP_BMM) : NULL;
    if (!b1 || !bmm_result_view(f, sv, b1)) return false;
    take(m, f, sv);
    take(m, f, b1);
    double aq, ak;
    int32_t qs = match_bmm_operand(f, tin(b1, 0), m), ks = match_bmm_operand(f, tin(b1, 1), m);
    int32_t qc = qs >= 0 ? match_scaled(f, qs, &aq, m) : -1, kt = ks >= 0 ? match_scaled(f, ks, &ak, m) : -1;
    const pt_node *pm = kt >= 0 ? def_op(f, kt, PETREL_OP_PERMUTE) : NULL;
    int64_t perm[4];
    if (qc < 0 || !pm || aq != ak || !(aq > 0) || lit_ints(pm, 1, perm, 4) != 4 || perm[0] != 0 || perm[1] != 1 ||
        perm[2] != 3 || perm[3] != 2)
        return false;
    take(m, f, pm);
    int32_t q = skip_cast(f, qc, m), k1 = skip_cast(f, tin(pm, 0), m);
    /* output: view(bmm(p', v')) [-> cast back] */
    const pt_node *pe = node(f, only_user(f, out0(wh)));
    if (pe && pe->op == PETREL_OP_EXPAND) pe = node(f, only_user(f, out0(pe)));
    const pt_node *b2 = pe ? node(f, only_user(f, out0(pe))) : NULL;
    if (!b2 || b2->op != PETREL_OP_BMM || match_bmm_operand(f, tin(b2, 0), m) != out0(wh)) return false;
    int32_t vs = match_bmm_operand(f, tin(b2, 1), m);
    const pt_node *ov = node(f, only_user(f, out0(b2)));
    if (vs < 0 || !bmm_result_view(f, ov, b2)) return false;
    take(m, f, b2);
    take(m, f, ov);
    const pt_node *last = ov, *oc = cast_user(f, out0(ov));
    if (oc) take(m, f, oc), last = oc;
    int32_t v1 = skip_cast(f, vs, m);
    /* the caches */
    int64_t rk, rv;
    int32_t kc = match_repeat_kv(f, k1, &rk, m), vc = match_repeat_kv(f, v1, &rv, m);
    fz_cache k, v;
    if (rk != rv || !match_index_put(f, kc, &k, m) || !match_index_put(f, vc, &v, m) ||
        !cache_geometry(f, q, &k, &v, rk))
        return false;
    /* scores and output keep q's (batch, head) split */
    const pt_value *qv = val(f, q);
    for (int d = 0; d < 2; d++)
        if (lit_size(val(f, s1), d) != lit_size(qv, d) || lit_size(val(f, out0(ov)), d) != lit_size(qv, d))
            return false;
    m->final = node_index(f, last);
    sdpa_cache_args(m, q, &k, &v, mask, true, aq * aq, false);
    return true;
}

/* ---- RoPE folded into the attention --------------------------------------- */

/* Does cos or sin c (..., R) broadcast against x[..., :R] (each of its
 * dims before the last 1 or x's), as petrel.rope requires? */
static bool rope_broadcasts(const pt_value *c, const pt_value *x) {
    if (c->kind != PT_V_TENSOR || c->rank < 1 || c->rank > x->rank) return false;
    for (int d = 2; d <= c->rank; d++)
        if (lit_size(c, -d) != 1 && !pt_dim_eq(&c->shape[c->rank - d], &x->shape[x->rank - d])) return false;
    return true;
}

/* petrel.rope node r rotating x0 (B, H, L, E) into a value of x0's shape
 * and dtype with cos, sin (..., R), R even <= E, rotate-half (sdpa_cache's
 * own rope is): x0, else -1. */
static int32_t rope_input(const fz *f, const pt_node *r) {
    int32_t x0 = tin(r, 0);
    if (!lit_is(r, 3, 0)) return -1;
    const pt_value *xv = val(f, x0), *cv = val(f, tin(r, 1)), *sv = val(f, tin(r, 2)), *ov = val(f, out0(r));
    int64_t R = lit_size(cv, -1), E = lit_size(xv, -1);
    if (xv->rank != 4 || !is_float_tensor(xv) || ov->dtype != xv->dtype || !same_shape(ov, xv) || R < 2 ||
        R % 2 != 0 || E < R || lit_size(sv, -1) != R || !rope_broadcasts(cv, xv) || !rope_broadcasts(sv, xv))
        return -1;
    return x0;
}

/* The start of a fold into petrel.sdpa_cache si of the nodes pq and pk
 * making its q and k: the three are taken, the attention stays in its
 * place reading pq's and pk's inputs instead (its first two arguments),
 * and l2, l3 are the other values the folded nodes read. */
static void fold_into_attention(fz_match *m, const fz *f, const pt_node *pq, const pt_node *pk, int32_t si, int32_t l2,
                                int32_t l3) {
    take(m, f, pq);
    take(m, f, pk);
    take(m, f, node(f, si));
    m->final = si;
    m->late[0] = tin(pq, 0), m->late[1] = tin(pk, 0), m->late[2] = l2, m->late[3] = l3;
    m->nlate = 4;
    m->op = PETREL_OP_PETREL_SDPA_CACHE;
    put_tensor(m, tin(pq, 0));
    put_tensor(m, tin(pk, 0));
}

/* Anchor: petrel.sdpa_cache without rope arguments whose q and k are
 * petrel.rope results of the same cos and sin, read by nothing else
 * => that sdpa_cache with rope_cos, rope_sin, reading the unrotated q and
 * k; the two ropes go (one kernel fewer each at decode). */
static bool fold_rope(const fz *f, int32_t si, fz_match *m) {
    const pt_node *s = node(f, si);
    if (s->op != PETREL_OP_PETREL_SDPA_CACHE || !none_arg(s, 9) || !none_arg(s, 10) || !lit_is(s, 11, 0)) return false;
    const pt_node *rq = def_op(f, tin(s, 0), PETREL_OP_PETREL_ROPE), *rk = def_op(f, tin(s, 1), PETREL_OP_PETREL_ROPE);
    double scale = 0, causal;
    if (!rq || !rk || rq == rk || tin(rq, 1) != tin(rk, 1) || tin(rq, 2) != tin(rk, 2) ||
        only_user(f, out0(rq)) != si || only_user(f, out0(rk)) != si || rope_input(f, rq) < 0 ||
        rope_input(f, rk) < 0 || (!none_arg(s, 7) && !lit_num(s, 7, &scale)) || !lit_num(s, 8, &causal))
        return false;
    fold_into_attention(m, f, rq, rk, si, tin(rq, 1), tin(rq, 2));
    for (int a = 2; a <= 6; a++) put_tensor(m, tin(s, a)); /* v, caches, pos, mask (None stays None) */
    if (none_arg(s, 7)) put_none(m);
    else put_float(m, scale);
    put_bool(m, causal != 0);
    put_tensor(m, tin(rq, 1));
    put_tensor(m, tin(rq, 2));
    put_no_qk_norm(m);
    return true;
}

/* ---- linears ---------------------------------------------------------------- */

/* Is n a bias-free linear of a float input (rank >= 2) with a 2-D weight
 * of the same dtype (the fused linears' operands)? */
static bool plain_linear(const fz *f, const pt_node *n) {
    if (!n || n->op != PETREL_OP_LINEAR || (n->nargs > 2 && !none_arg(n, 2)) || n->nout != 1) return false;
    const pt_value *x = val(f, tin(n, 0)), *w = val(f, tin(n, 1)), *y = val(f, out0(n));
    return is_float_tensor(x) && x->rank >= 2 && w->kind == PT_V_TENSOR && w->rank == 2 && w->dtype == x->dtype &&
           y->kind == PT_V_TENSOR && y->dtype == x->dtype;
}

static void put_str(fz_match *m, const char *s) {
    pt_arg *a = next_arg(m, PT_ARG_STRING, false);
    if (!(a->str = pt_strdup(s))) m->oom = true;
}

/* The RMSNorm prologue's arguments (ops.def: norm, norm_weight, norm_eps,
 * norm_add_one, norm_dtype): off when a linear is fused, on when
 * fold_norm gives it a norm. */
static void put_norm(fz_match *m, bool on, int32_t w, double eps, bool add_one, int dt) {
    put_bool(m, on);
    put_tensor(m, w);
    put_float(m, eps);
    put_bool(m, add_one);
    put_dtype(m, dt);
}

static void put_no_norm(fz_match *m) { put_norm(m, false, -1, 1e-6, false, -1); }

/* Anchor: mul(act(linear(x, w_gate)), linear(x, w_up)) (either order) with
 * act silu or gelu (exact or tanh), all of one dtype  => petrel.gated_linear */
static bool match_gated(const fz *f, int32_t mi, fz_match *m) {
    const pt_node *mul = node(f, mi);
    if (mul->op != PETREL_OP_MUL_TENSOR || mul->nout != 1) return false;
    for (int side = 0; side < 2; side++) {
        const pt_node *act = defn(f, tin(mul, side)), *up = defn(f, tin(mul, 1 - side));
        if (!act || (act->op != PETREL_OP_SILU && act->op != PETREL_OP_GELU) || !plain_linear(f, up)) continue;
        const char *name = "silu";
        if (act->op == PETREL_OP_GELU) {
            const char *ap = act->nargs > 1 && act->args[1].kind == PT_ARG_STRING ? act->args[1].str : NULL;
            if (act->nargs > 1 && act->args[1].kind != PT_ARG_STRING && !none_arg(act, 1)) continue;
            name = !ap || !strcmp(ap, "none") ? "gelu" : !strcmp(ap, "tanh") ? "gelu_tanh" : NULL;
            if (!name) continue;
        }
        const pt_node *gate = defn(f, tin(act, 0));
        if (!plain_linear(f, gate) || tin(gate, 0) != tin(up, 0) || gate == up) continue;
        const pt_value *y = val(f, out0(mul)), *g = val(f, out0(gate)), *u = val(f, out0(up));
        if (val(f, out0(act))->dtype != g->dtype || y->dtype != g->dtype || !same_shape(g, u) || !same_shape(g, y))
            continue;
        take(m, f, gate);
        take(m, f, up);
        take(m, f, act);
        take(m, f, mul);
        m->final = mi;
        m->op = PETREL_OP_PETREL_GATED_LINEAR;
        put_tensor(m, tin(gate, 0));
        put_tensor(m, tin(gate, 1));
        put_tensor(m, tin(up, 1));
        put_str(m, name);
        put_no_norm(m);
        return true;
    }
    return false;
}

/* Anchor: add(r, linear(x, w)) (either order, alpha 1), r of the result's
 * shape and dtype  => petrel.linear_add */
static bool match_linear_add(const fz *f, int32_t ai, fz_match *m) {
    const pt_node *add = node(f, ai);
    if (add->op != PETREL_OP_ADD_TENSOR || add->nout != 1 || (add->nargs > 2 && !lit_is(add, 2, 1.0))) return false;
    const pt_value *y = val(f, out0(add));
    for (int side = 0; side < 2; side++) {
        const pt_node *lin = defn(f, tin(add, side));
        int32_t r = tin(add, 1 - side);
        if (!plain_linear(f, lin) || r < 0 || r == out0(lin)) continue;
        const pt_value *rv = val(f, r), *p = val(f, out0(lin));
        if (rv->kind != PT_V_TENSOR || rv->dtype != y->dtype || p->dtype != y->dtype || !same_shape(rv, y) ||
            !same_shape(p, y))
            continue;
        take(m, f, lin);
        take(m, f, add);
        m->final = ai;
        m->op = PETREL_OP_PETREL_LINEAR_ADD;
        put_tensor(m, tin(lin, 0));
        put_tensor(m, tin(lin, 1));
        put_tensor(m, r);
        return true;
    }
    return false;
}

/* Bias-free linears of one input with constant weights of one K, up to
 * FZ_MAX_GROUP of them, with no node writing memory from the first to the
 * last (a layer's q/k/v projections)  => one petrel.linear_n in the first
 * one's place, whose outputs are the linears' results. */
static bool fuse_linear_group(pt_graph *g, const fz *f, int32_t first) {
    const pt_node *a = node(f, first);
    if (!plain_linear(f, a)) return false;
    int32_t x = tin(a, 0), w0 = tin(a, 1);
    int32_t members[FZ_MAX_GROUP], nm = 0;
    for (int32_t i = first; i < g->nnodes && nm < FZ_MAX_GROUP; i++) {
        const pt_node *n = &g->nodes[i];
        if (pt_op_table[n->op].flags & (PT_OPF_INPLACE | PT_OPF_STATE)) break;
        int32_t w = tin(n, 1);
        if (!plain_linear(f, n) || tin(n, 0) != x || lit_size(val(f, w), 1) != lit_size(val(f, w0), 1) ||
            lit_size(val(f, w), 1) < 0 || lit_size(val(f, w), 0) < 0 ||
            (val(f, w)->src != PT_SRC_PARAM && val(f, w)->src != PT_SRC_CONST))
            continue;
        members[nm++] = i;
    }
    if (nm < 2) return false;
    fz_match norm; /* only its arguments: the prologue's, off */
    memset(&norm, 0, sizeof norm);
    put_no_norm(&norm);
    int nargs = 2 + norm.nargs;
    pt_item *ws = pt_calloc((size_t)nm, sizeof *ws), *xs = pt_calloc(1, sizeof *xs);
    int32_t *outs = pt_calloc((size_t)nm, sizeof *outs);
    pt_arg *args = pt_calloc((size_t)nargs, sizeof *args);
    bool *dead = pt_calloc((size_t)g->nnodes, sizeof *dead);
    if (!ws || !xs || !outs || !args || !dead || norm.oom) {
        pt_free(ws), pt_free(xs), pt_free(outs), pt_free(args), pt_free(dead);
        match_free(&norm);
        return false;
    }
    memcpy(args + 2, norm.args, (size_t)norm.nargs * sizeof *args);
    norm.nargs = 0; /* the node owns the items now */
    for (int k = 0; k < nm; k++) {
        const pt_node *n = &g->nodes[members[k]];
        ws[k] = (pt_item){.vid = tin(n, 1)};
        outs[k] = n->outs[0];
        dead[members[k]] = k > 0;
    }
    xs[0] = (pt_item){.vid = x};
    args[0] = (pt_arg){.kind = PT_ARG_TENSOR, .n = 1, .items = xs};
    args[1] = (pt_arg){.kind = PT_ARG_TENSORS, .n = nm, .items = ws};
    pt_node *fin = &g->nodes[first];
    for (int k = 0; k < fin->nargs; k++) {
        pt_free(fin->args[k].items);
        pt_free(fin->args[k].str);
    }
    pt_free(fin->args);
    pt_free(fin->outs);
    fin->op = PETREL_OP_PETREL_LINEAR_N;
    fin->args = args;
    fin->nargs = nargs;
    fin->outs = outs;
    fin->nout = nm;
    pc_remove_nodes(g, dead);
    pt_free(dead);
    return true;
}

/* ---- RMSNorm folded into the linears ---------------------------------------- */

/* A copy of argument src (its items and string) as the next argument. */
static void put_copy(fz_match *m, const pt_arg *src) {
    if (m->nargs == FZ_MAX_ARGS) { /* a bug: fail the match */
        m->oom = true;
        return;
    }
    pt_arg *a = next_arg(m, src->kind, false);
    a->fixed_len = src->fixed_len;
    if (src->n) {
        if (!(a->items = pt_malloc((size_t)src->n * sizeof *a->items))) m->oom = true;
        else memcpy(a->items, src->items, (size_t)src->n * sizeof *a->items), a->n = src->n;
    }
    if (src->str && !(a->str = pt_strdup(src->str))) m->oom = true;
}

/* Anchor: petrel.linear_n or petrel.gated_linear without the prologue, or
 * a bias-free aten.linear of a constant weight (an LM head after the final
 * norm), whose x is a petrel.rms_norm result read by nothing else, of x's
 * dtype => that linear (a plain one as a petrel.linear_n of one weight)
 * with the prologue (norm=True and the norm's arguments), reading the
 * norm's input; the rms_norm goes (one kernel fewer and one activation
 * round trip less per norm at decode). */
static bool fold_norm(const fz *f, int32_t li, fz_match *m) {
    const pt_node *l = node(f, li);
    bool single = l->op == PETREL_OP_LINEAR; /* becomes a linear_n of one weight */
    int base = l->op == PETREL_OP_PETREL_LINEAR_N ? 2 : l->op == PETREL_OP_PETREL_GATED_LINEAR ? 4 : single ? 2 : -1;
    if (base < 0) return false;
    if (single) {
        const pt_value *wv = plain_linear(f, l) ? val(f, tin(l, 1)) : NULL;
        if (!wv || (wv->src != PT_SRC_PARAM && wv->src != PT_SRC_CONST)) return false;
    } else if (l->nargs != base + 5 || !lit_is(l, base, 0)) {
        return false;
    }
    const pt_node *r = def_op(f, tin(l, 0), PETREL_OP_PETREL_RMS_NORM);
    double eps, add_one;
    if (!r || only_user(f, out0(r)) != li || r->nout != 1 || !lit_num(r, 2, &eps) || !lit_num(r, 3, &add_one) ||
        (!none_arg(r, 1) && tin(r, 1) < 0) || (!none_arg(r, 4) && r->args[4].kind != PT_ARG_DTYPE))
        return false;
    int32_t x = tin(r, 0), w = none_arg(r, 1) ? -1 : tin(r, 1);
    const pt_value *xv = val(f, x), *nv = val(f, out0(r));
    if (!is_float_tensor(xv) || nv->kind != PT_V_TENSOR || nv->dtype != xv->dtype) return false;
    take(m, f, r);
    take(m, f, l);
    m->final = li;
    m->late[m->nlate++] = x;
    if (w >= 0) m->late[m->nlate++] = w;
    m->op = single ? PETREL_OP_PETREL_LINEAR_N : l->op;
    put_tensor(m, x);
    if (single) {
        pt_arg *ws = next_arg(m, PT_ARG_TENSORS, true);
        if (ws->items) ws->items[0].vid = tin(l, 1);
    } else {
        for (int a = 1; a < base; a++) put_copy(m, &l->args[a]);
    }
    put_norm(m, true, w, eps, add_one != 0, none_arg(r, 4) ? -1 : (int)r->args[4].items[0].i);
    return true;
}

/* ---- q/k norms folded into the attention ------------------------------------ */

/* The norm's arguments (weight, eps, add_one, norm_dtype) when node r is a
 * petrel.rms_norm over the last dim of a float x into x's dtype with a
 * weight; false otherwise. */
static bool qk_norm_args(const fz *f, const pt_node *r, double *eps, double *add_one, int *dt) {
    if (!r || r->op != PETREL_OP_PETREL_RMS_NORM || r->nout != 1 || tin(r, 1) < 0 || !lit_num(r, 2, eps) ||
        !lit_num(r, 3, add_one) || (!none_arg(r, 4) && r->args[4].kind != PT_ARG_DTYPE))
        return false;
    const pt_value *x = val(f, tin(r, 0)), *y = val(f, out0(r));
    *dt = none_arg(r, 4) ? -1 : (int)r->args[4].items[0].i;
    return is_float_tensor(x) && y->kind == PT_V_TENSOR && y->dtype == x->dtype && lit_size(x, -1) > 0 &&
           lit_size(val(f, tin(r, 1)), 0) == lit_size(x, -1);
}

/* Anchor: petrel.sdpa_cache without qk_norm whose q and k are
 * petrel.rms_norm results (one weight each, the same eps, add_one and
 * norm_dtype) read by nothing else  => that sdpa_cache with qk_norm,
 * reading the norms' inputs; the two norms go. */
static bool fold_qk_norm(const fz *f, int32_t si, fz_match *m) {
    const pt_node *s = node(f, si);
    if (s->op != PETREL_OP_PETREL_SDPA_CACHE || s->nargs != 17 || !lit_is(s, 11, 0)) return false;
    const pt_node *nq = defn(f, tin(s, 0)), *nk = defn(f, tin(s, 1));
    double eq, ek, aq, ak;
    int dq, dk;
    if (!qk_norm_args(f, nq, &eq, &aq, &dq) || !qk_norm_args(f, nk, &ek, &ak, &dk) || nq == nk || eq != ek ||
        aq != ak || dq != dk || only_user(f, out0(nq)) != si || only_user(f, out0(nk)) != si)
        return false;
    fold_into_attention(m, f, nq, nk, si, tin(nq, 1), tin(nk, 1));
    for (int a = 2; a < 11; a++) put_copy(m, &s->args[a]);
    put_bool(m, true);
    put_tensor(m, tin(nq, 1));
    put_tensor(m, tin(nk, 1));
    put_float(m, eq);
    put_bool(m, aq != 0);
    put_dtype(m, dq);
    return true;
}

/* A norm over the last dim commutes with a view that keeps that dim.
 * Qwen3 normalizes q and k before the heads' transpose: rms_norm(x) read
 * only by transpose(., 1, 2) (or a permute keeping the last dim), read
 * only by a petrel.sdpa_cache, becomes rms_norm(transpose(x)) -- the same
 * values -- so that fold_qk_norm finds the norm next to the attention.
 * And a causal LM cuts its final norm's rows to the last one before the
 * LM head (Hugging Face's logits_to_keep): rms_norm(x) read only by a
 * slice of another dim becomes rms_norm(slice(x)), so that fold_norm
 * finds the norm next to the LM head (and a prefill normalizes one row).
 * The two nodes swap places: the view takes the norm's slot and output
 * value (now of the view's shape and x's dtype), the norm the view's.
 * False when n is no such norm, or when a node between them may write x
 * or the norm's weight. */
static bool commute_norm_view(pt_graph *g, const fz *f, int32_t ni) {
    const pt_node *r = node(f, ni);
    double eps, add_one;
    int dt;
    if (!qk_norm_args(f, r, &eps, &add_one, &dt)) return false;
    int32_t a = out0(r), ti = only_user(f, a);
    const pt_node *t = node(f, ti);
    if (!t || t->nout != 1 || tin(t, 0) != a) return false;
    const pt_value *av = val(f, a);
    int rank = av->rank;
    if (t->op == PETREL_OP_TRANSPOSE) {
        int d0 = lit_dim_arg(t, 1, rank), d1 = lit_dim_arg(t, 2, rank);
        if (d0 < 0 || d1 < 0 || d0 == rank - 1 || d1 == rank - 1) return false;
    } else if (t->op == PETREL_OP_PERMUTE) {
        int64_t p[PETREL_MAX_RANK];
        if (lit_ints(t, 1, p, PETREL_MAX_RANK) != rank || wrap_dim(p[rank - 1], rank) != rank - 1) return false;
    } else if (t->op == PETREL_OP_SLICE) {
        int d = lit_dim_arg(t, 1, rank);
        if (d < 0 || d == rank - 1) return false;
    } else {
        return false;
    }
    int32_t b = out0(t), si = only_user(f, b);
    if (t->op != PETREL_OP_SLICE && (si < 0 || node(f, si)->op != PETREL_OP_PETREL_SDPA_CACHE ||
                                     (tin(node(f, si), 0) != b && tin(node(f, si), 1) != b)))
        return false;
    /* the norm will read x and its weight where the view was: nothing between may write them */
    for (int32_t k = ni + 1; k < ti; k++)
        if (may_write(f, node(f, k), tin(r, 0)) || may_write(f, node(f, k), tin(r, 1))) return false;
    pt_node *nn = &g->nodes[ni], *tn = &g->nodes[ti];
    int32_t x = tin(nn, 0);
    pt_node tmp = *nn;
    *nn = *tn; /* the view, reading x, defining a */
    *tn = tmp; /* the norm, reading a, defining b */
    nn->args[0].items[0].vid = x;
    nn->outs[0] = a;
    tn->args[0].items[0].vid = a;
    tn->outs[0] = b;
    pt_value *av2 = &g->values[a];
    const pt_value *bv = &g->values[b], *xv = &g->values[x];
    av2->rank = bv->rank;
    memcpy(av2->shape, bv->shape, sizeof av2->shape);
    av2->dtype = xv->dtype;
    return true;
}

/* ---- MoE experts ------------------------------------------------------------- */

/* Anchor: squeeze(bmm(index(W, [ids]), unsqueeze(x, -1)), -1) (squeeze.dim
 * or .dims), HF's batched_mm experts: W (E, N, K), ids (T) integers, x
 * (T, K) and the result of W's float dtype  => petrel.expert_linear(x, W,
 * ids).  The gathered weights (T, N, K) are never made. */
static bool match_expert(const fz *f, int32_t si, fz_match *m) {
    const pt_node *sq = node(f, si);
    int64_t d[2];
    int dim = sq->op == PETREL_OP_SQUEEZE_DIM    ? lit_dim_arg(sq, 1, 3)
              : sq->op == PETREL_OP_SQUEEZE_DIMS ? (lit_ints(sq, 1, d, 2) == 1 ? wrap_dim(d[0], 3) : -1)
                                                 : -1;
    if (dim != 2 || sq->nout != 1) return false;
    const pt_node *bmm = def_op(f, tin(sq, 0), PETREL_OP_BMM);
    if (!bmm || only_user(f, out0(bmm)) != si) return false;
    int32_t bi = node_index(f, bmm);
    const pt_node *ix = def_op(f, tin(bmm, 0), PETREL_OP_INDEX_TENSOR), *us = def_op(f, tin(bmm, 1), PETREL_OP_UNSQUEEZE);
    if (!ix || !us || only_user(f, out0(ix)) != bi || only_user(f, out0(us)) != bi || lit_dim_arg(us, 1, 3) != 2 ||
        ix->nargs < 2 || ix->args[1].kind != PT_ARG_TENSORS || ix->args[1].n != 1)
        return false;
    int32_t wv = tin(ix, 0), iv = ix->args[1].items[0].vid, xv = tin(us, 0);
    const pt_value *w = val(f, wv), *ids = val(f, iv), *x = val(f, xv), *y = val(f, out0(sq));
    if (!is_float_tensor(w) || w->rank != 3 || ids->kind != PT_V_TENSOR || ids->rank != 1 ||
        pt_dtype_is_float(ids->dtype) || ids->dtype == PETREL_DTYPE_BOOL || !is_float_tensor(x) || x->rank != 2 ||
        x->dtype != w->dtype || y->kind != PT_V_TENSOR || y->rank != 2 || y->dtype != w->dtype ||
        !pt_dim_eq(&x->shape[0], &ids->shape[0]) || !pt_dim_eq(&x->shape[1], &w->shape[2]))
        return false;
    take(m, f, ix);
    take(m, f, us);
    take(m, f, bmm);
    take(m, f, sq);
    m->final = si;
    m->op = PETREL_OP_PETREL_EXPERT_LINEAR;
    put_tensor(m, xv);
    put_tensor(m, wv);
    put_tensor(m, iv);
    return true;
}

int pc_fuse_experts(pt_graph *g) { return pc_match_all(g, match_expert); }

/* ---- quantized q/k/v projections into the attention --------------------------- */

/* Slot (0 q, 1 k, 2 v) of attention s whose argument is transpose(view(p),
 * 1, 2) with p read only by that view, the view only by the transpose and
 * the transpose only by s; p (B, L, N) viewed as (B, L, N / D, D), D the
 * head dim of the slot's cache.  *t, *v: the transpose and the view; -1
 * when p reaches s otherwise. */
static int qkv_slot(const fz *f, int32_t p, int32_t si, const pt_node **t, const pt_node **v) {
    const pt_node *s = node(f, si), *vw = node(f, only_user(f, p));
    if (!vw || !is_view_op(vw->op) || vw->nout != 1 || tin(vw, 0) != p) return -1;
    const pt_node *tr = node(f, only_user(f, out0(vw)));
    if (!tr || tr->op != PETREL_OP_TRANSPOSE || tr->nout != 1 || only_user(f, out0(tr)) != si) return -1;
    int d0 = lit_dim_arg(tr, 1, 4), d1 = lit_dim_arg(tr, 2, 4);
    if (!((d0 == 1 && d1 == 2) || (d0 == 2 && d1 == 1))) return -1;
    int slot = -1;
    for (int a = 0; a < 3; a++)
        if (tin(s, a) == out0(tr)) slot = slot < 0 ? a : 3; /* read twice: no match */
    if (slot < 0 || slot > 2) return -1;
    const pt_value *pv = val(f, p), *vv = val(f, out0(vw)), *cache = val(f, tin(s, slot == 2 ? 4 : 3));
    int64_t D = lit_size(cache, 3), N = lit_size(pv, 2), H = lit_size(vv, 2);
    if (pv->rank != 3 || vv->rank != 4 || cache->rank != 4 || D <= 0 || N <= 0 || H <= 0 || H * D != N ||
        lit_size(vv, 3) != D || !pt_dim_eq(&vv->shape[0], &pv->shape[0]) || !pt_dim_eq(&vv->shape[1], &pv->shape[1]))
        return -1;
    *t = tr, *v = vw;
    return slot;
}

/* Anchor: petrel.sdpa_cache whose q, k and v are the three results of one
 * petrel.qlinear of mode "n" (three weights, any order), each as
 * transpose(view(p, (B, L, H, D)), 1, 2) read by nothing else =>
 * petrel.qkv_attn (ops.def): the projections and the attention in one
 * node, whose results are the attention's and the three transposes'
 * (kept as values: the CPU composes the op from the two kernels into
 * them). */
static bool match_qkv_attn(const fz *f, int32_t si, fz_match *m) {
    const pt_node *s = node(f, si);
    if (s->op != PETREL_OP_PETREL_SDPA_CACHE || s->nargs != 17 || s->nout != 1) return false;
    const pt_node *t0 = def_op(f, tin(s, 0), PETREL_OP_TRANSPOSE), *v0 = t0 ? defn(f, tin(t0, 0)) : NULL;
    const pt_node *ql = v0 && is_view_op(v0->op) ? defn(f, tin(v0, 0)) : NULL; /* q's transpose(view(p)) */
    if (!ql || ql->op != PETREL_OP_PETREL_QLINEAR || ql->nargs != 14 || ql->nout != 3 ||
        ql->args[1].kind != PT_ARG_TENSORS || ql->args[1].n != 3 || ql->args[2].n != 3 ||
        (ql->args[3].n != 0 && ql->args[3].n != 3) || !none_arg(ql, 4) || ql->args[7].kind != PT_ARG_STRING ||
        strcmp(ql->args[7].str, "n") != 0)
        return false;
    const pt_node *tr[3], *vw[3];
    int of[3] = {-1, -1, -1}; /* the qlinear's result of each slot */
    for (int o = 0; o < 3; o++) {
        const pt_node *t, *v;
        int slot = ql->outs[o] >= 0 ? qkv_slot(f, ql->outs[o], si, &t, &v) : -1;
        if (slot < 0 || of[slot] >= 0) return false;
        of[slot] = o, tr[slot] = t, vw[slot] = v;
    }
    take(m, f, ql);
    for (int k = 0; k < 3; k++) take(m, f, vw[k]), take(m, f, tr[k]);
    take(m, f, s);
    m->final = si;
    m->op = PETREL_OP_PETREL_QKV_ATTN;
    m->outs[0] = out0(s);
    for (int k = 0; k < 3; k++) m->outs[1 + k] = out0(tr[k]);
    m->nouts = 4;
    put_tensor(m, tin(ql, 0));
    for (int a = 1; a <= 3; a++) { /* codes, scales, zeros in slot order */
        pt_arg *l = next_arg(m, PT_ARG_TENSORS, false);
        if (!ql->args[a].n) continue;
        if (!(l->items = pt_calloc(3, sizeof *l->items))) {
            m->oom = true;
            continue;
        }
        l->n = 3;
        for (int k = 0; k < 3; k++) l->items[k] = ql->args[a].items[of[k]];
    }
    for (int a = 3; a < 17; a++) put_copy(m, &s->args[a]);
    put_copy(m, &ql->args[5]); /* format, group_size */
    put_copy(m, &ql->args[6]);
    for (int a = 9; a < 14; a++) put_copy(m, &ql->args[a]); /* the RMSNorm prologue */
    return true;
}

int pc_fuse_qkv_attn(pt_graph *g) { return pc_match_all(g, match_qkv_attn); }

/* ---- driver ------------------------------------------------------------------ */

int pc_fuse(pt_graph *g) {
    static const fz_matcher matchers[] = {match_rms_norm,  match_aten_rms_norm, match_rope,  pc_match_rope_table,
                                          match_sdpa_export, match_sdpa_aten,  match_gated, match_linear_add};
    int fused = 0;
    for (size_t k = 0; k < sizeof matchers / sizeof matchers[0]; k++) fused += pc_match_all(g, matchers[k]);
    /* what is left of the linears sharing an input */
    fz f;
    if (!pc_fz_build(&f, g)) return fused;
    for (int32_t i = 0; i < g->nnodes; i++) {
        if (!fuse_linear_group(g, &f, i)) continue;
        fused++;
        pc_fz_free(&f);
        if (!pc_fz_build(&f, g)) return fused;
    }
    pc_fz_free(&f);
    /* folds make no new op, so they are not counted */
    pc_match_all(g, fold_rope);
    if (!pc_fz_build(&f, g)) return fused;
    for (int32_t i = 0; i < g->nnodes; i++) {
        if (!commute_norm_view(g, &f, i)) continue;
        pc_fz_free(&f);
        if (!pc_fz_build(&f, g)) return fused;
    }
    pc_fz_free(&f);
    pc_match_all(g, fold_norm);
    pc_match_all(g, fold_qk_norm);
    return fused;
}
