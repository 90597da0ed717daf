/*
** matmul.c -- CUDA kernels for matrix products: mm, bmm, addmm, baddbmm,
** matmul (torch.matmul's rank rules and batch broadcasting) and linear,
** for f32 / f16 / bf16.  Same argument handling and shapes as the CPU
** reference (cpu/ops/matmul.c).  Part of the CUDA backend.
**
** Products run on cuBLAS with fp32 accumulation (CUBLAS_COMPUTE_32F: no
** TF32 for f32) and one rounding into the output.  cuBLAS reads a matrix
** that is row-major or column-major with any leading dimension; other
** strides are first copied to dense device scratch.  Batch dims that
** collapse to one stride per operand become one strided-batched call; when
** the right operand is shared by every batch (x @ W^T of a linear layer)
** the batch folds into the rows instead.  Decode-sized products (at most
** PCU_GEMV_MAX_M rows against a row-major weight) use our own GEMV
** (matmul_k.cu), which streams the weight at close to memory bandwidth.
**
** The addend of addmm / baddbmm / linear (beta * self) is copied into the
** output first and cuBLAS accumulates onto it (its beta), so the output is
** still rounded once; with beta == 0 self is never read, as in torch.
*/
#include <limits.h>
#include <string.h>

#include "../../cpu/ops/matmul_plan.h"
#include "../cuda.h"
#include "expert_k.h"
#include "matmul_k.h"
#include "norm_k.h"

/* How cuBLAS reads one operand: its matrices are row-major (trans false)
 * or column-major (trans true) with leading dimension ld; matrix i of the
 * batch starts at data + sum_d bi[d] * bstride[d] elements. */
typedef struct mm_operand {
    const uint8_t *data;
    bool trans;
    int64_t ld;
    int64_t bstride[PETREL_MAX_RANK];
} mm_operand;

/* Can cuBLAS read the (rows, cols) matrices of t (last two dims) as they
 * are?  Row-major needs unit column stride and rows at least `cols` apart,
 * column-major the mirror image; a size-1 dim's stride does not matter. */
static bool mm_layout(const pt_tensor *t, bool *trans, int64_t *ld) {
    int64_t rows = t->shape[t->rank - 2], cols = t->shape[t->rank - 1];
    int64_t rs = t->stride[t->rank - 2], cs = t->stride[t->rank - 1];
    if ((cols == 1 || cs == 1) && (rows == 1 || rs >= cols)) {
        *trans = false;
        *ld = rows == 1 ? cols : rs;
    } else if ((rows == 1 || rs == 1) && (cols == 1 || cs >= rows)) {
        *trans = true;
        *ld = cols == 1 ? rows : cs;
    } else {
        return false;
    }
    return *ld >= 1 && *ld <= INT_MAX;
}

/* Describe operand t (rank nb+2, broadcast) for cuBLAS.  `orig` is the
 * operand before broadcasting: when its matrices have a layout cuBLAS
 * cannot read, it is copied to dense device scratch and broadcast again to
 * t's shape. */
static petrel_status mm_operand_make(pt_exec *ex, const pt_tensor *orig, const pt_tensor *t, int nb,
                                     mm_operand *o) {
    pt_tensor v = *t;
    if (!mm_layout(&v, &o->trans, &o->ld)) {
        pt_tensor dense = *orig;
        int64_t s = 1;
        for (int i = orig->rank - 1; i >= 0; i--) {
            dense.stride[i] = s;
            s *= orig->shape[i] > 1 ? orig->shape[i] : 1;
        }
        dense.data = pk_dev_scratch(ex, (size_t)s * pt_elsize(orig));
        if (!dense.data) return pk_fail(ex, PETREL_ERR_NOMEM, "out of device scratch for a matrix operand");
        PT_TRY(pcu_copy_into(ex, &dense, orig));
        if (!pt_broadcast_to(&dense, t->rank, t->shape, &v) || !mm_layout(&v, &o->trans, &o->ld))
            return pk_fail(ex, PETREL_ERR_RUNTIME, "matrix operand layout");
    }
    o->data = v.data;
    for (int d = 0; d < nb; d++) o->bstride[d] = v.stride[d];
    return PETREL_OK;
}

