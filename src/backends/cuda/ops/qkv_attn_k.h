/*
** qkv_attn_k.h -- launcher of the decode kernel of petrel.qkv_attn
** (qkv_attn_k.cu): one row of x, its q/k/v projections over int4 weights
** and the attention step over the KV caches in one launch.  Plain C: the
** argument block is passed by value; the launcher enqueues on `s` and
** returns cudaGetLastError().
**
** For each k/v head h: p_i = x @ W_i^T (with the RMSNorm prologue when
** norm_w is set) rounded to the dtype, for the head's G = Hq / Hkv query
** rows of W_0 and its rows of W_1 and W_2; q and the new k normalized per
** head (when qnw is set), then rotated with the rope row (when rcos is
** set); the new k and v rows written into the
** caches at position pos[0] (none outside [0, S)); then each query row's
** softmax(q . k_j * scale + mask_j) over keys j < S, the new row read at
** pos, times v into out.  The projections are also stored (p[0..2]).
*/
#ifndef PETREL_CUDA_QKV_ATTN_K_H
#define PETREL_CUDA_QKV_ATTN_K_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pcu_qkv_attn {
    int32_t dtype;                /* x, scales, projections, caches, out: f16 or bf16 */
    const void *x;                /* (K) */
    int64_t K;
    const void *norm_w;           /* (K) of dtype; NULL: no norm prologue */
    float norm_eps;
    bool norm_add_one;
    int32_t fmt;                  /* PT_QFMT_INT4 or PT_QFMT_INT4S */
    int32_t G;                    /* group size: 32, 64 or 128 */
    const uint8_t *codes[3];      /* (N_i, K / 2), rows dense */
    const void *scales[3];        /* (N_i, K / G) */
    const int8_t *zeros[3];       /* (N_i, K / G); NULL for int4s */
    void *p[3];                   /* (N_i) the projections */
    int32_t Hq, Hkv, E;           /* heads; head dim of q, k and v */
    void *kc, *vc;                /* caches: row j of head h at h * hs + j * ss elements */
    int64_t k_hs, k_ss, v_hs, v_ss, S;
    const void *pos;              /* (1) integer position */
    int32_t pos_dt;
    const void *mask;             /* NULL: none; element (query head, key) at hq * m_hs + j * m_ss */
    int32_t mask_dtype;           /* bool, f32, f16 or bf16 */
    int64_t m_hs, m_ss;
    bool causal;                  /* the one query row (i = 0) sees key 0 only */
    float scale;
    const void *rcos, *rsin;      /* the rope's row (R elements of dtype); NULL: none */
    int32_t R;
    /* q/k norm (sdpa_cache's qk_norm), before the rope: each query row and
     * the new k row become petrel.rms_norm(x, w, neps, nadd_one,
     * norm_dtype) over E, nround: norm_dtype is the dtype (else none);
     * weights qnw, knw (E) of dtype; qnw NULL: none */
    const void *qnw, *knw;
    float neps;
    bool nadd_one, nround;
    int64_t keys_below;           /* every position is below this (0: unknown): the rows
                                     below it are asked of L2 early; results do not depend on it */
    void *out;                    /* (Hq, E) */
} pcu_qkv_attn;

/* Does the kernel take this problem (formats, shapes, alignment, shared
 * memory)?  When false the caller runs the two ops' kernels. */
bool pcu_qkv_attn_fits(const pcu_qkv_attn *a);

cudaError_t pcu_qkv_attn_launch(cudaStream_t s, const pcu_qkv_attn *a);

#ifdef __cplusplus
}
#endif

#endif /* PETREL_CUDA_QKV_ATTN_K_H */
