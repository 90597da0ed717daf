/*
** quant_k.cuh -- device helpers shared by the int4 decode kernels
** (quant_k.cu's ring GEMV, qkv_attn_k.cu's fused q/k/v + attention): f16 /
** bf16 x as 16-bit integer records and the dp4a they are multiplied with.
*/
#ifndef PETREL_CUDA_QUANT_K_CUH
#define PETREL_CUDA_QUANT_K_CUH

#include <stdint.h>

/* Bytes of one record of a 32-element chunk of x (q4_xquant). */
#define Q4_XREC 80

/* d + the dot product of a's unsigned bytes with b's signed bytes. */
__device__ __forceinline__ int q4_dp4a(uint32_t a, uint32_t b, int d) {
    int r;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(d));
    return r;
}

/* f16/bf16 x as integers: the 8 values f of word q (0..3) of a 32-element
 * chunk (4 consecutive lanes hold a chunk, every lane of the warp calls
 * this) go into the chunk's record rec as v = rint(f 32639 / max |f|) =
 * 256 h + l with h and l signed bytes: h at bytes 0..31, l at 32..63, each
 * in the order the codes of B bits are taken (int8: in order; int4: word
 * 2q holds the even elements of nibble word q, 2q + 1 the odd ones; int2:
 * each 16 elements, one code word, as four words, word j holding elements
 * j, j + 4, j + 8, j + 12); at byte 64 the float max|f| / 32639, at 68 and
 * 72 the int sums of v over elements 0..15 and 16..31. */
template <int B> __device__ __forceinline__ void q4_xquant(const float *f, uint8_t *rec, int q, bool in) {
    float m = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; e++) m = fmaxf(m, fabsf(f[e]));
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
    const float inv = m > 0.0f ? 32639.0f / m : 0.0f;
    uint32_t hw[4] = {0, 0, 0, 0}, lw[4] = {0, 0, 0, 0};
    int sum = 0;
#pragma unroll
    for (int e = 0; e < 8; e++) {
        const int v = max(-32639, min(32639, __float2int_rn(f[e] * inv)));
        const int h = (v + 128) >> 8, l = v - h * 256; /* h in [-127, 127], l in [-128, 127] */
        /* int2: element 8 (q % 2) + e of the 16 goes to word e % 4, byte 2 (q % 2) + e / 4 */
        const int wi = B == 4 ? e & 1 : B == 8 ? e >> 2 : e & 3;
        const int sh = B == 4 ? 8 * (e >> 1) : B == 8 ? 8 * (e & 3) : 8 * (2 * (q & 1) + (e >> 2));
        hw[wi] |= (uint32_t)(h & 0xff) << sh;
        lw[wi] |= (uint32_t)(l & 0xff) << sh;
        sum += v;
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1); /* the half's: words q and q ^ 1 */
    if constexpr (B == 2) { /* lanes q and q ^ 1 hold the two halves of each word's bytes */
#pragma unroll
        for (int j = 0; j < 4; j++) {
            hw[j] |= __shfl_xor_sync(0xffffffffu, hw[j], 1);
            lw[j] |= __shfl_xor_sync(0xffffffffu, lw[j], 1);
        }
    }
    if (in) {
        if constexpr (B == 2) {
            if (q % 2 == 0) {
                *(uint4 *)(rec + q * 8) = make_uint4(hw[0], hw[1], hw[2], hw[3]);
                *(uint4 *)(rec + 32 + q * 8) = make_uint4(lw[0], lw[1], lw[2], lw[3]);
            }
        } else {
            *(uint2 *)(rec + q * 8) = make_uint2(hw[0], hw[1]);
            *(uint2 *)(rec + 32 + q * 8) = make_uint2(lw[0], lw[1]);
        }
        if (q == 0) *(float *)(rec + 64) = m / 32639.0f;
        if (q % 2 == 0) *(int *)(rec + 68 + 2 * q) = sum;
    }
}

#endif /* PETREL_CUDA_QUANT_K_CUH */