/* cuBLAS's data type for a float dtype. */
static cudaDataType mm_blas_type(petrel_dtype dt) {
    return dt == PETREL_DTYPE_F16 ? CUDA_R_16F : dt == PETREL_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* The decode GEMV applies: one matrix of few rows, x row-major, W (b
 * transposed) row-major, both with 16-byte aligned rows. */
static bool mm_gemv_ok(const mm_plan *p, const mm_operand *a, const mm_operand *b, petrel_dtype dt) {
    int64_t es = (int64_t)petrel_dtype_size(dt);
    return p->nb == 0 && p->M <= PCU_GEMV_MAX_M && !a->trans && b->trans && b->ld == p->K &&
           (p->K * es) % 16 == 0 && (a->ld * es) % 16 == 0 && ((uintptr_t)a->data % 16) == 0 &&
           ((uintptr_t)b->data % 16) == 0;
}

/* Drop size-1 batch dims and merge neighbours that both operands step
 * through evenly, so most batches become one strided-batched call. */
static void mm_merge_batch(mm_plan *p, mm_operand *a, mm_operand *b) {
    int nb = 0;
    for (int d = 0; d < p->nb; d++) {
        if (p->bshape[d] == 1) continue;
        if (nb > 0 && a->bstride[nb - 1] == a->bstride[d] * p->bshape[d] &&
            b->bstride[nb - 1] == b->bstride[d] * p->bshape[d]) {
            p->bshape[nb - 1] *= p->bshape[d];
            a->bstride[nb - 1] = a->bstride[d], b->bstride[nb - 1] = b->bstride[d];
            continue;
        }
        p->bshape[nb] = p->bshape[d];
        a->bstride[nb] = a->bstride[d], b->bstride[nb] = b->bstride[d];
        nb++;
    }
    p->nb = nb;
}

/* One batch dim over a shared right operand (x @ W^T with x (B, M, K)):
 * the batch becomes rows, (B * M, K) @ (K, N), when a's rows are evenly
 * spaced across it.  The output is dense, so its rows line up too. */
static void mm_fold_batch(mm_plan *p, mm_operand *a, const mm_operand *b) {
    if (p->nb != 1 || b->bstride[0] != 0 || a->trans) return;
    int64_t rs = p->M == 1 ? a->bstride[0] : a->ld;
    if (a->bstride[0] != p->M * rs || rs < p->K || rs > INT_MAX) return;
    p->M *= p->bshape[0];
    a->ld = rs;
    p->nb = 0;
}

/* Run the product into dense out (batch..., M, N) with cuBLAS: beta_blas
 * scales what `out` already holds (the copied addend). */
static petrel_status mm_blas(pt_exec *ex, const mm_plan *p, const mm_operand *a, const mm_operand *b,
                             pt_tensor *out, float alpha, float beta_blas) {
    int64_t M = p->M, N = p->N, K = p->K;
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX)
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "matrix dims beyond 2^31 are not supported on CUDA");
    cudaDataType ty = mm_blas_type(out->dtype);
    size_t es = pt_elsize(out);
    /* row-major C = A B is column-major C^T = B^T A^T: cuBLAS's first
     * operand is b, its second a */
    cublasOperation_t opb = b->trans ? CUBLAS_OP_T : CUBLAS_OP_N, opa = a->trans ? CUBLAS_OP_T : CUBLAS_OP_N;
    int64_t inner = p->nb > 0 ? p->bshape[p->nb - 1] : 1;
    int64_t outer = 1;
    for (int d = 0; d + 1 < p->nb; d++) outer *= p->bshape[d];
    if (inner > INT_MAX) return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "batch beyond 2^31 is not supported on CUDA");
    long long sa = p->nb > 0 ? a->bstride[p->nb - 1] : 0, sb = p->nb > 0 ? b->bstride[p->nb - 1] : 0;
    int64_t bi[PETREL_MAX_RANK] = {0};
    cublasHandle_t h = pk_cuda(ex)->blas;
    /* one strided-batched call per index of the outer batch dims */
    for (int64_t o = 0; o < outer; o++) {
        int64_t offa = 0, offb = 0;
        for (int d = 0; d + 1 < p->nb; d++) offa += bi[d] * a->bstride[d], offb += bi[d] * b->bstride[d];
        const uint8_t *pa = a->data + offa * (int64_t)es, *pb = b->data + offb * (int64_t)es;
        uint8_t *pc = out->data + o * inner * M * N * (int64_t)es;
        PCU_BLAS(ex, cublasGemmStridedBatchedEx(h, opb, opa, (int)N, (int)M, (int)K, &alpha, pb, ty, (int)b->ld, sb,
                                                pa, ty, (int)a->ld, sa, &beta_blas, pc, ty, (int)N,
                                                (long long)(M * N), (int)inner, CUBLAS_COMPUTE_32F,
                                                CUBLAS_GEMM_DEFAULT));
        pt_next_index(bi, p->bshape, p->nb - 1);
    }
    return PETREL_OK;
}

