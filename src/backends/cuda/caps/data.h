/* caps/data.h -- PCU_CAP(OP_ID, dtype mask, kernel family) lines; see ../caps.h.
 * The data-movement families: shape (ops/shape.c), index (ops/index.c) and
 * reduce (ops/reduce.c).
 *
 * Left on the CPU: histc, topk of integers (caps.c), sort, argsort, and boolean / uint8 mask
 * indices (their result shape depends on the mask's values; the mask
 * below excludes those dtypes from every tensor of index.Tensor and
 * index_put, which also keeps bool and uint8 `self` tensors there).
 * Fails at run time on CUDA (a check the table cannot express): diff of
 * order > 16, one_hot without num_classes. */
#define PCU_DT_NO_MASKS (PCU_DT_ALL & ~(PCU_DT(BOOL) | PCU_DT(U8)))

/* ---- shape ---------------------------------------------------------------- */
PCU_CAP(CAT, PCU_DT_ALL, shape)
PCU_CAP(STACK, PCU_DT_ALL, shape)
PCU_CAP(REPEAT, PCU_DT_ALL, shape)
PCU_CAP(REPEAT_INTERLEAVE, PCU_DT_ALL, shape)
PCU_CAP(TRIL, PCU_DT_ALL, shape)
PCU_CAP(TRIU, PCU_DT_ALL, shape)
PCU_CAP(ROLL, PCU_DT_ALL, shape)
PCU_CAP(FLIP, PCU_DT_ALL, shape)
PCU_CAP(DIFF, PCU_DT_ALL, shape)
PCU_CAP(CONSTANT_PAD_ND, PCU_DT_ALL, shape)
PCU_CAP(PAD, PCU_DT_ALL, shape)

/* ---- index ---------------------------------------------------------------- */
PCU_CAP(EMBEDDING, PCU_DT_ALL, index)
PCU_CAP(INDEX_TENSOR, PCU_DT_NO_MASKS, index)
PCU_CAP(INDEX_PUT, PCU_DT_NO_MASKS, index)
PCU_CAP(INDEX_PUT_, PCU_DT_NO_MASKS, index)
PCU_CAP(INDEX_SELECT, PCU_DT_ALL, index)
PCU_CAP(GATHER, PCU_DT_ALL, index)
PCU_CAP(INDEX_COPY, PCU_DT_ALL, index)
PCU_CAP(INDEX_COPY_, PCU_DT_ALL, index)
PCU_CAP(INDEX_ADD, PCU_DT_ALL, index)
PCU_CAP(INDEX_ADD_, PCU_DT_ALL, index)
PCU_CAP(SLICE_SCATTER, PCU_DT_ALL, index)
PCU_CAP(SELECT_SCATTER, PCU_DT_ALL, index)
PCU_CAP(SCATTER_SRC, PCU_DT_ALL, index)
PCU_CAP(SCATTER_VALUE, PCU_DT_ALL, index)
PCU_CAP(TOPK, PCU_DT_FLOAT | PCU_DT(I64), index) /* + its i64 indices; float inputs only (caps.c) */
PCU_CAP(SCATTER_ADD, PCU_DT_ALL, index)
PCU_CAP(SCATTER__SRC, PCU_DT_ALL, index)
PCU_CAP(SCATTER__VALUE, PCU_DT_ALL, index)
PCU_CAP(SCATTER_ADD_, PCU_DT_ALL, index)
PCU_CAP(ONE_HOT, PCU_DT_INT, index)

/* ---- reduce --------------------------------------------------------------- */
PCU_CAP(SUM, PCU_DT_ALL, reduce)
PCU_CAP(SUM_DIM, PCU_DT_ALL, reduce)
PCU_CAP(MEAN, PCU_DT_ALL, reduce)
PCU_CAP(MEAN_DIM, PCU_DT_ALL, reduce)
PCU_CAP(PROD, PCU_DT_ALL, reduce)
PCU_CAP(PROD_DIM, PCU_DT_ALL, reduce)
PCU_CAP(AMAX, PCU_DT_ALL, reduce)
PCU_CAP(AMIN, PCU_DT_ALL, reduce)
PCU_CAP(MAX, PCU_DT_ALL, reduce)
PCU_CAP(MIN, PCU_DT_ALL, reduce)
PCU_CAP(MAX_DIM, PCU_DT_ALL, reduce)
PCU_CAP(MIN_DIM, PCU_DT_ALL, reduce)
PCU_CAP(ARGMAX, PCU_DT_ALL, reduce)
PCU_CAP(ARGMIN, PCU_DT_ALL, reduce)
PCU_CAP(ANY, PCU_DT_ALL, reduce)
PCU_CAP(ANY_DIM, PCU_DT_ALL, reduce)
PCU_CAP(ANY_DIMS, PCU_DT_ALL, reduce)
PCU_CAP(ALL, PCU_DT_ALL, reduce)
PCU_CAP(ALL_DIM, PCU_DT_ALL, reduce)
PCU_CAP(ALL_DIMS, PCU_DT_ALL, reduce)
PCU_CAP(VAR_CORRECTION, PCU_DT_FLOAT64, reduce)
PCU_CAP(VAR_DIM, PCU_DT_FLOAT64, reduce)
PCU_CAP(STD_CORRECTION, PCU_DT_FLOAT64, reduce)
PCU_CAP(STD_DIM, PCU_DT_FLOAT64, reduce)
PCU_CAP(VAR_MEAN_CORRECTION, PCU_DT_FLOAT64, reduce)
PCU_CAP(VAR_MEAN_DIM, PCU_DT_FLOAT64, reduce)
PCU_CAP(LOGSUMEXP, PCU_DT_ALL, reduce)
PCU_CAP(VECTOR_NORM, PCU_DT_FLOAT64, reduce)
PCU_CAP(CUMSUM, PCU_DT_ALL, reduce)
PCU_CAP(SOFTMAX_, PCU_DT_FLOAT64, reduce)
PCU_CAP(LOG_SOFTMAX_, PCU_DT_FLOAT64, reduce)
PCU_CAP(SOFTMAX_INT, PCU_DT_FLOAT64, reduce)
PCU_CAP(LOG_SOFTMAX_INT, PCU_DT_FLOAT64, reduce)
