/*
** reduce_k.cu -- device kernels of the "reduce" family behind the
** launchers of reduce_k.h: one row reduction kernel per (loader, op) and
** the along-a-dim kernels (softmax, log_softmax, cumsum).
**
** Float sums are compensated (Neumaier) per thread and then combined by a
** fixed butterfly / shared-memory tree, so results are deterministic and
** stay close to the CPU oracle's double sums for long rows.  Extremes let
** NaN win; argmax/argmin keep the first index of the extreme (ties and
** NaNs alike), as torch does.
*/
#include <type_traits>

#include "data_k.cuh"
#include "reduce_k.h"

namespace {

/* ---- loaders ------------------------------------------------------------- */

/* f32 / f16 / bf16 rows: typed loads, 16-byte vectors along contiguous
 * rows (V elements each), float accumulation, double scan carry. */
struct LdF32 {
    typedef float acc;
    typedef double carry;
    typedef float raw;
    static constexpr int V = 4;
    __device__ static float cvt(float r) { return r; }
    __device__ static void unpack(uint4 u, float *v) {
        v[0] = __uint_as_float(u.x), v[1] = __uint_as_float(u.y);
        v[2] = __uint_as_float(u.z), v[3] = __uint_as_float(u.w);
    }
    __device__ static float load(const char *p, int64_t off, int) { return ((const float *)p)[off]; }
};

template <bool BF16>
struct Ld16 {
    typedef float acc;
    typedef double carry;
    typedef uint16_t raw;
    static constexpr int V = 8;
    __device__ static float cvt(uint16_t r) { return BF16 ? dk_bf16_to_f32(r) : dk_f16_to_f32(r); }
    __device__ static void unpack(uint4 u, float *v) {
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
        for (int k = 0; k < 4; k++) {
            v[2 * k] = cvt((uint16_t)(w[k] & 0xffffu));
            v[2 * k + 1] = cvt((uint16_t)(w[k] >> 16));
        }
    }
    __device__ static float load(const char *p, int64_t off, int) {
        return cvt(((const uint16_t *)p)[off]);
    }
};
typedef Ld16<false> LdF16;
typedef Ld16<true> LdBF16;

/* Any dtype, converted per element (runtime dtype switch). */
struct LdF64 {
    typedef double acc;
    typedef double carry;
    static constexpr int V = 1;
    __device__ static double load(const char *p, int64_t off, int dt) {
        return dk_load_f64(p + off * dk_size(dt), dt);
    }
};

struct LdI64 {
    typedef int64_t acc;
    typedef int64_t carry;
    static constexpr int V = 1;
    __device__ static int64_t load(const char *p, int64_t off, int dt) {
        return dk_load_i64(p + off * dk_size(dt), dt);
    }
};

/* ---- arithmetic ----------------------------------------------------------- */

template <class T> __device__ __forceinline__ constexpr bool is_int() { return std::is_integral<T>::value; }

/* Integer adds and products wrap, as torch's do. */
template <class T> __device__ __forceinline__ T add(T a, T b) {
    if constexpr (is_int<T>()) return (T)((uint64_t)a + (uint64_t)b);
    else return a + b;
}
template <class T> __device__ __forceinline__ T mul(T a, T b) {
    if constexpr (is_int<T>()) return (T)((uint64_t)a * (uint64_t)b);
    else return a * b;
}
template <class T> __device__ __forceinline__ bool is_nan(T v) {
    if constexpr (is_int<T>()) return false;
    else return v != v;
}
/* The identity of max (lowest) and of min (highest). */
template <class T> __device__ __forceinline__ T lowest() {
    if constexpr (is_int<T>()) return INT64_MIN;
    else return -(T)INFINITY;
}
template <class T> __device__ __forceinline__ T highest() {
    if constexpr (is_int<T>()) return INT64_MAX;
    else return (T)INFINITY;
}

/* A compensated sum for floats (Neumaier's variant of Kahan's, which
 * also keeps what a large term cancels later), a wrapping one for
 * integers.  The compensation stops once the sum is not finite, so
 * inf + 1 stays inf instead of becoming NaN. */
template <class T> struct Sum {
    T s, c;
    __device__ void put(T x) {
        if constexpr (is_int<T>()) {
            s = add(s, x);
        } else {
            T t = s + x;
            if (isfinite(t)) c += fabs(s) >= fabs(x) ? (s - t) + x : (x - t) + s;
            s = t;
        }
    }
    __device__ T value() const {
        if constexpr (is_int<T>()) return s;
        else return s + c;
    }
};

/* Combining operators (commutative, so every lane of a butterfly ends
 * with the same value). */
struct AddOp {
    template <class T> __device__ T operator()(T a, T b) const { return add(a, b); }
};
struct MulOp {
    template <class T> __device__ T operator()(T a, T b) const { return mul(a, b); }
};
struct ExtOp { /* max or min; NaN wins */
    bool max;
    template <class T> __device__ T operator()(T a, T b) const {
        if (is_nan(a)) return a;
        if (is_nan(b)) return b;
        return (max ? b > a : b < a) ? b : a;
    }
};
struct OrOp {
    __device__ int operator()(int a, int b) const { return a | b; }
};
struct AndOp {
    __device__ int operator()(int a, int b) const { return a & b; }
};

template <class T> struct Arg {
    T v;
    int64_t i;
};
struct ArgOp { /* the extreme, NaN first, then the lowest index */
    bool max;
    template <class T> __device__ Arg<T> operator()(Arg<T> a, Arg<T> b) const {
        bool an = is_nan(a.v), bn = is_nan(b.v);
        if (an || bn) return an && bn ? (a.i < b.i ? a : b) : an ? a : b;
        if (a.v == b.v) return a.i < b.i ? a : b;
        return (max ? a.v > b.v : a.v < b.v) ? a : b;
    }
};

template <class T> __device__ __forceinline__ T shfl_xor(T v, int m) {
    return __shfl_xor_sync(0xffffffffu, v, m);
}
template <class T> __device__ __forceinline__ Arg<T> shfl_xor(Arg<T> v, int m) {
    return {shfl_xor(v.v, m), shfl_xor(v.i, m)};
}

/* Combine v over the tpr threads of a row (1, a warp or the block); every
 * thread of the row gets the result.  Block mode: all threads call it. */
template <class A, class C>
__device__ __forceinline__ A group_reduce(A v, int tpr, C op) {
    if (tpr == 1) return v;
    for (int m = 16; m > 0; m >>= 1) v = op(v, shfl_xor(v, m));
    if (tpr == 32) return v;
    __shared__ A part[32];
    __syncthreads(); /* the previous use of `part` is over */
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    A r = part[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); w++) r = op(r, part[w]);
    return r;
}