/* Output 0 = alpha * (a @ b) + beta * self with torch.matmul's rules: 1-D
 * operands become (1, K) / (K, 1) matrices whose added dim is dropped from
 * the result, batch dims broadcast.  self (NULL = none) broadcasts to the
 * product (batch..., M, N) and is ignored entirely when beta == 0. */
static petrel_status mm_matmul(pt_exec *ex, const pt_node *n, const pt_tensor *a, const pt_tensor *b,
                               const pt_tensor *self, double beta, double alpha) {
    if (a->rank == 0 || b->rank == 0) return pk_fail(ex, PETREL_ERR_SHAPE, "matmul operands must be at least 1-D");
    pt_tensor a2 = a->rank == 1 ? mm_unsqueezed(a, 0) : *a; /* (1, K) */
    pt_tensor b2 = b->rank == 1 ? mm_unsqueezed(b, 1) : *b; /* (K, 1) */
    mm_plan p;
    PT_TRY(mm_plan_make(ex, &a2, &b2, &p));
    int64_t shape[PETREL_MAX_RANK];
    int rank = 0;
    for (int i = 0; i < p.nb; i++) shape[rank++] = p.bshape[i];
    if (a->rank > 1) shape[rank++] = p.M;
    if (b->rank > 1) shape[rank++] = p.N;
    petrel_dtype dt = pk_out_dtype(ex, n, 0);
    if (a->dtype != dt || b->dtype != dt ||
        (dt != PETREL_DTYPE_F32 && dt != PETREL_DTYPE_F16 && dt != PETREL_DTYPE_BF16))
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA matrix products need f32/f16/bf16 operands of the output's dtype");
    bool has_self = self && beta != 0.0;
    pt_tensor self_b; /* self broadcast to (batch..., M, N) */
    if (has_self) {
        int64_t pshape[PETREL_MAX_RANK];
        memcpy(pshape, p.bshape, sizeof(int64_t) * (size_t)p.nb);
        pshape[p.nb] = p.M, pshape[p.nb + 1] = p.N;
        if (!pt_broadcast_to(self, p.nb + 2, pshape, &self_b))
            return pk_fail(ex, PETREL_ERR_SHAPE, "self/bias does not broadcast to the product");
        if (pcu_is_host_scalar(self))
            return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "a Python-number addend is not supported on CUDA");
    }
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, rank, shape, &out));
    if (pt_numel(out) == 0) return PETREL_OK;
    /* the output seen as the dense product (batch..., M, N) */
    pt_tensor prod = *out;
    prod.rank = p.nb + 2;
    for (int i = 0; i < p.nb; i++) prod.shape[i] = p.bshape[i];
    prod.shape[p.nb] = p.M, prod.shape[p.nb + 1] = p.N;
    int64_t s = 1;
    for (int i = prod.rank - 1; i >= 0; i--) prod.stride[i] = s, s *= prod.shape[i];

    if (p.K == 0) { /* empty sums: beta * self, or zeros */
        if (!has_self) {
            PCU_TRY(ex, cudaMemsetAsync(out->data, 0, (size_t)pt_numel(out) * pt_elsize(out), pcu_stream(ex)));
            return PETREL_OK;
        }
        PT_TRY(pcu_copy_into(ex, &prod, &self_b));
        if (beta != 1.0)
            PCU_LAUNCHED(ex, pcu_scale_launch(pcu_stream(ex), dt, out->data, pt_numel(out), (float)beta), "scale");
        return PETREL_OK;
    }

    mm_operand oa, ob;
    PT_TRY(mm_operand_make(ex, &a2, &p.a, p.nb, &oa));
    PT_TRY(mm_operand_make(ex, &b2, &p.b, p.nb, &ob));
    mm_merge_batch(&p, &oa, &ob);
    mm_fold_batch(&p, &oa, &ob);

    int64_t self_rs = 0;
    if (mm_gemv_ok(&p, &oa, &ob, dt) && (!has_self || mm_row_stride(&self_b, &self_rs))) {
        pcu_gemv g = {.dtype = dt, .w = ob.data, .x = oa.data, .ldx = oa.ld, .out = out->data, .M = (int32_t)p.M,
                      .N = p.N, .K = p.K, .alpha = (float)alpha, .beta = (float)beta,
                      .w_const = n->op == PETREL_OP_LINEAR && pk_is_const(ex, n, 1, 0)};
        if (has_self) {
            g.self = self_b.data, g.self_dtype = self_b.dtype;
            g.self_sm = self_rs, g.self_sn = self_b.stride[self_b.rank - 1];
        }
        PCU_LAUNCHED(ex, pcu_gemv_launch(pcu_stream(ex), &g, pk_cuda(ex)->sm_count), "gemv");
        return PETREL_OK;
    }

    if (has_self) PT_TRY(pcu_copy_into(ex, &prod, &self_b));
    return mm_blas(ex, &p, &oa, &ob, out, (float)alpha, has_self ? (float)beta : 0.0f);
}

