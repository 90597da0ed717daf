/*
** matmul_k.h -- launchers of the "matmul" family's own device kernels
** (matmul_k.cu), called from matmul.c; everything else in that family is
** cuBLAS.  Plain C: every launcher enqueues on `s` and returns
** cudaGetLastError().
*/
#ifndef PETREL_CUDA_MATMUL_K_H
#define PETREL_CUDA_MATMUL_K_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out (M, N) = alpha * x (M, K) @ w (N, K)^T + beta * self, for few rows
 * (the decode case: M <= PCU_GEMV_MAX_M), streaming w once.
 * Requirements (checked by the caller): x, w, out share one float dtype;
 * rows of w are contiguous, K a multiple of 16 bytes' worth of elements,
 * w, x and their row strides 16-byte aligned; out is dense (M, N). */
#define PCU_GEMV_MAX_M 8
#define PCU_GEMV_MAX_SEG 8
/* What the GEMV writes (the fused linears of ops.def):
 *   PLAIN   out = alpha * p + beta * self, rounded once (p = x @ w^T);
 *   GATED   out = act(p) * (x @ w2^T), each product, act(p) and out rounded;
 *   RESID   out = round(p) + self, rounded again. */
enum { PCU_GEMV_PLAIN, PCU_GEMV_GATED, PCU_GEMV_RESID };
enum { PCU_ACT_SILU, PCU_ACT_GELU, PCU_ACT_GELU_TANH };
typedef struct pcu_gemv {
    int32_t dtype;           /* petrel_dtype of x, w, out */
    const void *w;           /* (N, K), row stride K */
    const void *x;           /* (M, K), row stride ldx */
    int64_t ldx;
    void *out;               /* (M, N) dense */
    int32_t M;
    int64_t N, K;
    float alpha, beta;
    const void *self;        /* NULL: no addend; else read at m*self_sm + n*self_sn */
    int32_t self_dtype;
    int64_t self_sm, self_sn;
    int32_t mode, act;       /* PCU_GEMV_*, PCU_ACT_* (GATED) */
    int32_t w_const;         /* the weights are program constants: streamed
                                before the kernel before has finished */
    const void *w2;          /* GATED: the second weight, (N, K) like w */
    /* nseg > 0 (PLAIN only): rows [seg_start[i], seg_start[i + 1]) of a
     * virtual (N, K) weight are the rows of seg_w[i], and their results go
     * to seg_out[i], dense (M, seg_start[i + 1] - seg_start[i]); w and out
     * are then unused (petrel.linear_n: several weights, one launch) */
    int32_t nseg;
    const void *seg_w[PCU_GEMV_MAX_SEG];
    void *seg_out[PCU_GEMV_MAX_SEG];
    int64_t seg_start[PCU_GEMV_MAX_SEG + 1];
    /* norm != 0: the RMSNorm prologue of ops.def, applied as a scale after
     * the product: p = rstd * (round(x * nw) @ w^T), rstd = 1 / sqrt(mean(x^2)
     * + norm_eps) over x's row in fp32, nw the norm weight (K, dense, x's
     * dtype, 16-byte aligned; required), x * (1 + nw) with
     * norm_add_one, rounded once to x's dtype.  The reference rounds x *
     * rstd first instead; the two orders differ by about one rounding of
     * x (within the dtype's tolerance).  Each block sums x^2 itself, so
     * the norm costs no launch.  Only for M = 1 (decode). */
    int32_t norm, norm_add_one;
    const void *nw;
    float norm_eps;
} pcu_gemv;

cudaError_t pcu_gemv_launch(cudaStream_t s, const pcu_gemv *g, int sm_count);


/* The prefill side of the fused linears, elementwise over n dense
 * elements of dtype, with the GEMV's rounding points: a is the rounded
 * product (dense); GATED: out = act(a) * b, b the rounded up product
 * (dense, dtype); RESID: out = a + b, b the residual of dtype b_dtype read
 * at row * b_sm + col * b_sn for rows of `cols` elements. */
cudaError_t pcu_linear_epilogue_launch(cudaStream_t s, int32_t dtype, int32_t mode, int32_t act, const void *a,
                                       const void *b, int32_t b_dtype, int64_t b_sm, int64_t b_sn, int64_t cols,
                                       void *out, int64_t n);

/* data[i] *= beta for a dense float tensor of n elements (addmm with an
 * empty reduction: the result is beta * self). */
cudaError_t pcu_scale_launch(cudaStream_t s, int32_t dtype, void *data, int64_t n, float beta);

#ifdef __cplusplus
}
#endif

#ifdef __CUDACC__
/* The activation of a gated linear (PCU_ACT_*), in float as torch
 * computes it; shared by the float and the quantized GEMVs. */
static __device__ __forceinline__ float pcu_act(float v, int act) {
    switch (act) {
    case PCU_ACT_SILU: return v / (1.0f + __expf(-v));
    case PCU_ACT_GELU: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    default: return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    }
}
#endif

#endif /* PETREL_CUDA_MATMUL_K_H */