/* Store v at element pos of a dense output of dtype dt. */
template <class T> __device__ __forceinline__ void store_val(void *out, int dt, int64_t pos, T v) {
    if constexpr (is_int<T>()) dk_store_i64(dk_at(out, dt, pos), dt, v);
    else dk_store_f64(dk_at(out, dt, pos), dt, (double)v);
}

/* ---- walking a row ---------------------------------------------------------- */

/* f(x, j) for the elements j of a row that thread `lane` of `tpr` owns.
 * Element j sits at base + offset(j) over (nr, rshape, rstride); a
 * contiguous row of a typed loader is read in aligned 16-byte vectors
 * (an unaligned head and the tail one by one). */
template <class L, class F>
__device__ __forceinline__ void row_for(const char *base, int64_t count, int nr,
                                        const int64_t *rshape, const int64_t *rstride, int dt,
                                        int lane, int tpr, F f) {
    if constexpr (L::V > 1) {
        if (nr == 1 && rstride[0] == 1) {
            typedef typename L::raw R;
            const R *p = (const R *)base;
            int64_t mis = (int64_t)(((uintptr_t)p & 15) / sizeof(R));
            int64_t head = mis ? L::V - mis : 0;
            if (head > count) head = count;
            for (int64_t j = lane; j < head; j += tpr) f(L::cvt(p[j]), j);
            int64_t nv = (count - head) / L::V;
            const uint4 *pv = (const uint4 *)(p + head);
            for (int64_t i = lane; i < nv; i += tpr) {
                float v[L::V];
                L::unpack(pv[i], v);
                for (int k = 0; k < L::V; k++) f(v[k], head + i * L::V + k);
            }
            for (int64_t j = head + nv * L::V + lane; j < count; j += tpr) f(L::cvt(p[j]), j);
            return;
        }
    }
    for (int64_t j = lane; j < count; j += tpr) {
        int64_t off = nr == 1 ? j * rstride[0] : dk_offset(j, nr, rshape, rstride);
        f(L::load(base, off, dt), j);
    }
}

/* ---- reductions ----------------------------------------------------------- */