/* ---- fused linears (ops.def: petrel.linear_n, gated_linear, linear_add) ---- */

_Static_assert((int)MM_ACT_SILU == (int)PCU_ACT_SILU && (int)MM_ACT_GELU == (int)PCU_ACT_GELU &&
                   (int)MM_ACT_GELU_TANH == (int)PCU_ACT_GELU_TANH,
               "activation numbering shared with matmul_plan.h");

petrel_status pcu_linear_rows(pt_exec *ex, const pt_tensor *x, const void **data, int64_t *ld, int64_t *M) {
    int64_t K = x->shape[x->rank - 1], es = (int64_t)pt_elsize(x), rs;
    *M = 1;
    for (int i = 0; i + 1 < x->rank; i++) *M *= x->shape[i];
    if (pt_numel(x) == 0) { /* nothing to read (K = 0: empty sums) */
        *data = x->data, *ld = K;
        return PETREL_OK;
    }
    if ((x->stride[x->rank - 1] == 1 || K == 1) && mm_row_stride(x, &rs) && (rs >= K || *M == 1) &&
        (uintptr_t)x->data % 16 == 0 && (rs * es) % 16 == 0) {
        *data = x->data, *ld = *M == 1 ? K : rs;
        return PETREL_OK;
    }
    pt_tensor d = *x;
    int64_t s = 1;
    for (int i = d.rank - 1; i >= 0; i--) d.stride[i] = s, s *= d.shape[i];
    if (!(d.data = pk_dev_scratch(ex, (size_t)(pt_numel(x) * es) + 16)))
        return pk_fail(ex, PETREL_ERR_NOMEM, "out of device scratch for a linear's input");
    PT_TRY(pcu_copy_into(ex, &d, x));
    *data = d.data, *ld = K;
    return PETREL_OK;
}

/* Can the GEMV read these rows of x and weight w? */
static bool fl_gemv_ok(const void *x, int64_t ldx, int64_t M, const pt_tensor *w) {
    int64_t es = (int64_t)pt_elsize(w), K = w->shape[1];
    return M >= 1 && M <= PCU_GEMV_MAX_M && w->stride[1] == 1 && w->stride[0] == K && (K * es) % 16 == 0 &&
           (ldx * es) % 16 == 0 && (uintptr_t)x % 16 == 0 && (uintptr_t)w->data % 16 == 0;
}

