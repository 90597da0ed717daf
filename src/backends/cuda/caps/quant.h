/* caps/quant.h -- PCU_CAP(OP_ID, dtype mask, kernel family) lines; see ../caps.h.
 * The quant family (ops/quant.c): petrel.qlinear, petrel.qembedding,
 * petrel.qexpert_linear and petrel.qkv_attn
 * over quantized weights -- u8 codes, i8 zero points, nvfp4's u8 scales
 * and f32 tensor scale -- with f32 / f16 / bf16 activations and outputs.
 *
 * Fails at run time on CUDA (checks the table cannot express): a qlinear
 * input or output that is not a float, outputs of another dtype than the
 * input, a Python number as residual or indices, dims beyond 2^31. */
#define PCU_DT_QLINEAR (PCU_DT_FLOAT | PCU_DT(U8) | PCU_DT(I8))
#define PCU_DT_QEMBEDDING (PCU_DT_FLOAT | PCU_DT_INT)                   /* + any integer indices */

PCU_CAP(PETREL_QLINEAR, PCU_DT_QLINEAR, quant)
PCU_CAP(PETREL_QEMBEDDING, PCU_DT_QEMBEDDING, quant)
PCU_CAP(PETREL_QEXPERT_LINEAR, PCU_DT_QLINEAR | PCU_DT_INT, quant)   /* + integer ids */
/* + bool masks, integer positions */
PCU_CAP(PETREL_QKV_ATTN, PCU_DT_QLINEAR | PCU_DT(BOOL) | PCU_DT(I64) | PCU_DT(I32) | PCU_DT(I16), quant)
