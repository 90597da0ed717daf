/*
** bench_gemv.cu -- checks and micro-benchmark of the bf16 decode GEMV
** (src/backends/cuda/ops/matmul_k.cu) at the shapes of a decode step:
** per layer q/k/v (petrel.linear_n: three weights in one launch, the
** RMSNorm prologue), o (+ residual), gate and up (petrel.gated_linear with
** the norm prologue), down (+ residual), and the LM head (the final norm
** folded in), for Llama-3.2-1B, Qwen3-1.7B and Qwen3-0.6B.
**
** Each case is checked once against a host reference in double from the
** same bf16 inputs with the kernel's rounding points (relative L2 <= 1e-2,
** the bf16 tolerance; first, checks only: f32 and f16 products in every
** mode, at their tolerances), then timed over REPS launches captured in one CUDA
** graph (as the decode step runs, programmatic dependent launch included)
** that rotate through copies of the weights filling > 400 MB, so the 50
** MB L2 cannot hold them.  Printed: us per launch, GB/s of weight bytes
** and the share of the device-to-device copy bandwidth measured first
** (1 GiB, read + write counted, median of 10: bench/torch_bench.py's
** measure).  Per model, the sum over a step (layers x the four products +
** the LM head) against the same bytes at the copy bandwidth: how far the
** GEMVs alone are from the floor, the rest of the step's gap being the
** attention and the other kernels.
**
** Standalone: it compiles the kernel file directly, no petrel library.
** From the repository root:
**   nvcc -std=c++17 -O3 -arch=sm_90 -Iinclude -Isrc tests/gpu/bench_gemv.cu \
**     src/backends/cuda/ops/matmul_k.cu -o /tmp/bench_gemv && /tmp/bench_gemv
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

#include "backends/cuda/ops/matmul_k.h"
#include "petrel.h"

#ifndef REPS
#define REPS 200
#endif
#define ROTATE_BYTES ((size_t)400 << 20)

static double bfr(double v) { return bf2f(f2bf((float)v)); } /* v rounded to bf16 */
static float frand(void) { return (float)(urand() & 0xffffff) / 8388608.0f - 1.0f; } /* [-1, 1) */

static std::vector<uint16_t> bf_random(size_t n, float scale) {
    std::vector<uint16_t> v(n);
    for (auto &x : v) x = f2bf(frand() * scale);
    return v;
}

/* h on the device, `copies` times back to back. */
template <typename E> static E *dev_copy(const std::vector<E> &h, int copies = 1) {
    E *d;
    size_t n = h.size(), bytes = n * sizeof(E);
    CK(cudaMalloc(&d, bytes * (size_t)copies));
    CK(cudaMemcpy(d, h.data(), bytes, cudaMemcpyHostToDevice));
    for (int c = 1; c < copies; c++) CK(cudaMemcpy(d + n * (size_t)c, d, bytes, cudaMemcpyDeviceToDevice));
    return d;
}

/* Device-to-device copy bandwidth, bytes read + written per second. */
static double copy_bw(cudaStream_t s) {
    const size_t n = (size_t)1 << 30;
    void *a, *b;
    CK(cudaMalloc(&a, n));
    CK(cudaMalloc(&b, n));
    CK(cudaMemsetAsync(a, 1, n, s));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<float> ms;
    for (int i = 0; i < 12; i++) {
        CK(cudaEventRecord(e0, s));
        CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, s));
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        float t;
        CK(cudaEventElapsedTime(&t, e0, e1));
        if (i >= 2) ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    CK(cudaFree(a));
    CK(cudaFree(b));
    return 2.0 * (double)n / (0.5 * (ms[4] + ms[5]) * 1e-3);
}

