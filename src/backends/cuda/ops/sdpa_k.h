/*
** sdpa_k.h -- launcher of the attention kernels (sdpa_k.cu) shared by
** aten.scaled_dot_product_attention (sdpa.c) and petrel.sdpa_cache
** (fused.c).  Plain C: the argument block is passed by value; the
** launcher enqueues on `s` and returns cudaGetLastError().
**
**   out (batch..., L, Ev) = softmax(q @ k^T * scale + mask) @ v
** q (batch..., L, E), k (batch..., S, E), v (batch..., S, Ev), every
** operand strided (0 where broadcast over a batch dim); attn_mask indexed
** at (batch..., i, j): a bool mask keeps where true, a float mask is
** added; causal masks j > i.  A row with every score masked out gives
** zeros; a NaN score makes its row NaN (the CPU oracle's behaviour).
**
** petrel.sdpa_cache's decode step (one new position) can also have the
** launch write the new key and value rows into the caches (pos, kn, vn
** below), saving the separate cache-write kernel.
*/
#ifndef PETREL_CUDA_SDPA_K_H
#define PETREL_CUDA_SDPA_K_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PCU_ATTN_MAX_BATCH 6 /* PETREL_MAX_RANK - 2 */
#define PCU_ATTN_MAX_EV 256  /* value head dim (registers per lane) */

typedef struct pcu_attn {
    int32_t dtype;                        /* of q, k, v and out */
    const void *q, *k, *v;
    void *out;                            /* (batch..., L, Ev) dense */
    int32_t nb;                           /* output batch dims; the last is the head dim */
    int64_t bshape[PCU_ATTN_MAX_BATCH];   /* output batch shape */
    /* each operand's element stride per output batch dim (0 = broadcast) */
    int64_t qb[PCU_ATTN_MAX_BATCH], kb[PCU_ATTN_MAX_BATCH], vb[PCU_ATTN_MAX_BATCH],
        mb[PCU_ATTN_MAX_BATCH];
    /* GQA: output head h reads k head h / kdiv and v head h / vdiv; the
     * `group` (= kdiv = vdiv, or 1) query heads sharing one k/v matrix are
     * processed together so that matrix is read once */
    int64_t kdiv, vdiv, group;
    int64_t L, S, E, Ev;
    int64_t q_sl, q_se, k_ss, k_se, v_ss, v_se; /* row / column strides */
    const void *mask;                     /* NULL = none */
    int32_t mask_dtype;
    int64_t m_sl, m_ss;
    bool causal;
    float scale;
    /* the cache write of petrel.sdpa_cache's decode step, done by the
     * launch when pcu_attn_writes_cache() says it can (pos NULL = none):
     * k and v above are then the caches (written, despite the const), and
     * row pos[0] of each becomes the new row kn resp. vn -- the attention
     * reads that row from kn / vn, never from the cache being written.
     * A position outside [0, S) writes nothing. */
    const void *pos;                      /* (1) int64 */
    int32_t pos_dt;
    /* every position the launch sees is below this (0: unknown; the
     * executor's range, pcu_pos_bound): the decode kernel's rows per warp
     * follow it, its results do not */
    int64_t keys_below;
    const void *kn, *vn;                  /* (batch..., 1, E) and (batch..., 1, Ev) */
    int32_t kn_dt, vn_dt;
    int64_t knb[PCU_ATTN_MAX_BATCH], vnb[PCU_ATTN_MAX_BATCH]; /* per output batch dim, as kb / vb */
    int64_t kn_se, vn_se;                 /* column strides */
    /* petrel.sdpa_cache's rope, applied by the decode launch with the
     * cache write (pcu_attn_rope_ok; rcos NULL = none): q and the new k
     * rotated first as petrel.rope(x, rcos, rsin) would, on their first
     * R channels; cos and sin of the dtype above, their elements
     * contiguous, one row per output batch index (strides rcb, the head's
     * 0: shared by every head; L = 1) */
    const void *rcos, *rsin;
    int64_t R;
    int64_t rcb[PCU_ATTN_MAX_BATCH];
    /* petrel.sdpa_cache's qk_norm, applied by the decode launch before
     * its rope (pcu_attn_norm_ok; qnw NULL = none): q and the new k first
     * become petrel.rms_norm(x, w, neps, nadd_one, norm_dtype) over E,
     * rounded to the dtype above; weights qnw, knw (E) of that dtype,
     * contiguous; norm_dtype none or the dtype above (nround) */
    const void *qnw, *knw;
    float neps;
    bool nadd_one, nround;
} pcu_attn;

/* False when the kernel cannot run this problem (shared memory, grid
 * limits); the launch would then fail with cudaErrorInvalidValue. */
bool pcu_attn_fits(const pcu_attn *a, int sm_count);

/* Can the launch apply the rope set in a (rcos, rsin, R, rcb) itself?
 * Only the decode step that writes the cache (pcu_attn_writes_cache). */
bool pcu_attn_rope_ok(const pcu_attn *a, int sm_count);

/* Can the launch apply the q/k norm set in a (qnw, knw, ...) itself?
 * Only together with its rope (pcu_attn_rope_ok). */
bool pcu_attn_norm_ok(const pcu_attn *a, int sm_count);

/* Device scratch (bytes) the launch needs for split partial results; 0
 * when the problem runs unsplit.  Depends on shapes only. */
size_t pcu_attn_scratch(const pcu_attn *a, int sm_count);

/* Will the launch do the cache write that `pos` describes?  Only for one
 * query position (L == 1) on the decode kernel, an int64 position, and
 * new rows in the caches' dtype that it can read as 16-byte vectors.
 * When false the caller writes the rows first (and clears pos).  Depends
 * on shapes, dtypes and alignment only. */
bool pcu_attn_writes_cache(const pcu_attn *a, int sm_count);

/* Enqueue the attention; `scratch` has pcu_attn_scratch() bytes. */
cudaError_t pcu_attn_launch(cudaStream_t s, const pcu_attn *a, int sm_count, void *scratch);

#ifdef __cplusplus
}
#endif

#endif /* PETREL_CUDA_SDPA_K_H */