/* One row of a reduction: every thread of the row calls it (dead rows of
 * the last block with count 0 and row -1, so block-wide steps still
 * line up); lane 0 stores. */
template <class L, int OP>
__device__ __forceinline__ void red_row(const pcu_red &a, const char *base, int64_t count,
                                        int lane, int tpr, int64_t row) {
    typedef typename L::acc T;
    bool store = row >= 0 && lane == 0;
    auto each = [&](auto f) {
        row_for<L>(base, count, a.nr, a.rshape, a.rstride, a.idt, lane, tpr, f);
    };
    if constexpr (OP == PCU_RED_SUM) {
        Sum<T> s = {0, 0};
        each([&](T x, int64_t) { s.put(x); });
        T v = group_reduce(s.value(), tpr, AddOp());
        if (!store) return;
        if (a.mean) store_val(a.out, a.odt, row, (double)v / (double)a.count);
        else store_val(a.out, a.odt, row, v);
    } else if constexpr (OP == PCU_RED_PROD) {
        T p = 1;
        each([&](T x, int64_t) { p = mul(p, x); });
        p = group_reduce(p, tpr, MulOp());
        if (store) store_val(a.out, a.odt, row, p);
    } else if constexpr (OP == PCU_RED_EXT) {
        ExtOp op = {a.flag != 0};
        T m = a.flag ? lowest<T>() : highest<T>();
        each([&](T x, int64_t) { m = op(m, x); });
        m = group_reduce(m, tpr, op);
        if (store) store_val(a.out, a.odt, row, m);
    } else if constexpr (OP == PCU_RED_ANYALL) {
        int r = a.flag ? 0 : 1;
        if (a.flag) each([&](T x, int64_t) { r |= x != 0; });
        else each([&](T x, int64_t) { r &= x != 0; });
        r = a.flag ? group_reduce(r, tpr, OrOp()) : group_reduce(r, tpr, AndOp());
        if (store) store_val(a.out, a.odt, row, (double)r);
    } else if constexpr (OP == PCU_RED_LSE) {
        ExtOp op = {true};
        T m = lowest<T>();
        each([&](T x, int64_t) { m = op(m, x); });
        m = group_reduce(m, tpr, op);
        if (isinf(m) || is_nan(m)) m = 0; /* an infinite max would make x - m NaN */
        Sum<T> s = {0, 0};
        each([&](T x, int64_t) { s.put(exp(x - m)); });
        T t = group_reduce(s.value(), tpr, AddOp());
        if (store) store_val(a.out, a.odt, row, log(t) + m);
    } else if constexpr (OP == PCU_RED_NORM) {
        T r;
        if (isinf(a.p)) {
            ExtOp op = {a.p > 0};
            r = a.p > 0 ? (T)0 : highest<T>();
            each([&](T x, int64_t) { r = op(r, (T)fabs(x)); });
            r = group_reduce(r, tpr, op);
        } else {
            T p = (T)a.p;
            Sum<T> s = {0, 0};
            if (a.p == 0) each([&](T x, int64_t) { s.put(x != 0 ? (T)1 : (T)0); });
            else if (a.p == 1) each([&](T x, int64_t) { s.put((T)fabs(x)); });
            else if (a.p == 2) each([&](T x, int64_t) { s.put(x * x); });
            else each([&](T x, int64_t) { s.put((T)pow((T)fabs(x), p)); });
            r = group_reduce(s.value(), tpr, AddOp());
            if (a.p == 2) r = sqrt(r);
            else if (a.p != 0 && a.p != 1) r = pow(r, (T)1 / p);
        }
        if (store) store_val(a.out, a.odt, row, r);
    } else if constexpr (OP == PCU_RED_VAR) {
        /* two passes, like the CPU: the mean, then squared deviations */
        Sum<T> s = {0, 0};
        each([&](T x, int64_t) { s.put(x); });
        T m = group_reduce(s.value(), tpr, AddOp()) / (T)a.count;
        Sum<T> q = {0, 0};
        each([&](T x, int64_t) { q.put((x - m) * (x - m)); });
        T ss = group_reduce(q.value(), tpr, AddOp());
        if (!store) return;
        double v = (double)ss / fmax((double)a.count - a.p, 0.0);
        store_val(a.out, a.odt, row, a.take_sqrt ? sqrt(v) : v);
        if (a.out2) store_val(a.out2, a.odt2, row, m);
    } else if constexpr (OP == PCU_RED_ARG) {
        ArgOp op = {a.flag != 0};
        Arg<T> r = {a.flag ? lowest<T>() : highest<T>(), INT64_MAX};
        each([&](T x, int64_t j) { r = op(r, Arg<T>{x, j}); });
        r = group_reduce(r, tpr, op);
        if (!store) return;
        if (a.out) store_val(a.out, a.odt, row, r.v);
        if (a.out2) store_val(a.out2, a.odt2, row, r.i);
    }
}