static void check(const char *what, const std::vector<double> &got, const std::vector<double> &ref, double tol) {
    double num = 0, den = 0, maxd = 0, maxr = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        double d = got[i] - ref[i];
        num += d * d, den += ref[i] * ref[i];
        maxd = fmax(maxd, fabs(d)), maxr = fmax(maxr, fabs(ref[i]));
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    bool ok = rel <= tol && std::isfinite(rel);
    printf("  check %-40s rel L2 %.2e  max|err|/max|ref| %.2e  %s\n", what, rel, maxr > 0 ? maxd / maxr : maxd,
           ok ? "ok" : "FAIL");
    if (!ok) g_fail = 1;
}

/*
** One product of a decode step, M = 1, bf16: weights of rows Ns (more
** than one: petrel.linear_n's segments), K columns; mode PLAIN (norm: the
** RMSNorm prologue), GATED (Ns = {N}, gate and up, with the norm) or RESID
** (o, down).  Returns the timed us per launch; *bytes gets its weight
** bytes.
*/
static double gemv_case(cudaStream_t s, int sm, double bw, const char *what, int mode, bool norm,
                        const std::vector<int64_t> &Ns, int64_t K, double *bytes) {
    int nw = mode == PCU_GEMV_GATED ? 2 : (int)Ns.size();
    std::vector<int64_t> rows(nw);
    for (int i = 0; i < nw; i++) rows[i] = mode == PCU_GEMV_GATED ? Ns[0] : Ns[i];
    size_t wb = 0;
    for (auto n : rows) wb += (size_t)(n * K) * 2;
    *bytes = (double)wb;
    int copies = (int)(ROTATE_BYTES / wb) + 2;
    float wscale = 1.0f / sqrtf((float)K); /* products of order 1 */
    std::vector<std::vector<uint16_t>> hw;
    std::vector<uint16_t *> dw;
    for (int i = 0; i < nw; i++) {
        hw.push_back(bf_random((size_t)(rows[i] * K), wscale));
        dw.push_back(dev_copy(hw.back(), copies));
    }
    auto x = bf_random((size_t)K, 2.0f), nwt = bf_random((size_t)K, 1.0f), res = bf_random((size_t)Ns[0], 1.0f);
    uint16_t *dx = dev_copy(x), *dn = dev_copy(nwt), *dr = dev_copy(res);
    std::vector<uint16_t *> dout;
    int nout = mode == PCU_GEMV_PLAIN ? nw : 1;
    for (int i = 0; i < nout; i++) {
        uint16_t *o;
        CK(cudaMalloc(&o, (size_t)rows[i] * 2));
        CK(cudaMemset(o, 0xff, (size_t)rows[i] * 2)); /* NaN: an unwritten output fails the check */
        dout.push_back(o);
    }
    auto args = [&](int c) {
        pcu_gemv g = {};
        g.dtype = PETREL_DTYPE_BF16, g.x = dx, g.ldx = K, g.M = 1, g.K = K, g.alpha = 1.0f, g.mode = mode;
        g.act = PCU_ACT_SILU, g.w_const = 1;
        const uint16_t *w0 = dw[0] + (size_t)c * hw[0].size();
        if (mode == PCU_GEMV_PLAIN && nw > 1) {
            g.nseg = nw, g.seg_start[0] = 0;
            for (int i = 0; i < nw; i++) {
                g.seg_w[i] = dw[i] + (size_t)c * hw[i].size(), g.seg_out[i] = dout[i];
                g.seg_start[i + 1] = g.seg_start[i] + rows[i];
            }
            g.N = g.seg_start[nw];
        } else {
            g.w = w0, g.out = dout[0], g.N = rows[0];
        }
        if (mode == PCU_GEMV_GATED) g.w2 = dw[1] + (size_t)c * hw[1].size();
        if (mode == PCU_GEMV_RESID) g.self = dr, g.self_dtype = PETREL_DTYPE_BF16, g.self_sm = rows[0], g.self_sn = 1;
        if (norm) g.norm = 1, g.nw = dn, g.norm_eps = 1e-6f;
        return g;
    };
    pcu_gemv g0 = args(0);
    CK(pcu_gemv_launch(s, &g0, sm));
    CK(cudaStreamSynchronize(s));

    /* reference: x normalized as the kernel does (round(x * nw), rstd
     * applied to the product), products in double, the mode's roundings */
    std::vector<double> xs((size_t)K);
    double ss = 0;
    for (int64_t k = 0; k < K; k++) {
        double xv = bf2f(x[k]);
        ss += xv * xv;
        xs[k] = norm ? bfr(xv * bf2f(nwt[k])) : xv;
    }
    double rstd = norm ? 1.0 / sqrt(ss / (double)K + 1e-6) : 1.0;
    std::vector<std::vector<double>> p(nw);
    for (int i = 0; i < nw; i++) {
        p[i].resize((size_t)rows[i]);
        for (int64_t n = 0; n < rows[i]; n++) {
            double a = 0;
            const uint16_t *wr = &hw[i][(size_t)(n * K)];
            for (int64_t k = 0; k < K; k++) a += (double)bf2f(wr[k]) * xs[k];
            p[i][n] = a * rstd;
        }
    }
    std::vector<double> got, ref;
    for (int i = 0; i < nout; i++) {
        std::vector<uint16_t> o((size_t)rows[i]);
        CK(cudaMemcpy(o.data(), dout[i], o.size() * 2, cudaMemcpyDeviceToHost));
        for (int64_t n = 0; n < rows[i]; n++) {
            got.push_back(bf2f(o[n]));
            double r = p[i][n];
            if (mode == PCU_GEMV_GATED) {
                double gq = bfr(r);
                r = bfr(bfr(gq / (1.0 + exp(-gq))) * bfr(p[1][n]));
            } else if (mode == PCU_GEMV_RESID) {
                r = bfr(bfr(r) + bf2f(res[n]));
            } else {
                r = bfr(r);
            }
            ref.push_back(r);
        }
    }
    check(what, got, ref, 1e-2);

    std::vector<pcu_gemv> gs;
    for (int c = 0; c < copies; c++) gs.push_back(args(c));
    double us = graph_us(s, REPS, [&](int i) { return pcu_gemv_launch(s, &gs[(size_t)i % gs.size()], sm); });
    printf("  time  %-40s %8.2f us  %6.0f GB/s  %3.0f %% of copy  (%.1f MB, floor %.2f us)\n", what, us,
           wb / us * 1e-3, 100.0 * wb / (us * 1e-6) / bw, wb / 1048576.0, wb / bw * 1e6);
    for (auto d : dw) CK(cudaFree(d));
    for (auto d : dout) CK(cudaFree(d));
    CK(cudaFree(dx));
    CK(cudaFree(dn));
    CK(cudaFree(dr));
    return us;
}

