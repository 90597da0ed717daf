/*
** tensor.c -- strided tensor helpers shared by the executor and kernels:
** contiguity, broadcasting, and the converting element copy.
*/
#include <math.h>
#include <string.h>

#include "kernel.h"

bool pt_is_contiguous(const pt_tensor *t) {
    int64_t expect = 1;
    for (int i = t->rank - 1; i >= 0; i--) {
        if (t->shape[i] == 1) continue;
        if (t->stride[i] != expect) return false;
        expect *= t->shape[i];
    }
    return true;
}

bool pt_broadcast_shape(int ra, const int64_t *a, int rb, const int64_t *b, int *rout, int64_t *out) {
    int r = ra > rb ? ra : rb;
    if (r > PETREL_MAX_RANK) return false;
    for (int i = 0; i < r; i++) {
        int64_t da = i < r - ra ? 1 : a[i - (r - ra)];
        int64_t db = i < r - rb ? 1 : b[i - (r - rb)];
        if (da != db && da != 1 && db != 1) return false;
        out[i] = da == 1 ? db : da;
    }
    *rout = r;
    return true;
}

bool pt_broadcast_to(const pt_tensor *t, int rank, const int64_t *shape, pt_tensor *out) {
    if (rank < t->rank || rank > PETREL_MAX_RANK) return false;
    pt_tensor o = *t;
    o.rank = rank;
    int off = rank - t->rank;
    for (int i = 0; i < rank; i++) {
        if (i < off) {
            o.shape[i] = shape[i];
            o.stride[i] = 0;
            continue;
        }
        int64_t d = t->shape[i - off];
        if (d == shape[i]) {
            o.shape[i] = d;
            o.stride[i] = t->stride[i - off];
        } else if (d == 1) {
            o.shape[i] = shape[i];
            o.stride[i] = 0;
        } else {
            return false;
        }
    }
    *out = o;
    return true;
}

void pt_copy_into(const pt_tensor *dst, const pt_tensor *src) {
    int64_t n = pt_numel(dst);
    if (n == 0) return;
    size_t es = pt_elsize(dst);
    if (dst->dtype == src->dtype && pt_is_contiguous(dst) && pt_is_contiguous(src)) {
        memmove(dst->data, src->data, (size_t)n * es);
        return;
    }
    int64_t idx[PETREL_MAX_RANK] = {0};
    int r = dst->rank;
    if (dst->dtype == src->dtype && r > 1 && dst->stride[r - 1] == 1 && src->stride[r - 1] == 1) {
        /* rows contiguous on both sides: one move per row */
        size_t row = (size_t)dst->shape[r - 1] * es;
        do {
            memmove(pt_at(dst, idx), pt_at(src, idx), row);
        } while (pt_next_index(idx, dst->shape, r - 1));
        return;
    }
    bool fl = pt_dtype_is_float(dst->dtype) || pt_dtype_is_float(src->dtype);
    do {
        uint8_t *d = pt_at(dst, idx);
        const uint8_t *s = pt_at(src, idx);
        if (dst->dtype == src->dtype) memcpy(d, s, es);
        else if (fl) pt_store_f64(d, dst->dtype, pt_load_f64(s, src->dtype));
        else pt_store_i64(d, dst->dtype, pt_load_i64(s, src->dtype));
    } while (pt_next_index(idx, dst->shape, dst->rank));
}

/* Restore the min-heap property (smallest key at the root) below i. */
static void topk_sift(uint64_t *h, int32_t n, int32_t i) {
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && h[l] < h[m]) m = l;
        if (r < n && h[r] < h[m]) m = r;
        if (m == i) return;
        uint64_t t = h[i];
        h[i] = h[m], h[m] = t;
        i = m;
    }
}

void pt_topk_row(const pt_tensor *row, int32_t k, float temperature, int32_t *ids, float *values, int32_t *n) {
    /* a min-heap of the k largest keys so far, kept in ids/values' space
     * would need a second pass: the keys carry both, so they are the heap */
    uint64_t heap[PETREL_TOPK_MAX];
    int32_t m = 0;
    k = k < 0 ? 0 : k > PETREL_TOPK_MAX ? PETREL_TOPK_MAX : k;
    int64_t es = (int64_t)pt_elsize(row);
    for (int64_t i = 0; i < row->shape[0] && k > 0 && i <= 0xffffffffLL; i++) {
        float v = (float)pt_load_f64(row->data + i * row->stride[0] * es, row->dtype) / temperature;
        if (isnan(v)) continue;
        uint64_t key = pt_topk_key(v, (uint32_t)i);
        if (m < k) {
            heap[m++] = key;
            if (m == k)
                for (int32_t j = k / 2; j-- > 0;) topk_sift(heap, k, j);
        } else if (key > heap[0]) {
            heap[0] = key;
            topk_sift(heap, k, 0);
        }
    }
    if (m < k)
        for (int32_t j = m / 2; j-- > 0;) topk_sift(heap, m, j);
    /* heap order out: repeatedly take the smallest to the end */
    for (int32_t e = m; e > 0; e--) {
        pt_topk_unkey(heap[0], &ids[e - 1], &values[e - 1]);
        heap[0] = heap[e - 1];
        topk_sift(heap, e - 1, 0);
    }
    *n = m;
}

int64_t pt_argmax_row(const pt_tensor *row) {
    int64_t best = -1;
    double bv = 0;
    for (int64_t k = 0; k < row->shape[0]; k++) {
        double x = pt_load_f64(row->data + k * row->stride[0] * (int64_t)pt_elsize(row), row->dtype);
        if (!isnan(x) && (best < 0 || x > bv)) best = k, bv = x;
    }
    return best;
}