/* f(row, count, lane) for the rows of this thread: `tpr` threads per row,
 * blockDim / tpr rows per block, grid-stride.  Spare threads of the last
 * block get row -1 and count 0, so block-wide steps still line up. */
template <class F>
__device__ __forceinline__ void for_rows(int tpr, int64_t outer, int64_t count, F f) {
    const int rpb = (int)blockDim.x / tpr;
    const int lane = tpr == 1 ? 0 : (int)(threadIdx.x % tpr);
    for (int64_t first = (int64_t)blockIdx.x * rpb; first < outer; first += (int64_t)gridDim.x * rpb) {
        int64_t row = first + threadIdx.x / tpr;
        bool live = row < outer;
        f(live ? row : -1, live ? count : 0, lane);
    }
}

template <class L, int OP>
__global__ void __launch_bounds__(1024) red_k(pcu_red a) {
    for_rows(a.tpr, a.outer, a.count, [&](int64_t row, int64_t count, int lane) {
        int64_t off = row >= 0 ? dk_offset(row, a.nk, a.kshape, a.kstride) : 0;
        red_row<L, OP>(a, (const char *)a.in + off * dk_size(a.idt), count, lane, a.tpr, row);
    });
}

/* ---- softmax / log_softmax / cumsum ------------------------------------- */

template <class L>
__global__ void __launch_bounds__(1024) softmax_k(pcu_along a) {
    typedef typename L::acc T;
    for_rows(a.tpr, a.outer, a.count, [&](int64_t row, int64_t count, int lane) {
        int64_t ib = row >= 0 ? dk_offset(row, a.nk, a.kshape, a.kstride) : 0;
        int64_t ob = row >= 0 ? dk_offset(row, a.nk, a.kshape, a.okstride) : 0;
        const char *base = (const char *)a.in + ib * dk_size(a.idt);
        int64_t rs = a.rstride;
        auto each = [&](auto f) { row_for<L>(base, count, 1, &count, &rs, a.idt, lane, a.tpr, f); };
        ExtOp op = {true};
        T m = lowest<T>();
        each([&](T x, int64_t) { m = op(m, x); });
        m = group_reduce(m, a.tpr, op);
        Sum<T> s = {0, 0};
        each([&](T x, int64_t) { s.put(exp(x - m)); });
        T t = group_reduce(s.value(), a.tpr, AddOp()), lt = log(t);
        if (a.op == PCU_ALONG_LOG_SOFTMAX)
            each([&](T x, int64_t j) { store_val(a.out, a.odt, ob + j * a.orstride, x - m - lt); });
        else
            each([&](T x, int64_t j) { store_val(a.out, a.odt, ob + j * a.orstride, exp(x - m) / t); });
    });
}

/* Inclusive scan of x over the block; *total gets the block's sum. */
template <class T> __device__ __forceinline__ T block_scan(T x, T *total) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 1; o < 32; o <<= 1) {
        T y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x = add(x, y);
    }
    __shared__ T part[32];
    __syncthreads();
    if (lane == 31) part[w] = x;
    __syncthreads();
    T before = 0, all = 0;
    for (int i = 0; i < nw; i++) {
        if (i < w) before = add(before, part[i]);
        all = add(all, part[i]);
    }
    *total = all;
    return add(before, x);
}

/* cumsum: a thread per row (tpr 1), or a block per row scanning tiles of
 * blockDim elements with a running carry. */
