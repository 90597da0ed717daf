/*
** quant_k.cu -- device kernels of the "quant" family (quant.c): products
** and embeddings over quantized weights.  Formats, layout and meaning:
** ops.def ("Quantized weights"); the byte layout and the decoders shared
** with the CPU: core/quant_fmt.h.
**
** Decode GEMV (1..8 rows of x), laid out like matmul_k.cu's: a block owns
** RB consecutive weight rows (gated: the same rows of gate and up), its
** threads split a packed row into 16-byte chunks of 16 int8, 32 int4 or
** nvfp4, or 64 int2 codes (thread t takes chunks t, t + threads, ...).
** Each thread first issues the loads of CPT chunks of all its R rows (at
** decode, 8 independent 16-byte loads in flight for an LM head, one chunk
** of each of its rows for smaller weights: qgemv_rows) with the scale
** and zero point of each chunk's group (of each half's for int2 and
** nvfp4, whose groups may be half a chunk), all before waiting for the
** kernel before (programmatic dependent launch, dense_k.cuh: they are
** program constants); then it reads x with plain loads, dequantizes in
** registers and accumulates in fp32.  So every code is read once and the group
** parameters once per group.  The block reduces its partial sums and
** applies the fused linears' rounding points as the bf16 GEMV does.
**
** Each weight is the float ops.def defines, bit for bit the CPU's:
**  - integer formats: a code u at bit p of a 16-bit half word goes into a
**    float's mantissa with one LOP3, f = 2^23 + u 2^p, and one fma takes
**    f 2^-p - 2^(23-p) = u exactly; then w = (u - zp') * s with
**    zp' = zp - qmin.  With f16/bf16 scales that is fma(u, s, -zp' s),
**    one rounding of the exact value because zp' s (at most 8 + 11
**    significant bits) is exact; with f32 scales (u - zp') * s.
**  - nvfp4: the E2M1 magnitude bits go to a float's bits 22-24 (its
**    exponent field then holds E2M1's exponent, a denormal for e = 0) and
**    the sign to bit 31; * 2^126 rescales exactly (explicit PTX without
**    .ftz, so a flush-to-zero build cannot break it); w = (e2m1 * s) * t.
** That is 4 ALU instructions per weight and row (int formats, f16/bf16),
** 8 for nvfp4.  By that count int4 needs about 8 instructions per byte
** of codes, which an H100/H200 issues at about 80% of HBM bandwidth, so
** int4 is expected to be bound by instruction issue, int8 by memory.
** (Taking the scale out of the group's dot product would halve it, but
** then W is no longer rounded as ops.def defines it.)
**
** Prefill dequantizes weight panels (qdequant_kernel) that cuBLAS
** multiplies (quant.c); the embedding gathers and dequantizes rows.  Both
** compute each weight with quant_fmt.h's decoders exactly as the CPU's
** reference does.
*/
#include <type_traits>

#include "../../../core/quant_fmt.h"
#include "data_k.cuh"
#include "dense_k.cuh"
#include "quant_k.h"

#define QK_MAX_THREADS 256

/* How the GEMV decodes a format: integer codes of 8, 4 or 2 bits, or E2M1. */
enum { QK_INT8, QK_INT4, QK_INT2, QK_FP4 };

template <int KIND> struct qk_kind {
    static constexpr int bits = KIND == QK_INT8 ? 8 : KIND == QK_INT2 ? 2 : 4;
    static constexpr int C = 128 / bits;  /* codes per 16-byte chunk */
    static constexpr int HW = C / 8;      /* codes per 16-bit half word */
    /* parameter sets per chunk: int2 and nvfp4 groups may be half a chunk */
    static constexpr int GPC = KIND == QK_INT2 || KIND == QK_FP4 ? 2 : 1;
};

static int qk_kind_of(int fmt) {
    switch (fmt) {
    case PT_QFMT_INT8:
    case PT_QFMT_INT8S: return QK_INT8;
    case PT_QFMT_INT4:
    case PT_QFMT_INT4S: return QK_INT4;
    case PT_QFMT_INT2:
    case PT_QFMT_INT2S: return QK_INT2;
    default: return QK_FP4;
    }
}

/* 2^p for -126 <= p <= 127, built from its bits (a constant when p is). */
__device__ __forceinline__ float qk_pow2(int p) { return __int_as_float((127 + p) << 23); }

/* ---- decoding in registers ------------------------------------------------------ */