/* out (M, N) dense = x (M, K; row stride ldx) @ w^T with cuBLAS. */
static petrel_status fl_gemm(pt_exec *ex, const void *x, int64_t ldx, int64_t M, const pt_tensor *w, void *out) {
    int64_t N = w->shape[0], K = w->shape[1];
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX || ldx > INT_MAX)
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "matrix dims beyond 2^31 are not supported on CUDA");
    if (w->stride[1] != 1 || w->stride[0] < K)
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA fused linears need weights with contiguous rows");
    cudaDataType ty = mm_blas_type(w->dtype);
    float one = 1.0f, zero = 0.0f;
    PCU_BLAS(ex, cublasGemmEx(pk_cuda(ex)->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one, w->data, ty,
                              (int)w->stride[0], x, ty, (int)ldx, &zero, out, ty, (int)N, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
    return PETREL_OK;
}

/* Output k: x's shape with the last dim N. */
static petrel_status fl_out(pt_exec *ex, const pt_node *n, int k, const pt_tensor *x, int64_t N, pt_tensor **out) {
    int64_t shape[PETREL_MAX_RANK];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->rank);
    shape[x->rank - 1] = N;
    return pk_out_alloc(ex, n, k, x->rank, shape, out);
}

static bool fl_weight_ok(const pt_tensor *w, const pt_tensor *x) {
    return w && w->rank == 2 && w->dtype == x->dtype && w->shape[1] == x->shape[x->rank - 1];
}

petrel_status pcu_prenorm_of(pt_exec *ex, const pt_node *n, int a, const pt_tensor *x, pcu_prenorm *pn) {
    *pn = (pcu_prenorm){.on = pk_bool(ex, n, a)};
    if (!pn->on) return PETREL_OK;
    const pt_tensor *w = pk_tensor(ex, n, a + 1);
    int64_t K = x->shape[x->rank - 1];
    pn->norm_dtype = pk_dtype(ex, n, a + 4); /* -1: n stays in float */
    if (pn->norm_dtype >= 0 && !pt_dtype_is_float((petrel_dtype)pn->norm_dtype))
        return pk_fail(ex, PETREL_ERR_SHAPE, "rms_norm norm_dtype must be a float dtype");
    if (w && (w->rank != 1 || w->shape[0] != K || (K > 1 && w->stride[0] != 1) ||
              (w->dtype != PETREL_DTYPE_F32 && w->dtype != PETREL_DTYPE_F16 && w->dtype != PETREL_DTYPE_BF16) ||
              pcu_is_host_scalar(w)))
        return pk_fail(ex, PETREL_ERR_SHAPE, "the norm prologue's weight must be a dense float vector of x's last dim");
    pn->w = w, pn->eps = (float)pk_float(ex, n, a + 2), pn->add_one = pk_bool(ex, n, a + 3);
    return PETREL_OK;
}

petrel_status pcu_prenorm_run(pt_exec *ex, const pcu_prenorm *pn, const pt_tensor *x, const void **xd, int64_t *ldx,
                              int64_t M) {
    int64_t K = x->shape[x->rank - 1];
    if (!pn->on || M == 0 || K == 0) return PETREL_OK;
    size_t bytes = (size_t)(M * K) * pt_elsize(x);
    const void *rows = *xd;
    if (*ldx != K && M > 1) { /* the row kernel reads dense rows */
        pt_tensor src = *x, dst = *x;
        src.rank = dst.rank = 2, src.shape[0] = dst.shape[0] = M, src.shape[1] = dst.shape[1] = K;
        src.data = (uint8_t *)*xd, src.stride[0] = *ldx, src.stride[1] = 1;
        dst.stride[0] = K, dst.stride[1] = 1;
        if (!(dst.data = pk_dev_scratch(ex, bytes)))
            return pk_fail(ex, PETREL_ERR_NOMEM, "out of device scratch for a linear's norm");
        PT_TRY(pcu_copy_into(ex, &dst, &src));
        rows = dst.data;
    }
    void *d = pk_dev_scratch(ex, bytes);
    if (!d) return pk_fail(ex, PETREL_ERR_NOMEM, "out of device scratch for a linear's norm");
    const pt_tensor *w = pn->w;
    pcu_rownorm r = {.x = rows, .xdt = x->dtype, .out = d, .odt = x->dtype, .M = M, .D = K,
                     .w = w ? w->data : NULL, .wdt = w ? w->dtype : PETREL_DTYPE_F32, .eps = pn->eps, .rms = true,
                     .add_one = pn->add_one, .norm_dtype = pn->norm_dtype};
    PCU_LAUNCHED(ex, pcu_rownorm_launch(pcu_stream(ex), &r), "linear's norm");
    *xd = d, *ldx = K;
    return PETREL_OK;
}

