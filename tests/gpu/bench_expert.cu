/*
** bench_expert.cu -- checks and timings of the MoE kernels on CUDA: the
** experts' products (src/backends/cuda/ops/expert_k.cu: petrel.expert_linear
** and qexpert_linear, the row form and the grouped form) and the router's
** topk (index_k.cu).
**
** Experts, against a host reference that dequantizes W exactly as ops.def
** and the CPU kernel do (core/quant_fmt.h) and sums in double, rounded to
** the output dtype: float W and every format (int8, int8s, int4, int4s,
** int2, int2s, nvfp4), bf16 and f16 x, E = 16 experts of N = 200 rows (no
** multiple of the grouped form's 64-row tiles) and K = 384, T = 8 rows
** (the row form) and 40 and 300 (the grouped form), ids drawn in [-E, E)
** with two out of bounds (their rows must be zeros); and int4 in groups
** of 24 (no multiple of 16: the row form's loop per element, whatever T).  The grouped form
** rounds a dequantized W to the compute dtype (as quant.c's prefill panels
** do), so its reference does too.  Relative L2 <= 1e-3 (bf16) and 2e-4
** (f16): the reference is rounded to the dtype as the kernel's output is,
** so only sums that land beside a rounding boundary differ.  The grouped
** form sorts rows by expert with atomics: the same rows in another order
** must give the same outputs bit for bit.
**
** topk: rows of 8 to 1,000 values (the warp-per-row kernel up to 512, the
** block kernel past it), k of 1, 4 and 8, values drawn from few levels
** (ties) with NaNs, largest and smallest: indices and values equal to a
** host stable sort's (NaN largest, ties by position).
**
** Timings (one CUDA graph of REPS launches; median of 3): a random
** Qwen3-MoE layer's shapes (64 experts of width 384, hidden 1024, top-8):
** a prefill of 512 tokens (T = 4,096 rows) and a decode step (T = 8),
** gate (N 384, K 1024) and down (N 1024, K 384), bf16 and int4, each form;
** topk of 64 router scores for 1 and 512 tokens.
**
** Standalone, from the repository root:
**   nvcc -std=c++17 -O3 -arch=sm_90 -Iinclude -Isrc tests/gpu/bench_expert.cu src/core/dtype.c \
**     src/backends/cuda/ops/expert_k.cu src/backends/cuda/ops/index_k.cu -o /tmp/bench_expert && /tmp/bench_expert
** Exit status 1 when a check fails.
*/
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "bench_util.h"

#include "backends/cuda/ops/expert_k.h"
#include "backends/cuda/ops/index_k.h"
#include "core/quant_fmt.h"
#include "petrel.h"

#ifndef REPS
#define REPS 50
#endif

static bool g_bf16; /* the dtype of the current case: bf16, else f16 */
static uint16_t to16(float f) {
    if (g_bf16) return f2bf(f);
    __half h = __float2half_rn(f);
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}
static float from16(uint16_t u) {
    if (g_bf16) return bf2f(u);
    __half h;
    memcpy(&h, &u, 2);
    return __half2float(h);
}
static float frand(void) { return (float)(urand() & 0xffffff) / 8388608.0f - 1.0f; } /* [-1, 1) */

/* The experts' weight on the host: float (fmt < 0, values of the dtype)
 * or quantized as E * N rows (core/quant_fmt.h's layout). */
