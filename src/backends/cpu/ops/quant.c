/*
** quant.c -- CPU kernels of the "quant" family: petrel.qlinear and
** petrel.qembedding, the linears and the embedding over quantized weights
** (formats and meaning: ops.def).  Part of the CPU backend.
*/
#include "../cpu.h"

petrel_status cpu_k_quant(pt_exec *ex, const pt_node *n) {
    (void)n;
    return pk_fail(ex, PETREL_ERR_UNSUPPORTED, "quantized kernels are not built yet");
}
