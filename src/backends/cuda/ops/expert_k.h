/*
** expert_k.h -- the launcher of the MoE experts' products
** (petrel.expert_linear, petrel.qexpert_linear; meaning: ops.def), called
** from matmul.c and quant.c.  Plain C: the launcher enqueues on `s` and
** returns cudaGetLastError().
*/
#ifndef PETREL_CUDA_EXPERT_K_H
#define PETREL_CUDA_EXPERT_K_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[t] = x[t] @ W[ids[t]]^T for t < T: each row reads its own expert's
 * matrix, dequantized in registers when quantized (W in float exactly as
 * ops.def defines it), sums in float, rounded once.  An id outside
 * [-E, E) gives a row of zeros (the ids live on the device; the CPU
 * kernel fails the node instead).  Strides in elements of their tensor
 * (codes: bytes). */
typedef struct pcu_expert {
    int32_t dtype;              /* x, out and a float W: f32, f16 or bf16 */
    const void *x;              /* (T, K), contiguous along K, row stride ldx */
    int64_t ldx;
    const void *ids;            /* (T) integers of ids_dtype, stride ids_stride */
    int32_t ids_dtype;
    int64_t ids_stride;
    int64_t T, E, N, K;
    void *out;                  /* (T, N) dense */
    int32_t fmt;                /* -1: float W; else a pt_qfmt */
    const void *w;              /* float W (E, N, K) */
    int64_t w_se, w_sn, w_sk;
    int64_t G;                  /* quantized W: group size */
    const uint8_t *codes;       /* (E, N, K * bits / 8), contiguous along its rows */
    int64_t c_se, c_sn;
    const void *scales;         /* (E, N, K / G) of sdt (u8 E4M3 bits for nvfp4) */
    int32_t sdt;
    int64_t s_se, s_sn, s_sg;
    const int8_t *zeros;        /* asymmetric formats: (E, N, K / G); else NULL */
    int64_t z_se, z_sn, z_sg;
    const float *t;             /* nvfp4: the f32 tensor scale (1); else NULL */
} pcu_expert;

/* Bytes of device scratch the grouped form needs for a (rows sorted by
 * expert on the device, each expert's matrix read once per tile of rows:
 * prefill), or 0 where a takes the row form (each row reads its expert's
 * matrix: decode).  The grouped form rounds a dequantized W to the compute
 * dtype for the tensor cores, as quant.c's prefill panels do. */
size_t pcu_expert_scratch(const pcu_expert *a);

/* scratch: pcu_expert_scratch(a) bytes of device memory, or NULL for the
 * row form. */
cudaError_t pcu_expert_launch(cudaStream_t s, const pcu_expert *a, void *scratch);

#ifdef __cplusplus
}
#endif

#endif /* PETREL_CUDA_EXPERT_K_H */