/* The norm prologue inside a float GEMV (pcu_gemv's norm fields): for one
 * row of x, when the norm has a weight of x's dtype, 16-byte aligned.  Measured on an
 * H200 against the row-norm kernel before the GEMV (which costs a launch
 * of ~3 us in the decode chain); normalizing the row first inside each
 * block instead had measured slower than that kernel. */
static bool fl_norm_in_gemv(const pcu_prenorm *pn, const pt_tensor *x, pcu_gemv *g) {
    if (!pn->on) return true;
    if (g->M != 1) return false;
    if (!pn->w || pn->w->dtype != x->dtype || (uintptr_t)pn->w->data % 16 != 0) return false;
    g->norm = 1, g->norm_add_one = pn->add_one, g->nw = pn->w->data, g->norm_eps = pn->eps;
    return true;
}

static petrel_status fl_linear_n(pt_exec *ex, const pt_node *n, const pt_tensor *x, const pcu_prenorm *pn,
                                 const void *xd, int64_t ldx, int64_t M) {
    int count = 0;
    const pt_tensor **ws = pk_tensors(ex, n, 1, &count);
    pt_tensor *outs[PCU_GEMV_MAX_SEG * 2];
    if (!ws || count != n->nout || count < 1 || count > PCU_GEMV_MAX_SEG * 2)
        return pk_fail(ex, PETREL_ERR_SHAPE, "linear_n needs one weight per output (at most %d)", PCU_GEMV_MAX_SEG * 2);
    bool gemv = count <= PCU_GEMV_MAX_SEG;
    for (int i = 0; i < count; i++) {
        if (!fl_weight_ok(ws[i], x)) return pk_fail(ex, PETREL_ERR_SHAPE, "linear_n: weight %d does not fit x", i);
        PT_TRY(fl_out(ex, n, i, x, ws[i]->shape[0], &outs[i]));
        gemv = gemv && fl_gemv_ok(xd, ldx, M, ws[i]);
    }
    if (M == 0) return PETREL_OK;
    pcu_gemv g = {.dtype = x->dtype, .x = xd, .ldx = ldx, .M = (int32_t)M, .K = x->shape[x->rank - 1],
                  .alpha = 1.0f, .mode = PCU_GEMV_PLAIN, .nseg = count, .w_const = 1};
    if (!gemv || !fl_norm_in_gemv(pn, x, &g)) { /* the norm first, on its own */
        PT_TRY(pcu_prenorm_run(ex, pn, x, &xd, &ldx, M));
        g.x = xd, g.ldx = ldx;
    }
    if (!gemv) { /* prefill, or a weight the GEMV cannot read: one cuBLAS product each */
        for (int i = 0; i < count; i++)
            if (ws[i]->shape[0] > 0) PT_TRY(fl_gemm(ex, xd, ldx, M, ws[i], outs[i]->data));
        return PETREL_OK;
    }
    for (int i = 0; i < count; i++) {
        g.w_const = g.w_const && pk_is_const(ex, n, 1, i);
        g.seg_w[i] = ws[i]->data, g.seg_out[i] = outs[i]->data;
        g.seg_start[i + 1] = g.seg_start[i] + ws[i]->shape[0];
    }
    g.N = g.seg_start[count];
    if (g.N > 0) PCU_LAUNCHED(ex, pcu_gemv_launch(pcu_stream(ex), &g, pk_cuda(ex)->sm_count), "linear_n gemv");
    return PETREL_OK;
}