/*
** Checks beyond the bf16 step shapes, each against a double reference of
** the kernel's rounding points: f32 and f16 (T), PLAIN with alpha, beta
** and an addend, segments, GATED and RESID, the norm prologue with
** x * (1 + w), row counts that leave the last block a partial set of
** rows (N not a multiple of its rows per block) and N large enough for 4
** rows per block, the two-pass path (f32, K 4096) and a K whose chunks
** leave some of a block's threads idle (f32, K 200).  fp32 tolerance
** 1e-5, f16 1e-3.
*/
template <typename T> struct hostf;
template <> struct hostf<float> {
    static float to(double v) { return (float)v; }
    static double from(float v) { return v; }
    static constexpr int dtype = PETREL_DTYPE_F32;
    static constexpr double tol = 1e-5;
};
template <> struct hostf<__half> {
    static __half to(double v) { return __float2half_rn((float)v); }
    static double from(__half v) { return __half2float(v); }
    static constexpr int dtype = PETREL_DTYPE_F16;
    static constexpr double tol = 1e-3;
};

template <typename T>
static void dtype_case(cudaStream_t s, int sm, const char *what, int mode, bool norm, int nseg, int64_t N, int64_t K) {
    typedef hostf<T> H;
    auto rt = [](double v) { return H::from(H::to(v)); }; /* v rounded to T */
    const int nw = mode == PCU_GEMV_GATED ? 2 : 1;
    std::vector<std::vector<T>> hw(nw);
    std::vector<T *> dw;
    for (int i = 0; i < nw; i++) {
        hw[i].resize((size_t)(N * K));
        for (auto &v : hw[i]) v = H::to(frand() / sqrt((double)K));
        dw.push_back(dev_copy(hw[i]));
    }
    std::vector<T> x((size_t)K), nwt((size_t)K), self((size_t)N);
    for (auto &v : x) v = H::to(2.0 * frand());
    for (auto &v : nwt) v = H::to(frand());
    for (auto &v : self) v = H::to(frand());
    T *dx = dev_copy(x), *dn = dev_copy(nwt), *dself = dev_copy(self), *dout;
    CK(cudaMalloc(&dout, (size_t)N * sizeof(T)));
    CK(cudaMemset(dout, 0xff, (size_t)N * sizeof(T))); /* NaN: an unwritten output fails */
    pcu_gemv g = {};
    g.dtype = H::dtype, g.x = dx, g.ldx = K, g.M = 1, g.N = N, g.K = K, g.mode = mode, g.act = PCU_ACT_SILU;
    g.alpha = mode == PCU_GEMV_PLAIN ? 0.5f : 1.0f, g.beta = 0.25f, g.w_const = 1, g.w = dw[0], g.out = dout;
    if (mode == PCU_GEMV_GATED) g.w2 = dw[1];
    if (mode != PCU_GEMV_GATED) g.self = dself, g.self_dtype = H::dtype, g.self_sm = N, g.self_sn = 1;
    if (norm) g.norm = 1, g.norm_add_one = 1, g.nw = dn, g.norm_eps = 1e-6f;
    if (nseg) { /* segments of N / nseg rows (the last takes the rest), out in one buffer */
        g.nseg = nseg, g.seg_start[0] = 0;
        for (int i = 0; i < nseg; i++) {
            g.seg_start[i + 1] = i == nseg - 1 ? N : (i + 1) * (N / nseg);
            g.seg_w[i] = dw[0] + g.seg_start[i] * K, g.seg_out[i] = dout + g.seg_start[i];
        }
    }
    CK(pcu_gemv_launch(s, &g, sm));
    CK(cudaStreamSynchronize(s));
    std::vector<T> o((size_t)N);
    CK(cudaMemcpy(o.data(), dout, o.size() * sizeof(T), cudaMemcpyDeviceToHost));
    std::vector<double> xs((size_t)K), got, ref;
    double ss = 0;
    for (int64_t k = 0; k < K; k++) {
        double v = H::from(x[k]);
        ss += v * v;
        xs[k] = norm ? rt(v * H::from(nwt[k]) + v) : v;
    }
    const double rstd = norm ? 1.0 / sqrt(ss / (double)K + 1e-6) : 1.0;
    for (int64_t n = 0; n < N; n++) {
        double p[2] = {0, 0};
        for (int i = 0; i < nw; i++) {
            for (int64_t k = 0; k < K; k++) p[i] += H::from(hw[i][(size_t)(n * K + k)]) * xs[k];
            p[i] *= rstd;
        }
        double r;
        if (mode == PCU_GEMV_GATED) r = rt(rt(rt(p[0]) / (1.0 + exp(-rt(p[0])))) * rt(p[1]));
        else if (mode == PCU_GEMV_RESID) r = rt(rt(p[0]) + H::from(self[n]));
        else r = rt(0.5 * p[0] + 0.25 * H::from(self[n]));
        ref.push_back(r), got.push_back(H::from(o[n]));
    }
    check(what, got, ref, H::tol);
    for (auto d : dw) CK(cudaFree(d));
    CK(cudaFree(dx));
    CK(cudaFree(dn));
    CK(cudaFree(dself));
    CK(cudaFree(dout));
}

