/*
** argmax_k.h -- the launcher of the device argmax (argmax_k.cu) behind the
** executor's output argmax (greedy decoding reads one index instead of the
** logits).  Plain C.
*/
#ifndef PETREL_CUDA_ARGMAX_K_H
#define PETREL_CUDA_ARGMAX_K_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where the argmax goes: *out (device memory, or mapped host memory) =
 * the index; when next is set, also the integer of dtype next_dt there
 * (int64 or int32), and the integer at step (when set) grows by one.
 * work: 16 bytes of device memory, zero before the first launch (each
 * launch leaves it zero). */
typedef struct pcu_argmax_out {
    int64_t *out;
    void *work;
    void *next, *step;
    int32_t next_dt, step_dt;
} pcu_argmax_out;
/* The index of the largest of x[0], x[stride], ... x[(n-1) * stride] (f32
 * / f16 / bf16, n < 2^32), as o says: lowest index on ties, NaN ignored,
 * -1 when all are NaN.  One kernel. */
cudaError_t pcu_argmax_launch(cudaStream_t s, int32_t dtype, const void *x, int64_t stride, int64_t n,
                              const pcu_argmax_out *o);
/* Top-k of x / temperature over the same kind of row: out (device, k
 * 64-bit keys) = the k largest keys of the values (runtime/kernel.h's
 * pt_topk_key: larger value first, lower index on ties), largest first,
 * then keys of 0 when the row has fewer than k numbers (NaN is none).
 * work: PCU_TOPK_MERGE keys of device memory.  Takes rows that
 * pcu_topk_fits. */
#define PCU_TOPK_MERGE 8192
bool pcu_topk_fits(int64_t n, int32_t k);
cudaError_t pcu_topk_launch(cudaStream_t s, int32_t dtype, const void *x, int64_t stride, int64_t n, int32_t k,
                            float temperature, void *work, void *out);

#ifdef __cplusplus
}
#endif

#endif /* PETREL_CUDA_ARGMAX_K_H */