/* petrel.gated_linear (GATED) and petrel.linear_add (RESID). */
static petrel_status fl_epilogue(pt_exec *ex, const pt_node *n, const pt_tensor *x, const pcu_prenorm *pn,
                                 const void *xd, int64_t ldx, int64_t M) {
    bool gated = n->op == PETREL_OP_PETREL_GATED_LINEAR;
    const pt_tensor *w = pk_tensor(ex, n, 1), *w2 = gated ? pk_tensor(ex, n, 2) : NULL;
    if (!fl_weight_ok(w, x) || (gated && (!fl_weight_ok(w2, x) || w2->shape[0] != w->shape[0])))
        return pk_fail(ex, PETREL_ERR_SHAPE, "fused linear: the weights do not fit x");
    int act = 0;
    if (gated) {
        act = mm_act_id(pk_str(ex, n, 3));
        if (act < 0) return pk_fail(ex, PETREL_ERR_RUNTIME, "gated_linear: unknown activation");
    }
    int64_t N = w->shape[0];
    pt_tensor *out;
    PT_TRY(fl_out(ex, n, 0, x, N, &out));
    pt_tensor rb; /* the residual as (rows, N) */
    int64_t rs = 0;
    if (!gated) {
        const pt_tensor *r = pk_tensor(ex, n, 2);
        if (!r || !pt_broadcast_to(r, out->rank, out->shape, &rb) || r->dtype != out->dtype || pcu_is_host_scalar(r))
            return pk_fail(ex, PETREL_ERR_SHAPE, "linear_add: the residual does not fit the product");
        if (!mm_row_stride(&rb, &rs)) {
            pt_tensor d = *out;
            if (!(d.data = pk_dev_scratch(ex, (size_t)(pt_numel(out) * (int64_t)pt_elsize(out)))))
                return pk_fail(ex, PETREL_ERR_NOMEM, "out of device scratch for a residual");
            PT_TRY(pcu_copy_into(ex, &d, &rb));
            rb = d;
            rs = N;
        }
    }
    if (pt_numel(out) == 0) return PETREL_OK;
    int64_t rn = rb.rank > 0 && !gated ? rb.stride[rb.rank - 1] : 0;
    pcu_gemv g = {.dtype = x->dtype, .w = w->data, .x = xd, .ldx = ldx, .out = out->data, .M = (int32_t)M,
                  .N = N, .K = w->shape[1], .alpha = 1.0f, .mode = gated ? PCU_GEMV_GATED : PCU_GEMV_RESID,
                  .act = act, .w2 = gated ? w2->data : NULL,
                  .w_const = pk_is_const(ex, n, 1, 0) && (!gated || pk_is_const(ex, n, 2, 0))};
    bool gemv = fl_gemv_ok(xd, ldx, M, w) && (!gated || fl_gemv_ok(xd, ldx, M, w2));
    if (!gemv || !fl_norm_in_gemv(pn, x, &g)) { /* the norm first, on its own */
        PT_TRY(pcu_prenorm_run(ex, pn, x, &xd, &ldx, M));
        g.x = xd, g.ldx = ldx;
    }
    if (gemv) {
        if (!gated) g.self = rb.data, g.self_dtype = rb.dtype, g.self_sm = rs, g.self_sn = rn;
        PCU_LAUNCHED(ex, pcu_gemv_launch(pcu_stream(ex), &g, pk_cuda(ex)->sm_count), "fused linear gemv");
        return PETREL_OK;
    }
    size_t bytes = (size_t)(M * N * (int64_t)pt_elsize(out));
    void *a = pk_dev_scratch(ex, bytes), *b = gated ? pk_dev_scratch(ex, bytes) : NULL;
    if (!a || (gated && !b)) return pk_fail(ex, PETREL_ERR_NOMEM, "out of device scratch for a fused linear");
    PT_TRY(fl_gemm(ex, xd, ldx, M, w, a));
    if (gated) PT_TRY(fl_gemm(ex, xd, ldx, M, w2, b));
    PCU_LAUNCHED(ex,
                 pcu_linear_epilogue_launch(pcu_stream(ex), out->dtype, gated ? PCU_GEMV_GATED : PCU_GEMV_RESID, act,
                                            a, gated ? b : rb.data, gated ? out->dtype : rb.dtype, rs, rn, N,
                                            out->data, M * N),
                 "fused linear epilogue");
    return PETREL_OK;
}

