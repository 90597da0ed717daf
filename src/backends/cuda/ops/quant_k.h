/*
** quant_k.h -- launchers of the "quant" family's device kernels
** (quant_k.cu), called from quant.c: the decode GEMV over packed weights,
** the dequantization of weight panels for prefill (cuBLAS multiplies
** them, quant.c) and the quantized embedding.  Formats, layout and meaning:
** ops.def ("Quantized weights"); the byte layout: core/quant_fmt.h.
** Plain C: every launcher enqueues on `s` and returns cudaGetLastError().
*/
#ifndef PETREL_CUDA_QUANT_K_H
#define PETREL_CUDA_QUANT_K_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "matmul_k.h" /* PCU_GEMV_* modes, PCU_ACT_* activations */

#ifdef __cplusplus
extern "C" {
#endif

/* One quantized weight W (N, K) on the device. */
typedef struct pcu_qweight {
    const uint8_t *codes;  /* (N, K * bits / 8): row stride code_rs bytes, bytes of a row contiguous */
    int64_t code_rs;
    const void *scales;    /* (N, K / G) of dtype sdt (nvfp4: u8 E4M3 bits), strides in elements */
    int32_t sdt;
    int64_t s_rs, s_cs;
    const int8_t *zeros;   /* (N, K / G) zero points; NULL for symmetric formats and nvfp4 */
    int64_t z_rs, z_cs;
    const float *t;        /* nvfp4: the per-tensor scale, one f32 on the device; else NULL */
    int64_t N;
} pcu_qweight;

/* ---- decode GEMV -------------------------------------------------------------- */

/* out = x (M, K) @ W^T for few rows of x (M <= PCU_QGEMV_MAX_M), reading
 * every code once, with the rounding points of the fused linears:
 *   PLAIN  one output per weight w[i], dense (M, w[i].N), rounded once;
 *   GATED  w[0] gate, w[1] up: out[0] = act(g) * u, with g, u, act(g)
 *          and the result each rounded to dtype (petrel.gated_linear);
 *   RESID  out[0] = round(p) + residual, rounded again (petrel.linear_add);
 *          with res_raw round(p + residual) (aten.linear's bias).
 * x, the outputs and (integer formats) the scales share one float dtype. */
#define PCU_QGEMV_MAX_M 8
#define PCU_QGEMV_MAX_W 8
typedef struct pcu_qgemv {
    int32_t dtype;          /* petrel_dtype of x, outputs and scales: f32, f16 or bf16 */
    int32_t fmt;            /* pt_qfmt */
    int64_t G;              /* group size */
    const void *x;          /* (M, K), row stride ldx */
    int64_t ldx;
    int32_t M;
    int64_t K;
    int32_t mode, act;      /* PCU_GEMV_PLAIN / GATED / RESID, PCU_ACT_* (GATED) */
    const void *res;        /* RESID: element (m, n) at m * res_sm + n * res_sn, of res_dtype */
    int32_t res_dtype;
    int64_t res_sm, res_sn;
    int32_t res_raw;        /* RESID: 1 adds res to the product before its one
                               rounding, round(p + res) (a linear's bias) */
    int32_t w_const;        /* codes, scales and zeros are program constants:
                               streamed before the kernel before has finished */
    int32_t nw;             /* weights: PLAIN 1..PCU_QGEMV_MAX_W, GATED 2, RESID 1 */
    pcu_qweight w[PCU_QGEMV_MAX_W];
    void *out[PCU_QGEMV_MAX_W]; /* PLAIN: one per weight; else out[0], dense (M, w[0].N) */
    /* norm != 0 (PLAIN and GATED, M = 1): the RMSNorm prologue inside the
     * GEMV, as pcu_gemv's (matmul_k.h): p = rstd * (round(x * norm_w) @ W^T) */
    int32_t norm, norm_add_one;
    const void *norm_w;      /* (K) of dtype, 16-byte aligned */
    float norm_eps;
    /* set by the launcher: the weights' rows stacked, weight i holding rows
     * [seg_start[i], seg_start[i + 1]) of N in all; log2 of G */
    int64_t seg_start[PCU_QGEMV_MAX_W + 1];
    int64_t N;
    int32_t lg_group;
} pcu_qgemv;

/* Can the GEMV run g?  It needs 1..8 rows of x, 16-byte aligned x rows
 * and code rows, whole 16-byte chunks of codes per row, a power-of-two
 * group size that keeps a chunk (int8 and int4: G >= 16 and 32) or each
 * half of it (int2: G >= 32; nvfp4's 16) in one group, scales of x's
 * dtype (nvfp4: u8), and scales and zero points contiguous along a row.
 * Otherwise quant.c takes the panel path. */
bool pcu_qgemv_fits(const pcu_qgemv *g);

cudaError_t pcu_qgemv_launch(cudaStream_t s, const pcu_qgemv *g, int sm_count);

/* ---- dequantization ------------------------------------------------------------- */

/* panel (rows, K) dense of dtype (f32 / f16 / bf16) = rows [n0, n0 + rows)
 * of W as ops.def defines it in float, rounded once to dtype.  fmt, G:
 * the format and group size; any strides and scale dtype; sm_count: the
 * device's multiprocessors (the grid's size). */
cudaError_t pcu_qdequant_launch(cudaStream_t s, int32_t fmt, int64_t G, int64_t K, const pcu_qweight *w,
                                int64_t n0, int64_t rows, void *panel, int32_t dtype, int sm_count);

/* out (nidx, K) dense of dtype (a float dtype) = the rows of W at the
 * index values idx[0..nidx) (dense, integer dtype idt; negative values
 * count from the end), each rounded once to dtype.  An out-of-range index
 * gives a row of zeros: the values live on the device, so the node cannot
 * fail on them (as the index family's gathers, index_k.h). */
cudaError_t pcu_qembedding_launch(cudaStream_t s, int32_t fmt, int64_t G, int64_t K, const pcu_qweight *w,
                                  const void *idx, int32_t idt, int64_t nidx, void *out, int32_t dtype);

#ifdef __cplusplus
}
#endif

#endif /* PETREL_CUDA_QUANT_K_H */