struct Experts {
    int fmt;
    int64_t E, N, K, G;
    std::vector<uint16_t> wf;       /* float W (E, N, K) */
    std::vector<uint8_t> codes;     /* (E * N, K * bits / 8) */
    std::vector<uint16_t> scales;   /* (E * N, K / G) of the dtype */
    std::vector<uint8_t> s8;        /* nvfp4: E4M3 bytes */
    std::vector<int8_t> zeros;
    float t = 0.01f;
    int64_t rows() const { return E * N; }
    int64_t ng() const { return K / G; }
    float w(int64_t e, int64_t n, int64_t k) const { /* W[e][n][k] as ops.def defines it */
        int64_t r = e * N + n;
        if (fmt < 0) return from16(wf[r * K + k]);
        int bits = pt_qfmt_bits((pt_qfmt)fmt);
        unsigned u = pt_q_code(&codes[r * (K * bits / 8)], k, bits);
        int64_t g = r * ng() + k / G;
        if (fmt == PT_QFMT_NVFP4) return pt_e2m1_to_float(u) * pt_e4m3_to_float(s8[g]) * t;
        int zp = zeros.empty() ? 0 : zeros[g];
        return (float)((int)u + pt_qfmt_qmin((pt_qfmt)fmt) - zp) * from16(scales[g]);
    }
};

static Experts make_experts(int fmt, int64_t E, int64_t N, int64_t K, int64_t G = 0) {
    Experts h;
    h.fmt = fmt, h.E = E, h.N = N, h.K = K, h.G = G ? G : fmt == PT_QFMT_NVFP4 ? 16 : 32;
    if (fmt < 0) {
        h.wf.resize((size_t)(E * N * K));
        for (auto &v : h.wf) v = to16(frand() * 0.05f);
        return h;
    }
    int bits = pt_qfmt_bits((pt_qfmt)fmt);
    h.codes.resize((size_t)(h.rows() * K * bits / 8));
    for (auto &c : h.codes) c = (uint8_t)urand();
    size_t ns = (size_t)(h.rows() * h.ng());
    if (fmt == PT_QFMT_NVFP4) {
        h.s8.resize(ns);
        for (auto &s : h.s8) s = (uint8_t)(((5 + urand() % 5) << 3) | (urand() & 7));
    } else {
        h.scales.resize(ns);
        for (auto &s : h.scales) s = to16((0.5f + 0.5f * fabsf(frand())) / (float)(1 << bits) * 0.1f);
    }
    if (pt_qfmt_asym((pt_qfmt)fmt)) {
        h.zeros.resize(ns);
        int lo = pt_qfmt_qmin((pt_qfmt)fmt), span = pt_qfmt_qmax((pt_qfmt)fmt) - lo + 1;
        for (auto &z : h.zeros) z = (int8_t)(lo + (int)(urand() % (uint32_t)span));
    }
    return h;
}

template <class V> static void *dev(const std::vector<V> &v) {
    void *p = nullptr;
    if (v.empty()) return nullptr;
    CK(cudaMalloc(&p, v.size() * sizeof(V)));
    CK(cudaMemcpy(p, v.data(), v.size() * sizeof(V), cudaMemcpyHostToDevice));
    return p;
}

/* The device side of one case: weights, x, ids, out and the scratch. */
struct Case {
    pcu_expert a = {};
    void *scratch = nullptr;
    std::vector<void *> held;
    void free_all() {
        for (void *p : held) cudaFree(p);
        cudaFree(scratch);
    }
};