static void dtype_cases(cudaStream_t s, int sm) {
    printf("f32 and f16, other modes and shapes\n");
    dtype_case<float>(s, sm, "f32 plain + beta self, N 300", PCU_GEMV_PLAIN, false, 0, 300, 1024);
    dtype_case<float>(s, sm, "f32 segments + norm, N 9001", PCU_GEMV_PLAIN, true, 3, 9001, 512);
    dtype_case<float>(s, sm, "f32 gated + norm, N 8703", PCU_GEMV_GATED, true, 0, 8703, 256);
    dtype_case<float>(s, sm, "f32 residual, K 4096", PCU_GEMV_RESID, false, 0, 777, 4096);
    dtype_case<float>(s, sm, "f32 plain, K 200 (idle threads)", PCU_GEMV_PLAIN, false, 0, 333, 200);
    dtype_case<__half>(s, sm, "f16 plain + beta self, N 9003", PCU_GEMV_PLAIN, false, 0, 9003, 1024);
    dtype_case<__half>(s, sm, "f16 gated + norm, N 301", PCU_GEMV_GATED, true, 0, 301, 2048);
    dtype_case<__half>(s, sm, "f16 residual, K 768", PCU_GEMV_RESID, false, 0, 513, 768);
}

struct shape {
    const char *name;
    int layers;
    int64_t hidden, inter, q, kv, vocab;
};