template <class L>
__global__ void __launch_bounds__(1024) cumsum_k(pcu_along a) {
    typedef typename L::acc T;
    typedef typename L::carry C;
    for_rows(a.tpr, a.outer, a.count, [&](int64_t row, int64_t count, int lane) {
        int64_t ib = row >= 0 ? dk_offset(row, a.nk, a.kshape, a.kstride) : 0;
        int64_t ob = row >= 0 ? dk_offset(row, a.nk, a.kshape, a.okstride) : 0;
        const char *base = (const char *)a.in + ib * dk_size(a.idt);
        C carry = 0;
        if (a.tpr == 1) {
            for (int64_t j = 0; j < count; j++) {
                carry = add(carry, (C)L::load(base, j * a.rstride, a.idt));
                store_val(a.out, a.odt, ob + j * a.orstride, carry);
            }
        } else {
            for (int64_t t0 = 0; t0 < count; t0 += blockDim.x) {
                int64_t j = t0 + threadIdx.x;
                T total, x = j < count ? L::load(base, j * a.rstride, a.idt) : (T)0;
                T inc = block_scan(x, &total);
                if (j < count) store_val(a.out, a.odt, ob + j * a.orstride, add(carry, (C)inc));
                carry = add(carry, (C)total);
            }
        }
        (void)lane;
    });
}

/* ---- launchers ------------------------------------------------------------ */

dim3 rows_grid(int64_t outer, int tpr, int threads) {
    int64_t rpb = threads / tpr, b = (outer + rpb - 1) / rpb;
    return dim3((unsigned int)(b < 1 ? 1 : b > 65536 ? 65536 : b));
}

template <class L>
cudaError_t red_launch_ld(const pcu_red *a, int threads, cudaStream_t s) {
    dim3 g = rows_grid(a->outer, a->tpr, threads);
    switch (a->op) {
    case PCU_RED_SUM: red_k<L, PCU_RED_SUM><<<g, threads, 0, s>>>(*a); break;
    case PCU_RED_PROD: red_k<L, PCU_RED_PROD><<<g, threads, 0, s>>>(*a); break;
    case PCU_RED_EXT: red_k<L, PCU_RED_EXT><<<g, threads, 0, s>>>(*a); break;
    case PCU_RED_ARG: red_k<L, PCU_RED_ARG><<<g, threads, 0, s>>>(*a); break;
    default:
        if constexpr (is_int<typename L::acc>()) {
            return cudaErrorInvalidValue; /* float math only */
        } else {
            switch (a->op) {
            case PCU_RED_ANYALL: red_k<L, PCU_RED_ANYALL><<<g, threads, 0, s>>>(*a); break;
            case PCU_RED_LSE: red_k<L, PCU_RED_LSE><<<g, threads, 0, s>>>(*a); break;
            case PCU_RED_NORM: red_k<L, PCU_RED_NORM><<<g, threads, 0, s>>>(*a); break;
            case PCU_RED_VAR: red_k<L, PCU_RED_VAR><<<g, threads, 0, s>>>(*a); break;
            default: return cudaErrorInvalidValue;
            }
        }
    }
    return cudaGetLastError();
}

template <class L>
cudaError_t along_launch_ld(const pcu_along *a, int threads, cudaStream_t s) {
    dim3 g = rows_grid(a->outer, a->tpr, threads);
    if (a->op == PCU_ALONG_CUMSUM) {
        cumsum_k<L><<<g, threads, 0, s>>>(*a);
    } else {
        if constexpr (is_int<typename L::acc>()) return cudaErrorInvalidValue;
        else softmax_k<L><<<g, threads, 0, s>>>(*a);
    }
    return cudaGetLastError();
}

} // namespace

extern "C" cudaError_t pcu_red_launch(const pcu_red *a, int threads, cudaStream_t s) {
    switch (a->ld) {
    case PCU_LD_F32: return red_launch_ld<LdF32>(a, threads, s);
    case PCU_LD_F16: return red_launch_ld<LdF16>(a, threads, s);
    case PCU_LD_BF16: return red_launch_ld<LdBF16>(a, threads, s);
    case PCU_LD_F64: return red_launch_ld<LdF64>(a, threads, s);
    case PCU_LD_I64: return red_launch_ld<LdI64>(a, threads, s);
    default: return cudaErrorInvalidValue;
    }
}

extern "C" cudaError_t pcu_along_launch(const pcu_along *a, int threads, cudaStream_t s) {
    switch (a->ld) {
    case PCU_LD_F32: return along_launch_ld<LdF32>(a, threads, s);
    case PCU_LD_F16: return along_launch_ld<LdF16>(a, threads, s);
    case PCU_LD_BF16: return along_launch_ld<LdBF16>(a, threads, s);
    case PCU_LD_F64: return along_launch_ld<LdF64>(a, threads, s);
    case PCU_LD_I64: return along_launch_ld<LdI64>(a, threads, s);
    default: return cudaErrorInvalidValue;
    }
}