static Case upload(const Experts &h, const std::vector<uint16_t> &x, const std::vector<int64_t> &ids, int64_t T,
                   bool grouped) {
    Case c;
    pcu_expert &a = c.a;
    a.dtype = g_bf16 ? PETREL_DTYPE_BF16 : PETREL_DTYPE_F16;
    a.T = T, a.E = h.E, a.N = h.N, a.K = h.K, a.ldx = h.K;
    a.x = dev(x), a.ids = dev(ids), a.ids_dtype = PETREL_DTYPE_I64, a.ids_stride = 1;
    CK(cudaMalloc(&a.out, (size_t)(T * h.N * 2)));
    c.held = {(void *)a.x, (void *)a.ids, a.out};
    a.fmt = h.fmt;
    if (h.fmt < 0) {
        a.w = dev(h.wf), a.w_se = h.N * h.K, a.w_sn = h.K, a.w_sk = 1;
        c.held.push_back((void *)a.w);
    } else {
        int bits = pt_qfmt_bits((pt_qfmt)h.fmt);
        a.G = h.G;
        a.codes = (const uint8_t *)dev(h.codes), a.c_sn = h.K * bits / 8, a.c_se = h.N * a.c_sn;
        if (h.fmt == PT_QFMT_NVFP4) {
            a.scales = dev(h.s8), a.sdt = PETREL_DTYPE_U8;
            std::vector<float> t = {h.t};
            a.t = (const float *)dev(t);
            c.held.push_back((void *)a.t);
        } else {
            a.scales = dev(h.scales), a.sdt = a.dtype;
        }
        a.s_sg = 1, a.s_sn = h.ng(), a.s_se = h.N * h.ng();
        if (!h.zeros.empty()) a.zeros = (const int8_t *)dev(h.zeros), a.z_sg = 1, a.z_sn = h.ng(), a.z_se = h.N * h.ng();
        c.held.insert(c.held.end(), {(void *)a.codes, (void *)a.scales, (void *)a.zeros});
    }
    size_t sb = grouped ? pcu_expert_scratch(&a) : 0;
    if (grouped && !sb) {
        printf("FAIL  the grouped form declined T = %lld\n", (long long)T);
        g_fail = 1;
    }
    if (sb) CK(cudaMalloc(&c.scratch, sb));
    return c;
}

static std::vector<uint16_t> run(Case &c) {
    CK(pcu_expert_launch(0, &c.a, c.scratch));
    CK(cudaDeviceSynchronize());
    std::vector<uint16_t> out((size_t)(c.a.T * c.a.N));
    CK(cudaMemcpy(out.data(), c.a.out, out.size() * 2, cudaMemcpyDeviceToHost));
    return out;
}

static const char *fmt_name(int f) { return f < 0 ? "float" : pt_qfmt_name((pt_qfmt)f); }

static void check_experts(int fmt, int64_t T, int64_t G = 0) {
    const int64_t E = 16, N = 200, K = 384;
    Experts h = make_experts(fmt, E, N, K, G);
    std::vector<uint16_t> x((size_t)(T * K));
    for (auto &v : x) v = to16(frand());
    std::vector<int64_t> ids((size_t)T);
    for (auto &i : ids) i = (int64_t)(urand() % (2 * E)) - E; /* [-E, E) */
    ids[T / 3] = E, ids[T - 1] = -E - 1;                      /* out of bounds: zeros */
    Case c = upload(h, x, ids, T, T >= 32 && h.G % 16 == 0);
    bool grouped = c.scratch != nullptr;
    std::vector<uint16_t> out = run(c);
    double num = 0, den = 0;
    bool zeros_ok = true;
    for (int64_t t = 0; t < T; t++) {
        int64_t e = ids[t] < 0 ? ids[t] + E : ids[t];
        for (int64_t n = 0; n < N; n++) {
            float o = from16(out[t * N + n]);
            if (e < 0 || e >= E) {
                zeros_ok &= o == 0.0f;
                continue;
            }
            double s = 0;
            for (int64_t k = 0; k < K; k++) {
                float w = h.w(e, n, k);
                if (grouped) w = from16(to16(w)); /* the grouped form's tensor-core operand */
                s += (double)from16(x[t * K + k]) * w;
            }
            double r = from16(to16((float)s));
            num += (o - r) * (o - r), den += r * r;
        }
    }
    double err = sqrt(num / den), tol = g_bf16 ? 1e-3 : 2e-4;
    bool ok = err <= tol && zeros_ok; /* NaN fails */
    /* the grouped form: the same rows in reverse order give the same outputs */
    bool same = true;
    if (grouped) {
        std::vector<uint16_t> xr(x.size());
        std::vector<int64_t> ir(ids.size());
        for (int64_t t = 0; t < T; t++) {
            memcpy(&xr[(T - 1 - t) * K], &x[t * K], (size_t)K * 2);
            ir[T - 1 - t] = ids[t];
        }
        Case c2 = upload(h, xr, ir, T, true);
        std::vector<uint16_t> o2 = run(c2);
        for (int64_t t = 0; t < T && same; t++) same = !memcmp(&o2[(T - 1 - t) * N], &out[t * N], (size_t)N * 2);
        c2.free_all();
    }
    ok &= same;
    printf("%s  experts %-6s G %3lld %s T %3lld (%s form): relative L2 %.2e (tol %.0e)%s%s\n", ok ? "ok  " : "FAIL",
           fmt_name(fmt), (long long)(fmt < 0 ? 0 : h.G), g_bf16 ? "bf16" : "f16 ", (long long)T,
           grouped ? "grouped" : "row", err, tol,
           zeros_ok ? "" : ", out-of-bounds rows not zero", same ? "" : ", reversed rows differ");
    g_fail |= !ok;
    c.free_all();
}

