/*
** norm_k.h -- launchers of the "norm" family's device kernels (norm_k.cu),
** called from norm.c and fused.c.  Plain C: argument blocks by value,
** every launcher enqueues on `s` and returns cudaGetLastError().
**
** Inputs and outputs are dense (the host copies strided inputs first);
** per-feature parameters are dense vectors of any float dtype (NULL =
** None); statistics are computed in fp32 with the biased variance.
*/
#ifndef PETREL_CUDA_NORM_K_H
#define PETREL_CUDA_NORM_K_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Layer / RMS norm over the last dim D of x (M, D):
 *   y = (x - mean) * rstd * w + b      (rms: mean = 0, b unused)
 * rstd = 1 / sqrt(var + eps).  petrel.rms_norm's extra rounding point:
 * with norm_dtype >= 0, (x - mean) * rstd is rounded to it before the
 * weight multiplies; add_one uses 1 + w as the weight. */
typedef struct pcu_rownorm {
    const void *x;          /* (M, D) dense */
    int32_t xdt;
    void *out;              /* (M, D) dense */
    int32_t odt;
    int64_t M, D;
    const void *w, *b;      /* (D) or NULL */
    int32_t wdt, bdt;
    float eps;
    bool rms, add_one;
    int32_t norm_dtype;     /* -1: none */
    void *mean, *rstd;      /* (M) statistics outputs or NULL */
    int32_t mean_dt, rstd_dt;
} pcu_rownorm;

cudaError_t pcu_rownorm_launch(cudaStream_t s, const pcu_rownorm *a);

/* Group / batch norm: statistics over segments, affine per channel.
 * Segment s (0 <= s < nseg) is `pieces` runs of `inner` contiguous
 * elements, run p starting at s * seg_stride + p * piece_stride; run p of
 * segment s belongs to channel (s % chan_mod) * chan_mul + p * chan_piece.
 *   group norm: segment (n, g), pieces = C/G channels of HxW elements;
 *   batch norm: segment c, pieces = the N batch entries of channel c.
 * mean / var come from run_mean / run_var (per channel, inference batch
 * norm) when given, else from the segment's elements. */
typedef struct pcu_segnorm {
    const void *x;          /* dense */
    int32_t xdt;
    void *out;              /* dense, x's shape */
    int32_t odt;
    int64_t nseg, pieces, inner, seg_stride, piece_stride;
    int64_t chan_mod, chan_mul, chan_piece;
    const void *w, *b, *run_mean, *run_var; /* (C) or NULL */
    int32_t wdt, bdt, rmdt, rvdt;
    float eps;
    void *mean, *rstd;      /* (nseg) statistics outputs or NULL */
    int32_t mean_dt, rstd_dt;
} pcu_segnorm;

cudaError_t pcu_segnorm_launch(cudaStream_t s, const pcu_segnorm *a);

#ifdef __cplusplus
}
#endif

#endif /* PETREL_CUDA_NORM_K_H */
