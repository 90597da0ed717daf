/* caps/dense.h -- PCU_CAP(OP_ID, dtype mask, kernel family) lines; see ../caps.h.
 * The dense families: matmul (ops/matmul.c), norm (ops/norm.c), sdpa
 * (ops/sdpa.c) and fused (ops/fused.c), for f32 / f16 / bf16.
 *
 * Left on the CPU: integer and f64 products and norms, and
 * transformers.grouped_mm_fallback (its row groups come from tensor values).
 * Fails at run time on CUDA (checks the table cannot express): operands of
 * a matmul / attention whose dtype differs from the output's, a Python
 * number as addend, mask or parameter, value head dims above 256 (query
 * head dims above about 1000), dims or batches beyond 2^31, and attention
 * dropout (as on the CPU). */
#define PCU_DT_ATTN (PCU_DT_FLOAT | PCU_DT(BOOL))                            /* + bool masks */
#define PCU_DT_ATTN_CACHE (PCU_DT_ATTN | PCU_DT(I64) | PCU_DT(I32) | PCU_DT(I16)) /* + positions */

/* ---- matmul ---------------------------------------------------------------- */
PCU_CAP(MM, PCU_DT_FLOAT, matmul)
PCU_CAP(BMM, PCU_DT_FLOAT, matmul)
PCU_CAP(ADDMM, PCU_DT_FLOAT, matmul)
PCU_CAP(BADDBMM, PCU_DT_FLOAT, matmul)
PCU_CAP(MATMUL, PCU_DT_FLOAT, matmul)
PCU_CAP(LINEAR, PCU_DT_FLOAT, matmul)
PCU_CAP(PETREL_LINEAR_N, PCU_DT_FLOAT, matmul)
PCU_CAP(PETREL_GATED_LINEAR, PCU_DT_FLOAT, matmul)
PCU_CAP(PETREL_LINEAR_ADD, PCU_DT_FLOAT, matmul)
PCU_CAP(PETREL_EXPERT_LINEAR, PCU_DT_FLOAT | PCU_DT_INT, matmul) /* + integer ids */

/* ---- norm ------------------------------------------------------------------ */
PCU_CAP(LAYER_NORM, PCU_DT_FLOAT, norm)
PCU_CAP(NATIVE_LAYER_NORM, PCU_DT_FLOAT, norm)
PCU_CAP(RMS_NORM, PCU_DT_FLOAT, norm)
PCU_CAP(FUSED_RMS_NORM, PCU_DT_FLOAT, norm)
PCU_CAP(BATCH_NORM, PCU_DT_FLOAT, norm)
PCU_CAP(BATCH_NORM_NO_TRAINING, PCU_DT_FLOAT, norm)
PCU_CAP(GROUP_NORM, PCU_DT_FLOAT, norm)
PCU_CAP(NATIVE_GROUP_NORM, PCU_DT_FLOAT, norm)

/* ---- sdpa ------------------------------------------------------------------ */
PCU_CAP(SDPA, PCU_DT_ATTN, sdpa)

/* ---- fused ----------------------------------------------------------------- */
PCU_CAP(PETREL_RMS_NORM, PCU_DT_FLOAT, fused)
PCU_CAP(PETREL_ROPE, PCU_DT_FLOAT, fused) /* rotate-half only: interleaved=True stays on the CPU (caps.c) */
PCU_CAP(PETREL_SDPA_CACHE, PCU_DT_ATTN_CACHE, fused)
PCU_CAP(PETREL_ROPE_TABLE, PCU_DT_FLOAT64 | PCU_DT_INT, fused) /* float inv_freq and tables, any positions */