static void model(cudaStream_t s, int sm, double bw, const shape &m) {
    printf("%s: %d layers, hidden %lld, MLP %lld, q %lld, k/v %lld, vocab %lld\n", m.name, m.layers,
           (long long)m.hidden, (long long)m.inter, (long long)m.q, (long long)m.kv, (long long)m.vocab);
    double b[5], t[5];
    t[0] = gemv_case(s, sm, bw, "q/k/v (norm)", PCU_GEMV_PLAIN, true, {m.q, m.kv, m.kv}, m.hidden, &b[0]);
    t[1] = gemv_case(s, sm, bw, "o + residual", PCU_GEMV_RESID, false, {m.hidden}, m.q, &b[1]);
    t[2] = gemv_case(s, sm, bw, "gate, up (norm)", PCU_GEMV_GATED, true, {m.inter}, m.hidden, &b[2]);
    t[3] = gemv_case(s, sm, bw, "down + residual", PCU_GEMV_RESID, false, {m.hidden}, m.inter, &b[3]);
    t[4] = gemv_case(s, sm, bw, "LM head (norm)", PCU_GEMV_PLAIN, true, {m.vocab}, m.hidden, &b[4]);
    double us = m.layers * (t[0] + t[1] + t[2] + t[3]) + t[4];
    double bytes = m.layers * (b[0] + b[1] + b[2] + b[3]) + b[4];
    printf("  step  %-40s %8.1f us of GEMVs for %.0f MB: %.0f %% of the copy bandwidth (floor %.1f us)\n",
           "layers x (q/k/v + o + gate/up + down) + head", us, bytes / 1048576.0, 100.0 * bytes / (us * 1e-6) / bw,
           bytes / bw * 1e6);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress shows through a pipe */
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    int sm = prop.multiProcessorCount;
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    double bw = copy_bw(s);
    printf("%s, %d SMs; %d launches per timing; copy bandwidth %.0f GB/s\n", prop.name, sm, REPS, bw * 1e-9);
    /* the real configurations (bench/models.py) */
    dtype_cases(s, sm);
    model(s, sm, bw, {"Llama-3.2-1B", 16, 2048, 8192, 2048, 512, 128256});
    model(s, sm, bw, {"Qwen3-1.7B", 28, 2048, 6144, 2048, 1024, 151936});
    model(s, sm, bw, {"Qwen3-0.6B", 28, 1024, 3072, 2048, 1024, 151936});
    CK(cudaStreamDestroy(s));
    printf(g_fail ? "SOME CHECKS FAILED\n" : "all checks passed\n");
    return g_fail;
}