/* ---- topk ------------------------------------------------------------------------------ */

static bool tk_first(float a, int64_t ia, float b, int64_t ib, bool largest) { /* index_k.cu's order */
    bool an = std::isnan(a), bn = std::isnan(b);
    if (an || bn) return an != bn ? (largest ? an : bn) : ia < ib;
    if (a != b) return largest ? a > b : a < b;
    return ia < ib;
}

/* topk along the last dim of dense f32 rows (rows, len) into vals / idx (rows, k). */
static pcu_topk_rows topk_args(float *dv, int64_t rows, int64_t len, int64_t k, bool largest, float *dvals,
                               int64_t *didx) {
    pcu_topk_rows a = {};
    a.self.data = dv, a.self.dtype = PETREL_DTYPE_F32, a.self.rank = 2;
    a.self.shape[0] = rows, a.self.shape[1] = len, a.self.stride[0] = len, a.self.stride[1] = 1;
    a.dim = 1, a.len = len, a.k = k, a.rows = rows, a.largest = largest;
    a.ostride[0] = k, a.ostride[1] = 1, a.vals = dvals, a.idx = didx;
    return a;
}

static void check_topk(int64_t rows, int64_t len, int64_t k, bool largest) {
    std::vector<float> v((size_t)(rows * len));
    for (auto &f : v) f = (urand() % 97 == 0) ? NAN : (float)(urand() % 13) * 0.25f - 1.5f; /* ties, NaNs */
    float *dv = (float *)dev(v);
    float *dvals;
    int64_t *didx;
    CK(cudaMalloc(&dvals, (size_t)(rows * k) * 4));
    CK(cudaMalloc(&didx, (size_t)(rows * k) * 8));
    pcu_topk_rows a = topk_args(dv, rows, len, k, largest, dvals, didx);
    CK(pcu_topk_rows_launch(&a, 0));
    CK(cudaDeviceSynchronize());
    std::vector<float> vals((size_t)(rows * k));
    std::vector<int64_t> idx((size_t)(rows * k));
    CK(cudaMemcpy(vals.data(), dvals, vals.size() * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(idx.data(), didx, idx.size() * 8, cudaMemcpyDeviceToHost));
    int64_t bad = 0;
    std::vector<int64_t> order((size_t)len);
    for (int64_t r = 0; r < rows; r++) {
        const float *row = &v[r * len];
        for (int64_t i = 0; i < len; i++) order[i] = i;
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t p, int64_t q) { return tk_first(row[p], p, row[q], q, largest); });
        for (int64_t j = 0; j < k; j++) {
            float got = vals[r * k + j], want = row[order[j]];
            bad += idx[r * k + j] != order[j] || memcmp(&got, &want, 4) != 0;
        }
    }
    printf("%s  topk rows %lld len %4lld k %lld %s: %lld of %lld differ\n", bad ? "FAIL" : "ok  ", (long long)rows,
           (long long)len, (long long)k, largest ? "largest " : "smallest", (long long)bad, (long long)(rows * k));
    g_fail |= bad != 0;
    cudaFree(dv), cudaFree(dvals), cudaFree(didx);
}

/* ---- timings --------------------------------------------------------------------------- */