/* Codes e = 0 .. 16 / BITS - 1 of the half word h (code e at bit e * BITS,
 * higher bits ignored) as the exact floats u. */
template <int BITS> __device__ __forceinline__ void qk_codes(uint32_t h, float *u) {
    constexpr uint32_t mask = (1u << BITS) - 1u;
#pragma unroll
    for (int e = 0; e < 16 / BITS; e++)
        u[e] = fmaf(__uint_as_float((h & (mask << (e * BITS))) | 0x4b000000u), qk_pow2(-e * BITS),
                    -qk_pow2(23 - e * BITS));
}

/* a * b rounded to nearest, denormal operands kept whatever -ftz says. */
__device__ __forceinline__ float qk_mul_keep_denormals(float a, float b) {
    float r;
    asm("mul.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}

/* The E2M1 code at bits P .. P + 3 of v as its value (pt_e2m1_to_float). */
template <int P> __device__ __forceinline__ float qk_e2m1(uint32_t v) {
    uint32_t mag;
    if constexpr (P <= 22) mag = (v << (22 - P)) & 0x01c00000u;
    else mag = (v >> (P - 22)) & 0x01c00000u;
    uint32_t sign = (v << (28 - P)) & 0x80000000u;
    return qk_mul_keep_denormals(__uint_as_float(mag | sign), qk_pow2(126));
}

/* A group's scale as float: the compute dtype's value, or E4M3 (nvfp4). */
__device__ __forceinline__ float qk_scale(float v) { return v; }
__device__ __forceinline__ float qk_scale(__half v) { return __half2float(v); }
__device__ __forceinline__ float qk_scale(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float qk_scale(uint8_t v) { return pt_e4m3_to_float(v); }

/* N consecutive elements of x at p (aligned to their size, at least 4
 * bytes) as floats: plain loads (x comes from the kernel before). */
template <typename T, int N> __device__ __forceinline__ void qk_load_x(const T *p, float *f) {
    constexpr int B = N * (int)sizeof(T);
    if constexpr (B >= 16) {
#pragma unroll
        for (int i = 0; i < B / 16; i++) dn_unpack(((const uint4 *)p)[i], f + i * (16 / (int)sizeof(T)), T());
    } else if constexpr (B == 8) {
        uint2 u = *(const uint2 *)p;
        const T *t = (const T *)&u;
#pragma unroll
        for (int i = 0; i < N; i++) f[i] = dn_f32(t[i]);
    } else {
        static_assert(B == 4, "x pieces are 4, 8 or a multiple of 16 bytes");
        uint32_t u = *(const uint32_t *)p;
        const T *t = (const T *)&u;
#pragma unroll
        for (int i = 0; i < N; i++) f[i] = dn_f32(t[i]);
    }
}

/* 32-bit word i of a 16-byte chunk. */
__device__ __forceinline__ uint32_t qk_word(const uint4 &v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

/* ---- decode GEMV ------------------------------------------------------------------ */

/* Weight and local row of row n of the stacked weights (GATED: of w[k]). */
__device__ __forceinline__ int qk_seg(const pcu_qgemv &g, int64_t n) {
    int s = 0;
    while (s + 1 < g.nw && n >= g.seg_start[s + 1]) s++;
    return s;
}

/* Chunks of each row a thread loads per step: LOADS loads in all for one
 * row of x (decode; qgemv_rows picks LOADS); one for several (their x
 * values take the registers). */
__host__ __device__ constexpr int qk_cpt(int MR, int R, int LOADS) { return MR > 1 || R >= LOADS ? 1 : LOADS / R; }

/* NG = 2: gated, the block also streams the same rows of the up weight.
 * Decode (MR = 1) gets at most 128 registers: 16 warps of them keep 64 KB
 * of loads in flight per multiprocessor.  Eight rows of x need more. */
template <typename T, int KIND, int MR, int RB, int NG, bool NORM, int LOADS>
__global__ void __launch_bounds__(QK_MAX_THREADS, MR == 1 ? 2 : 1) qgemv_kernel(pcu_qgemv g) {
    using F = qk_kind<KIND>;
    using S = typename std::conditional<KIND == QK_FP4, uint8_t, T>::type; /* a scale as stored */
    constexpr int R = RB * NG, CPT = qk_cpt(MR, R, LOADS); /* rows per block, chunks per row and step */
    constexpr int WPG = 4 / F::GPC;                      /* words per parameter set */
    const T *x = (const T *)g.x;
    const int64_t nch = g.K / F::C, n0 = (int64_t)blockIdx.x * RB;
    const int nt = blockDim.x;
    const int qmin = pt_qfmt_qmin((pt_qfmt)g.fmt);
    const bool asym = pt_qfmt_asym((pt_qfmt)g.fmt);

    /* row r of the block: codes, scales and zero points (gated: then the same rows of up) */
    const uint8_t *crow[R];
    const S *srow[R];
    const int8_t *zrow[R];
    float tsc[R];
#pragma unroll
    for (int r = 0; r < RB; r++) {
        int64_t n = n0 + r < g.N ? n0 + r : g.N - 1; /* past the end: a valid row, never stored */
#pragma unroll
        for (int k = 0; k < NG; k++) {
            int wi = NG == 2 ? k : qk_seg(g, n);
            const pcu_qweight &w = g.w[wi];
            int64_t nl = n - g.seg_start[wi];
            crow[k * RB + r] = w.codes + nl * w.code_rs;
            srow[k * RB + r] = (const S *)w.scales + nl * w.s_rs;
            zrow[k * RB + r] = asym ? w.zeros + nl * w.z_rs : nullptr;
            tsc[k * RB + r] = 1.0f;
        }
    }
    float acc[MR][R];
#pragma unroll
    for (int m = 0; m < MR; m++)
#pragma unroll
        for (int r = 0; r < R; r++) acc[m][r] = 0.0f;

    bool waited = !g.w_const;
    if (waited) dn_pdl_wait(); /* computed weights: they may not be written yet */
    if constexpr (KIND == QK_FP4) {
#pragma unroll
        for (int r = 0; r < RB; r++)
#pragma unroll
            for (int k = 0; k < NG; k++) {
                int64_t n = n0 + r < g.N ? n0 + r : g.N - 1;
                tsc[k * RB + r] = *g.w[NG == 2 ? k : qk_seg(g, n)].t;
            }
    }
    for (int64_t c0 = threadIdx.x; c0 < nch; c0 += (int64_t)nt * CPT) {
        /* all loads of the step first: codes, then each group's scale and
         * zero point as ps = s, pz = zp' s (f16/bf16), zp' (f32) */
        uint4 cv[R][CPT];
        float ps[R][CPT][F::GPC], pz[R][CPT][F::GPC];
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int q = 0; q < CPT; q++) {
                int64_t c = c0 + (int64_t)q * nt;
                bool in = c < nch;
                cv[r][q] = in ? __ldcs((const uint4 *)(crow[r] + c * 16)) /* read once: don't keep */
                              : make_uint4(0, 0, 0, 0);
#pragma unroll
                for (int h = 0; h < F::GPC; h++) {
                    int64_t grp = in ? (c * F::C + h * (F::C / F::GPC)) >> g.lg_group : 0;
                    float s = qk_scale(srow[r][grp]);
                    ps[r][q][h] = s;
                    if constexpr (KIND != QK_FP4) {
                        float zp = (float)((asym ? (int)zrow[r][grp] : 0) - qmin);
                        pz[r][q][h] = sizeof(T) == 2 ? zp * s : zp;
                    }
                }
            }
        if (!waited) { /* the weights are constant: only x comes from the kernel before */
            dn_pdl_wait();
            waited = true;
        }
#pragma unroll
        for (int q = 0; q < CPT; q++) {
            int64_t c = c0 + (int64_t)q * nt;
            if (c >= nch) continue;
#pragma unroll
            for (int wd = 0; wd < 4; wd++) {
                const int h = wd / WPG;
#pragma unroll
                for (int hw = 0; hw < 2; hw++) {
                    const int64_t k = c * F::C + (2 * wd + hw) * F::HW; /* first code of the half word */
                    float xv[MR][F::HW];
#pragma unroll
                    for (int m = 0; m < MR; m++)
                        if (m < g.M) qk_load_x<T, F::HW>(x + m * g.ldx + k, xv[m]);
                    if (NORM) { /* x * nw (or x * (1 + nw)) rounded once to T, as the float GEMV */
                        float nv[F::HW];
                        qk_load_x<T, F::HW>((const T *)g.norm_w + k, nv);
#pragma unroll
                        for (int e = 0; e < F::HW; e++)
                            xv[0][e] = dn_round<T>(g.norm_add_one ? fmaf(xv[0][e], nv[e], xv[0][e]) : xv[0][e] * nv[e]);
                    }
#pragma unroll
                    for (int r = 0; r < R; r++) {
                        uint32_t half = qk_word(cv[r][q], wd) >> (16 * hw);
                        float wv[F::HW];
                        if constexpr (KIND == QK_FP4) {
                            static_assert(F::HW == 4, "four E2M1 codes per half word");
                            wv[0] = qk_e2m1<0>(half) * ps[r][q][h] * tsc[r];
                            wv[1] = qk_e2m1<4>(half) * ps[r][q][h] * tsc[r];
                            wv[2] = qk_e2m1<8>(half) * ps[r][q][h] * tsc[r];
                            wv[3] = qk_e2m1<12>(half) * ps[r][q][h] * tsc[r];
                        } else {
                            float u[F::HW];
                            qk_codes<F::bits>(half, u);
#pragma unroll
                            for (int e = 0; e < F::HW; e++)
                                wv[e] = sizeof(T) == 2 ? fmaf(u[e], ps[r][q][h], -pz[r][q][h])
                                                       : (u[e] - pz[r][q][h]) * ps[r][q][h];
                        }
#pragma unroll
                        for (int m = 0; m < MR; m++) {
                            if (m < g.M) {
#pragma unroll
                                for (int e = 0; e < F::HW; e++) acc[m][r] = fmaf(wv[e], xv[m][e], acc[m][r]);
                            }
                        }
                    }
                }
            }
        }
    }

    if (!waited) dn_pdl_wait();
    dn_pdl_release(); /* what is left is the reduction and the stores */

    float ss = 0.0f; /* NORM: x's sum of squares, read again (from cache) now that the loop's registers are free */
    if (NORM)
        for (int64_t i = threadIdx.x; i < g.K / dn_vec<T>::n; i += nt) {
            float xf[dn_vec<T>::n];
            dn_unpack(*(const uint4 *)(x + i * dn_vec<T>::n), xf, T());
#pragma unroll
            for (int e = 0; e < dn_vec<T>::n; e++) ss = fmaf(xf[e], xf[e], ss);
        }
    __shared__ float red[QK_MAX_THREADS / 32][MR * R + 1]; /* then the sum of squares */
    __shared__ float rstd;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarp = nt >> 5;
#pragma unroll
    for (int m = 0; m < MR; m++)
#pragma unroll
        for (int r = 0; r < R; r++) {
            float t = dn_warp_sum(acc[m][r]);
            if (lane == 0) red[warp][m * R + r] = t;
        }
    if (NORM) {
        float t = dn_warp_sum(ss);
        if (lane == 0) red[warp][MR * R] = t;
    }
    __syncthreads();
    if (NORM) {
        if (threadIdx.x == 0) {
            float t = 0.0f;
            for (int k = 0; k < nwarp; k++) t += red[k][MR * R];
            rstd = 1.0f / sqrtf(t / (float)g.K + g.norm_eps);
        }
        __syncthreads();
    }
    for (int t = threadIdx.x; t < MR * RB; t += nt) {
        int m = t / RB, r = t % RB;
        int64_t n = n0 + r;
        if (m >= g.M || n >= g.N) continue;
        float s = 0.0f, s2 = 0.0f;
        for (int k = 0; k < nwarp; k++) {
            s += red[k][m * R + r];
            if (NG == 2) s2 += red[k][m * R + RB + r];
        }
        if (NORM) s *= rstd, s2 *= rstd;
        if (NG == 2) {
            float v = dn_round<T>(pcu_act(dn_round<T>(s), g.act)) * dn_round<T>(s2);
            ((T *)g.out[0])[m * g.N + n] = dn_from<T>(v);
        } else if (g.mode == PCU_GEMV_RESID) {
            float v = dn_round<T>(s) + dn_load(g.res, g.res_dtype, m * g.res_sm + n * g.res_sn);
            ((T *)g.out[0])[m * g.N + n] = dn_from<T>(v);
        } else {
            int sg = qk_seg(g, n);
            int64_t wn = g.seg_start[sg + 1] - g.seg_start[sg];
            ((T *)g.out[sg])[m * wn + n - g.seg_start[sg]] = dn_from<T>(s);
        }
    }
}

template <typename T, int KIND, int MR, int RB, int NG, bool NORM, int LOADS>
static cudaError_t qgemv_go(cudaStream_t s, const pcu_qgemv &g) {
    constexpr int CPT = qk_cpt(MR, RB * NG, LOADS);
    int64_t per = (g.K / qk_kind<KIND>::C + CPT - 1) / CPT; /* chunks of a row per step */
    int threads = per >= QK_MAX_THREADS ? QK_MAX_THREADS : (int)((per + 31) / 32 * 32);
    if (threads < 32) threads = 32;
    return dn_launch_pdl(qgemv_kernel<T, KIND, MR, RB, NG, NORM, LOADS>, dim3((unsigned)((g.N + RB - 1) / RB)),
                         dim3((unsigned)threads), 0, s, g);
}

/* One row of x (decode): the rows a block takes and the 16-byte code
 * loads a thread has in flight (LOADS) by the weight's size.  Measured on
 * an H200 (bench_quant, Llama-3.2-1B's shapes, int4 / int8 groups of 32,
 * us per launch; every check passed in each build):
 *
 *   rows, loads         q/k/v        o + res      gate, up      down + res    LM head
 *   4, 8 (2 chunks)   6.15 / 6.12  5.78 / 5.33  16.02 / 18.71  9.33 / 12.76  107.0 / 138.6
 *   4, 4 (1 chunk)    5.21 / 6.65  4.54 / 4.48  15.96 / 18.71 10.90 / 11.56  123.4 / 148.6
 *   2, 4 (2 chunks)   5.84 / 6.06  4.81 / 4.74  14.84 / 17.11 10.59 / 13.07  107.9 / 150.3
 *   2, 2 (1 chunk)    4.91 / 5.55  3.88 / 3.84  14.80 / 17.13  9.19 / 10.11  118.0 / 148.0
 *   1, 1              6.96 / 6.63  5.25 / 5.32  16.55 / 18.41 13.62 / 13.40  158.0 / 180.5
 *   8, 4              7.46 / 7.53  6.84 / 6.19  18.21 / 24.35 10.96 / 12.66  122.0 / 173.7
 *
 * So an LM head (32768 rows or more, gate and up counted together) takes
 * 4 rows and 8 loads, other weights of 8 rows or more per multiprocessor
 * 2 rows and one chunk of each (Llama-3.2-1B's step: int4 703 -> 631 us
 * of GEMVs, int8 825 -> 725), fewer rows 1 row and 8 loads.  Up to 8 rows
 * of x (short prefill chunks, not tuned): one weight row per block. */
#define QK_WIDE_ROWS 32768

template <typename T, int KIND, int NG, bool NORM>
static cudaError_t qgemv_decode(cudaStream_t s, const pcu_qgemv &g, int sm_count) {
    if (g.N * NG >= QK_WIDE_ROWS) return qgemv_go<T, KIND, 1, 4, NG, NORM, 8>(s, g);
    if (g.N >= 8LL * sm_count) return qgemv_go<T, KIND, 1, 2, NG, NORM, 2>(s, g);
    return qgemv_go<T, KIND, 1, 1, NG, NORM, 8>(s, g);
}

template <typename T, int KIND, int NG>
static cudaError_t qgemv_rows(cudaStream_t s, const pcu_qgemv &g, int sm_count) {
    if (g.norm) return qgemv_decode<T, KIND, NG, true>(s, g, sm_count);
    if (g.M > 1) return qgemv_go<T, KIND, PCU_QGEMV_MAX_M, 1, NG, false, 8>(s, g);
    return qgemv_decode<T, KIND, NG, false>(s, g, sm_count);
}

template <typename T, int KIND> static cudaError_t qgemv_mode(cudaStream_t s, const pcu_qgemv &g, int sm_count) {
    return g.mode == PCU_GEMV_GATED ? qgemv_rows<T, KIND, 2>(s, g, sm_count) : qgemv_rows<T, KIND, 1>(s, g, sm_count);
}

template <typename T> static cudaError_t qgemv_kind(cudaStream_t s, const pcu_qgemv &g, int sm_count) {
    switch (qk_kind_of(g.fmt)) {
    case QK_INT8: return qgemv_mode<T, QK_INT8>(s, g, sm_count);
    case QK_INT4: return qgemv_mode<T, QK_INT4>(s, g, sm_count);
    case QK_INT2: return qgemv_mode<T, QK_INT2>(s, g, sm_count);
    default: return qgemv_mode<T, QK_FP4>(s, g, sm_count);
    }
}

/* Codes per chunk and parameter sets per chunk of format fmt. */
static void qk_chunk(int fmt, int *C, int *GPC) {
    switch (qk_kind_of(fmt)) {
    case QK_INT8: *C = qk_kind<QK_INT8>::C, *GPC = qk_kind<QK_INT8>::GPC; break;
    case QK_INT4: *C = qk_kind<QK_INT4>::C, *GPC = qk_kind<QK_INT4>::GPC; break;
    case QK_INT2: *C = qk_kind<QK_INT2>::C, *GPC = qk_kind<QK_INT2>::GPC; break;
    default: *C = qk_kind<QK_FP4>::C, *GPC = qk_kind<QK_FP4>::GPC; break;
    }
}

extern "C" bool pcu_qgemv_fits(const pcu_qgemv *g) {
    if (g->fmt < 0 || g->fmt >= PT_QFMT_COUNT || g->M < 1 || g->M > PCU_QGEMV_MAX_M || g->K < 1 || !g->x)
        return false;
    if (g->dtype != PETREL_DTYPE_F32 && g->dtype != PETREL_DTYPE_F16 && g->dtype != PETREL_DTYPE_BF16) return false;
    if (g->mode == PCU_GEMV_PLAIN ? g->nw < 1 || g->nw > PCU_QGEMV_MAX_W
                                  : g->nw != (g->mode == PCU_GEMV_GATED ? 2 : 1) || !g->out[0])
        return false;
    if (g->mode == PCU_GEMV_RESID && !g->res) return false;
    if (g->norm && (g->M != 1 || g->mode == PCU_GEMV_RESID || !g->norm_w || (uintptr_t)g->norm_w % 16)) return false;
    int C, GPC;
    qk_chunk(g->fmt, &C, &GPC);
    int64_t es = g->dtype == PETREL_DTYPE_F32 ? 4 : 2, ng = g->G > 0 ? g->K / g->G : 0;
    bool fp4 = g->fmt == PT_QFMT_NVFP4;
    if (g->G < C / GPC || (g->G & (g->G - 1)) || g->K % g->G || g->K % C) return false;
    if ((uintptr_t)g->x % 16 || (g->ldx * es) % 16 || g->ldx < g->K) return false;
    for (int i = 0; i < g->nw; i++) {
        const pcu_qweight *w = &g->w[i];
        if (w->N < 0 || (w->N > 0 && (!w->codes || !w->scales)) || (uintptr_t)w->codes % 16 || w->code_rs % 16 ||
            w->sdt != (fp4 ? PETREL_DTYPE_U8 : g->dtype) || (w->s_cs != 1 && ng > 1) ||
            pt_qfmt_asym((pt_qfmt)g->fmt) != (w->zeros != NULL) || (w->zeros && w->z_cs != 1 && ng > 1) ||
            fp4 != (w->t != NULL) || (g->mode == PCU_GEMV_PLAIN && w->N > 0 && !g->out[i]))
            return false;
    }
    return g->mode != PCU_GEMV_GATED || g->w[0].N == g->w[1].N;
}

extern "C" cudaError_t pcu_qgemv_launch(cudaStream_t s, const pcu_qgemv *g, int sm_count) {
    if (!pcu_qgemv_fits(g)) return cudaErrorInvalidValue;
    pcu_qgemv a = *g;
    /* PLAIN stacks the weights' rows; gate and up share one row space */
    a.seg_start[0] = 0;
    for (int i = 0; i < a.nw; i++) a.seg_start[i + 1] = a.seg_start[i] + (a.mode == PCU_GEMV_PLAIN ? a.w[i].N : 0);
    a.N = a.mode == PCU_GEMV_PLAIN ? a.seg_start[a.nw] : a.w[0].N;
    a.lg_group = 0;
    while ((1LL << a.lg_group) < a.G) a.lg_group++;
    if (a.N == 0) return cudaSuccess;
    switch (a.dtype) {
    case PETREL_DTYPE_F32: return qgemv_kind<float>(s, a, sm_count);
    case PETREL_DTYPE_F16: return qgemv_kind<__half>(s, a, sm_count);
    default: return qgemv_kind<__nv_bfloat16>(s, a, sm_count);
    }
}

/* ---- dequantization: panels and embedding rows ----------------------------------------- */

/* W[n, k] in float as ops.def defines it, computed as the CPU's reference
 * does (cpu/ops/quant.c, q_row); t: nvfp4's tensor scale. */
__device__ __forceinline__ float qk_value(const pcu_qweight &w, int fmt, int32_t G, int64_t n, int32_t k, float t) {
    unsigned u = pt_q_code(w.codes + n * w.code_rs, k, pt_qfmt_bits((pt_qfmt)fmt));
    int64_t grp = k / G;
    if (fmt == PT_QFMT_NVFP4)
        return pt_e2m1_to_float(u) * pt_e4m3_to_float(((const uint8_t *)w.scales)[n * w.s_rs + grp * w.s_cs]) * t;
    float s = dn_load(w.scales, w.sdt, n * w.s_rs + grp * w.s_cs);
    int zp = w.zeros ? w.zeros[n * w.z_rs + grp * w.z_cs] : 0;
    return (float)((int)u + pt_qfmt_qmin((pt_qfmt)fmt) - zp) * s;
}

/* panel[r, k] = W[n0 + r, k] rounded to T: rows along y, K along x. */
template <typename T>
__global__ void qdequant_kernel(int32_t fmt, int32_t G, int32_t K, pcu_qweight w, int64_t n0, int64_t rows, T *panel) {
    float t = w.t ? *w.t : 1.0f;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
        for (int32_t k = blockIdx.x * blockDim.x + threadIdx.x; k < K; k += gridDim.x * blockDim.x)
            panel[r * K + k] = dn_from<T>(qk_value(w, fmt, G, n0 + r, k, t));
}

extern "C" cudaError_t pcu_qdequant_launch(cudaStream_t s, int32_t fmt, int64_t G, int64_t K, const pcu_qweight *w,
                                           int64_t n0, int64_t rows, void *panel, int32_t dtype) {
    if (fmt < 0 || fmt >= PT_QFMT_COUNT || G < 1 || K < 0 || K > INT32_MAX || rows < 0 || n0 < 0 || n0 + rows > w->N)
        return cudaErrorInvalidValue;
    if (rows == 0 || K == 0) return cudaSuccess;
    dim3 grid((unsigned)((K + DK_THREADS - 1) / DK_THREADS < 64 ? (K + DK_THREADS - 1) / DK_THREADS : 64),
              (unsigned)(rows < 65535 ? rows : 65535));
#define QD_GO(T) qdequant_kernel<T><<<grid, DK_THREADS, 0, s>>>(fmt, (int32_t)G, (int32_t)K, *w, n0, rows, (T *)panel)
    switch (dtype) {
    case PETREL_DTYPE_F32: QD_GO(float); break;
    case PETREL_DTYPE_F16: QD_GO(__half); break;
    case PETREL_DTYPE_BF16: QD_GO(__nv_bfloat16); break;
    default: return cudaErrorInvalidValue;
    }
#undef QD_GO
    return cudaGetLastError();
}

/* One output row per block step: the row of W at index i, or zeros. */
__global__ void qembedding_kernel(int32_t fmt, int32_t G, int32_t K, pcu_qweight w, const void *idx, int32_t idt,
                                  int64_t nidx, void *out, int32_t dtype) {
    float t = w.t ? *w.t : 1.0f;
    for (int64_t i = blockIdx.x; i < nidx; i += gridDim.x) {
        int64_t n = dk_wrap(dk_load_i64(dk_at(idx, idt, i), idt), w.N);
        for (int32_t k = threadIdx.x; k < K; k += blockDim.x)
            dn_store(out, dtype, i * K + k, n < 0 ? 0.0f : qk_value(w, fmt, G, n, k, t));
    }
}

extern "C" cudaError_t pcu_qembedding_launch(cudaStream_t s, int32_t fmt, int64_t G, int64_t K, const pcu_qweight *w,
                                             const void *idx, int32_t idt, int64_t nidx, void *out, int32_t dtype) {
    if (fmt < 0 || fmt >= PT_QFMT_COUNT || G < 1 || K < 0 || K > INT32_MAX || nidx < 0) return cudaErrorInvalidValue;
    if (nidx == 0 || K == 0) return cudaSuccess;
    int threads = 32;
    while (threads < 256 && threads < K) threads *= 2;
    qembedding_kernel<<<(unsigned)(nidx < 65536 ? nidx : 65536), threads, 0, s>>>(fmt, (int32_t)G, (int32_t)K, *w,
                                                                                  idx, idt, nidx, out, dtype);
    return cudaGetLastError();
}
