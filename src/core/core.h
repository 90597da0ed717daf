/*
** core.h -- internal basics shared by every layer: status helpers, error
** messages, allocation wrappers and dtype traits.  Depends on nothing but
** the public header.
*/
#ifndef PETREL_CORE_H
#define PETREL_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "petrel.h"

#define PT_HIDDEN __attribute__((visibility("hidden")))

/* ---- errors ------------------------------------------------------------- */

/* A message buffer carried by every handle that can fail. */
typedef struct pt_err {
    char msg[512];
} pt_err;

/* Format a message into `e` (NULL = the thread's last-error buffer), log it
 * at ERROR level, and return `st` so callers can `return pt_fail(...)`. */
PT_HIDDEN petrel_status pt_fail(pt_err *e, petrel_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
PT_HIDDEN petrel_status pt_vfail(pt_err *e, petrel_status st, const char *fmt, va_list ap);
/* Copy a message into the thread's last-error buffer. */
PT_HIDDEN void pt_set_last_error(const char *msg);
PT_HIDDEN void pt_log(petrel_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define PT_TRY(expr)                                                                 \
    do {                                                                             \
        petrel_status pt_try_st_ = (expr);                                           \
        if (pt_try_st_ != PETREL_OK) return pt_try_st_;                              \
    } while (0)

#define PT_CHECK(cond, err, st, ...)                                                 \
    do {                                                                             \
        if (!(cond)) return pt_fail((err), (st), __VA_ARGS__);                       \
    } while (0)

/* ---- allocation --------------------------------------------------------- */

/* All library allocations go through these so a test can make the Nth one
 * fail.  pt_calloc/pt_malloc return NULL on failure (or overflow). */
PT_HIDDEN void *pt_malloc(size_t n);
PT_HIDDEN void *pt_calloc(size_t count, size_t size);
PT_HIDDEN void *pt_realloc(void *p, size_t n);
PT_HIDDEN void pt_free(void *p);
PT_HIDDEN char *pt_strdup(const char *s);
/* Test hook: make allocation number `n` (1-based, counting from now) fail;
 * 0 disables.  Returns the number of allocations made since the last call. */
PT_HIDDEN int64_t pt_alloc_fail_at(int64_t n);

/* Overflow-checked size arithmetic: false when the result does not fit. */
static inline bool pt_mul_ok(int64_t a, int64_t b, int64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool pt_add_ok(int64_t a, int64_t b, int64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* A read-only mapping of a whole file. */
typedef struct pt_mapping {
    const uint8_t *data;
    uint64_t size;
} pt_mapping;

/* Map `path` read-only; errors name the file. */
PT_HIDDEN petrel_status pt_map_file(pt_mapping *m, const char *path, pt_err *err);
PT_HIDDEN void pt_unmap_file(pt_mapping *m);

/* CRC-32 (IEEE 802.3, as zip uses), continued from `crc` (0 to start). */
PT_HIDDEN uint32_t pt_crc32(uint32_t crc, const void *data, size_t n);

/* ---- dtypes ------------------------------------------------------------- */

typedef struct pt_dtype_traits {
    const char *name;
    size_t size;
    bool is_float;
    bool is_signed;
} pt_dtype_traits;

PT_HIDDEN extern const pt_dtype_traits pt_dtype_traits_table[PETREL_DTYPE_COUNT];

static inline bool pt_dtype_valid(int dt) { return dt >= 0 && dt < PETREL_DTYPE_COUNT; }
static inline bool pt_dtype_is_float(petrel_dtype dt) { return pt_dtype_traits_table[dt].is_float; }

/* IEEE half / bfloat16 conversions (round to nearest even). */
PT_HIDDEN float pt_f16_to_f32(uint16_t h);
PT_HIDDEN uint16_t pt_f32_to_f16(float f);
static inline float pt_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)h << 16;
    return v.f;
}
static inline uint16_t pt_f32_to_bf16(float f) {
    union { uint32_t u; float f; } v = {.f = f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40); /* quiet nan */
    uint32_t lsb = (v.u >> 16) & 1;
    v.u += 0x7fff + lsb;
    return (uint16_t)(v.u >> 16);
}
/* The bits of a bf16 (bf16 true) or f16 number as float. */
static inline float pt_half_to_f32(uint16_t h, bool bf16) { return bf16 ? pt_bf16_to_f32(h) : pt_f16_to_f32(h); }

/* Read / write one element as double or int64, converting like torch's
 * static_cast (float -> int truncates toward zero; anything -> bool is != 0). */
PT_HIDDEN double pt_load_f64_any(const void *p, petrel_dtype dt);
PT_HIDDEN int64_t pt_load_i64(const void *p, petrel_dtype dt);
PT_HIDDEN void pt_store_f64_any(void *p, petrel_dtype dt, double v);
PT_HIDDEN void pt_store_i64(void *p, petrel_dtype dt, int64_t v);
/* pt_load_f64 / pt_store_f64: f32 and bf16 inline (the kernels' loops over
 * elements call them once per element), every dtype through the _any
 * forms. */
static inline double pt_load_f64(const void *p, petrel_dtype dt) {
    if (dt == PETREL_DTYPE_F32) {
        float x;
        memcpy(&x, p, 4);
        return x;
    }
    if (dt == PETREL_DTYPE_BF16) {
        uint16_t x;
        memcpy(&x, p, 2);
        return pt_bf16_to_f32(x);
    }
    return pt_load_f64_any(p, dt);
}
static inline void pt_store_f64(void *p, petrel_dtype dt, double v) {
    if (dt == PETREL_DTYPE_F32) {
        float x = (float)v;
        memcpy(p, &x, 4);
    } else if (dt == PETREL_DTYPE_BF16) {
        uint16_t x = pt_f32_to_bf16((float)v);
        memcpy(p, &x, 2);
    } else {
        pt_store_f64_any(p, dt, v);
    }
}

/* torch's type promotion between two dtypes (promoteTypes). */
PT_HIDDEN petrel_dtype pt_promote(petrel_dtype a, petrel_dtype b);

#endif /* PETREL_CORE_H */