static double median3(double a, double b, double c) { return std::max(std::min(a, b), std::min(std::max(a, b), c)); }

static void time_experts(int fmt, int64_t tokens, int64_t N, int64_t K) {
    const int64_t E = 64, top = 8, T = tokens * top;
    g_bf16 = true;
    Experts h = make_experts(fmt, E, N, K);
    std::vector<uint16_t> x((size_t)(T * K));
    for (auto &v : x) v = to16(frand());
    std::vector<int64_t> ids((size_t)T);
    for (int64_t t = 0; t < tokens; t++) /* top distinct experts per token */
        for (int64_t j = 0; j < top; j++) {
            int64_t e;
            bool dup;
            do {
                e = urand() % E, dup = false;
                for (int64_t i = 0; i < j; i++) dup |= ids[t * top + i] == e;
            } while (dup);
            ids[t * top + j] = e;
        }
    for (int grouped = 0; grouped < 2; grouped++) {
        if (grouped && T < 32) continue;
        Case c = upload(h, x, ids, T, grouped);
        cudaStream_t s;
        CK(cudaStreamCreate(&s));
        double r[3];
        for (int i = 0; i < 3; i++)
            r[i] = graph_us(s, REPS, [&](int) { return pcu_expert_launch(s, &c.a, c.scratch); });
        printf("time  experts %-5s T %4lld N %4lld K %4lld (%s form): %8.1f us\n", fmt_name(fmt), (long long)T,
               (long long)N, (long long)K, grouped ? "grouped" : "row", median3(r[0], r[1], r[2]));
        CK(cudaStreamDestroy(s));
        c.free_all();
    }
}

static void time_topk(int64_t rows) {
    const int64_t len = 64, k = 8;
    std::vector<float> v((size_t)(rows * len));
    for (auto &f : v) f = frand();
    float *dv = (float *)dev(v), *dvals;
    int64_t *didx;
    CK(cudaMalloc(&dvals, (size_t)(rows * k) * 4));
    CK(cudaMalloc(&didx, (size_t)(rows * k) * 8));
    pcu_topk_rows a = topk_args(dv, rows, len, k, true, dvals, didx);
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    double r[3];
    for (int i = 0; i < 3; i++) r[i] = graph_us(s, REPS, [&](int) { return pcu_topk_rows_launch(&a, s); });
    printf("time  topk rows %4lld len %lld k %lld: %.2f us\n", (long long)rows, (long long)len, (long long)k,
           median3(r[0], r[1], r[2]));
    CK(cudaStreamDestroy(s));
    cudaFree(dv), cudaFree(dvals), cudaFree(didx);
}

int main(void) {
    const int fmts[] = {-1, PT_QFMT_INT8, PT_QFMT_INT8S, PT_QFMT_INT4, PT_QFMT_INT4S,
                        PT_QFMT_INT2, PT_QFMT_INT2S, PT_QFMT_NVFP4};
    for (int b = 1; b >= 0; b--) {
        g_bf16 = b;
        for (int f : fmts)
            for (int64_t T : {8, 40, 300}) check_experts(f, T);
        /* groups of no multiple of 16: the row form's loop per element */
        for (int64_t T : {8, 40}) check_experts(PT_QFMT_INT4, T, 24);
    }
    for (int64_t len : {8, 64, 128, 200, 512, 1000})
        for (int64_t k : {1, 4, 8})
            for (int largest = 1; largest >= 0; largest--) check_topk(37, len, k, largest);
    for (int fmt : {-1, (int)PT_QFMT_INT4}) {
        time_experts(fmt, 512, 384, 1024); /* prefill: gate */
        time_experts(fmt, 512, 1024, 384); /* prefill: down */
        time_experts(fmt, 1, 384, 1024);   /* decode */
        time_experts(fmt, 1, 1024, 384);
    }
    time_topk(1);
    time_topk(512);
    printf(g_fail ? "CHECKS FAILED\n" : "CHECKS passed\n");
    return g_fail;
}
