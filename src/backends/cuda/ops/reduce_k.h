/*
** reduce_k.h -- launchers of the "reduce" family's device kernels
** (reduce_k.cu), called from reduce.c.  Plain C: argument blocks passed
** by value, every launcher enqueues on `s` and returns cudaGetLastError().
**
** Both kernels walk "rows": the input's kept dims enumerate the rows
** (row-major, which is also the order of the dense output of a
** reduction) and the reduced dims (or the one softmax / cumsum dim) the
** elements of a row.  A row is handled by `tpr` threads: 1 (many short or
** strided rows), 32 (a warp per row) or the whole block.
*/
#ifndef PETREL_CUDA_REDUCE_K_H
#define PETREL_CUDA_REDUCE_K_H

#include "../cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How elements are read and accumulated: f32/f16/bf16 inputs in float
 * (16-byte loads along contiguous rows), any dtype in double, or any
 * dtype in int64 (integer sums, products and extremes stay exact). */
enum { PCU_LD_F32, PCU_LD_F16, PCU_LD_BF16, PCU_LD_F64, PCU_LD_I64 };

enum {
    PCU_RED_SUM,    /* sum, or mean with `mean` */
    PCU_RED_PROD,
    PCU_RED_EXT,    /* amax (flag) / amin; NaN wins */
    PCU_RED_ANYALL, /* any (flag) / all */
    PCU_RED_LSE,    /* logsumexp */
    PCU_RED_NORM,   /* linalg_vector_norm of order p */
    PCU_RED_VAR,    /* variance with correction p (sqrt: std); out2 = mean */
    PCU_RED_ARG,    /* max (flag) / min with its first index; NaN wins */
};

typedef struct pcu_red {
    const void *in;
    int32_t idt, ld, op, tpr;
    int32_t nk, nr;
    int64_t kshape[PCU_MAX_RANK], kstride[PCU_MAX_RANK];
    int64_t rshape[PCU_MAX_RANK], rstride[PCU_MAX_RANK];
    int64_t outer, count;          /* rows, elements per row */
    void *out;                     /* dense over rows: the value (ARG: NULL = none) */
    int32_t odt;
    void *out2;                    /* VAR: mean; ARG: int64 indices (NULL = none) */
    int32_t odt2;
    int32_t flag, mean, take_sqrt;
    double p;
} pcu_red;

enum { PCU_ALONG_SOFTMAX, PCU_ALONG_LOG_SOFTMAX, PCU_ALONG_CUMSUM };

/* softmax / log_softmax / cumsum along one dim: the output has the
 * input's shape (okstride / orstride: its strides). */
typedef struct pcu_along {
    const void *in;
    int32_t idt, ld, op, tpr;
    int32_t nk;
    int64_t kshape[PCU_MAX_RANK], kstride[PCU_MAX_RANK], okstride[PCU_MAX_RANK];
    int64_t outer, count, rstride, orstride;
    void *out;
    int32_t odt;
} pcu_along;

/* threads: block size (a multiple of 32, at most 1024; equal to tpr when
 * tpr is neither 1 nor 32). */
PT_HIDDEN cudaError_t pcu_red_launch(const pcu_red *a, int threads, cudaStream_t s);
PT_HIDDEN cudaError_t pcu_along_launch(const pcu_along *a, int threads, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif /* PETREL_CUDA_REDUCE_K_H */