static petrel_status mm_fused(pt_exec *ex, const pt_node *n) {
    const pt_tensor *x = pk_tensor(ex, n, 0);
    petrel_dtype dt = pk_out_dtype(ex, n, 0);
    if (!x || x->rank < 2 || x->dtype != dt ||
        (dt != PETREL_DTYPE_F32 && dt != PETREL_DTYPE_F16 && dt != PETREL_DTYPE_BF16))
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA fused linears need an f32/f16/bf16 input (..., K) of the output's dtype");
    const void *xd = NULL;
    int64_t ldx = 0, M = 0;
    PT_TRY(pcu_linear_rows(ex, x, &xd, &ldx, &M));
    pcu_prenorm pn = {0};
    if (n->op != PETREL_OP_PETREL_LINEAR_ADD) /* norm arguments from 2 (linear_n) or 4 (gated_linear) */
        PT_TRY(pcu_prenorm_of(ex, n, n->op == PETREL_OP_PETREL_LINEAR_N ? 2 : 4, x, &pn));
    if (n->op == PETREL_OP_PETREL_LINEAR_N) return fl_linear_n(ex, n, x, &pn, xd, ldx, M);
    return fl_epilogue(ex, n, x, &pn, xd, ldx, M);
}

/*
** Kernel family "matmul": mm, bmm, addmm, baddbmm, matmul, linear and the
** fused linears.  Operands may be any strided views of one float dtype.
*/
/* petrel.expert_linear: the CPU kernel's checks, then one launch of
 * expert_k.cu's kernel (each row reads its expert's weight in place). */
static petrel_status mm_expert(pt_exec *ex, const pt_node *n) {
    const char *op = "expert_linear";
    const pt_tensor *x, *w, *ids;
    PT_TRY(mm_expert_operands(ex, n, &x, &w, &ids));
    if (w->dtype != x->dtype || pk_out_dtype(ex, n, 0) != x->dtype || x->dtype == PETREL_DTYPE_F64)
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA %s needs x, weight and output of one f32/f16/bf16 dtype", op);
    if (pcu_is_host_scalar(ids) || (x->shape[1] > 1 && x->stride[1] != 1))
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "CUDA %s needs device ids and x contiguous along K", op);
    int64_t T = x->shape[0], N = w->shape[1], shape[2] = {T, N};
    pt_tensor *out;
    PT_TRY(pk_out_alloc(ex, n, 0, 2, shape, &out));
    if (T == 0 || N == 0) return PETREL_OK;
    pcu_expert a = {.dtype = (int32_t)x->dtype, .x = x->data, .ldx = x->stride[0], .ids = ids->data,
                    .ids_dtype = (int32_t)ids->dtype, .ids_stride = ids->stride[0], .T = T, .E = w->shape[0],
                    .N = N, .K = x->shape[1], .out = out->data, .fmt = -1, .w = w->data, .w_se = w->stride[0],
                    .w_sn = w->stride[1], .w_sk = w->stride[2]};
    size_t sb = pcu_expert_scratch(&a);
    void *scr = sb ? pk_dev_scratch(ex, sb) : NULL;
    if (sb && !scr) return pk_fail(ex, PETREL_ERR_NOMEM, "out of device scratch for %s's row order", op);
    PCU_LAUNCHED(ex, pcu_expert_launch(pcu_stream(ex), &a, scr), op);
    return PETREL_OK;
}

petrel_status cuda_k_matmul(pt_exec *ex, const pt_node *n) {
    switch (n->op) {
    case PETREL_OP_MM:
    case PETREL_OP_BMM:
    case PETREL_OP_ADDMM:
    case PETREL_OP_BADDBMM:
    case PETREL_OP_MATMUL:
    case PETREL_OP_LINEAR: {
        mm_args o;
        PT_TRY(mm_args_of(ex, n, &o));
        return mm_matmul(ex, n, o.a, o.b, o.self, o.beta, o.alpha);
    }
    case PETREL_OP_PETREL_LINEAR_N:
    case PETREL_OP_PETREL_GATED_LINEAR:
    case PETREL_OP_PETREL_LINEAR_ADD:
        return mm_fused(ex, n);
    case PETREL_OP_PETREL_EXPERT_LINEAR:
        return mm_expert(ex, n);
    default:
        return pk_fail(ex, PETREL_ERR_UNSUPPORTED_OP, "op %d is not a CUDA matmul op", (int)n->op);
    }
}
