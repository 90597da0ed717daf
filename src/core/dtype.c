/*
** dtype.c -- dtype traits, half/bfloat16 conversion, element load/store
** and torch's type promotion table.  Bottom layer.
*/
#include <math.h>
#include <string.h>

#include "core.h"

const pt_dtype_traits pt_dtype_traits_table[PETREL_DTYPE_COUNT] = {
    [PETREL_DTYPE_F32] = {"f32", 4, true, true},
    [PETREL_DTYPE_F16] = {"f16", 2, true, true},
    [PETREL_DTYPE_BF16] = {"bf16", 2, true, true},
    [PETREL_DTYPE_F64] = {"f64", 8, true, true},
    [PETREL_DTYPE_I64] = {"i64", 8, false, true},
    [PETREL_DTYPE_I32] = {"i32", 4, false, true},
    [PETREL_DTYPE_I16] = {"i16", 2, false, true},
    [PETREL_DTYPE_I8] = {"i8", 1, false, true},
    [PETREL_DTYPE_U8] = {"u8", 1, false, false},
    [PETREL_DTYPE_BOOL] = {"bool", 1, false, false},
};
_Static_assert(PETREL_DTYPE_COUNT == 10, "update pt_dtype_traits_table");

size_t petrel_dtype_size(petrel_dtype dt) {
    return pt_dtype_valid((int)dt) ? pt_dtype_traits_table[dt].size : 0;
}

const char *petrel_dtype_name(petrel_dtype dt) {
    return pt_dtype_valid((int)dt) ? pt_dtype_traits_table[dt].name : "?";
}

int64_t petrel_tensor_numel(const petrel_tensor_desc *t) {
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= t->shape[i];
    return n;
}

double petrel_tensor_get_f64(const petrel_tensor_desc *t, int64_t i) {
    if (!t || !t->data || !pt_dtype_valid((int)t->dtype)) return 0.0;
    return pt_load_f64((const uint8_t *)t->data + (size_t)i * pt_dtype_traits_table[t->dtype].size, t->dtype);
}

/* ---- half precision ----------------------------------------------------- */

float pt_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    union { uint32_t u; float f; } v;
    if (exp == 0) {
        /* zero or subnormal: value = man * 2^-24 */
        float f = (float)man * 5.9604644775390625e-8f;
        return sign ? -f : f;
    } else if (exp == 31) {
        v.u = sign | 0x7f800000u | (man << 13);
    } else {
        v.u = sign | ((exp + 112) << 23) | (man << 13);
    }
    return v.f;
}

uint16_t pt_f32_to_f16(float f) {
    union { uint32_t u; float f; } v = {.f = f};
    uint32_t sign = (v.u >> 16) & 0x8000;
    uint32_t absu = v.u & 0x7fffffffu;
    if (absu >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absu > 0x7f800000u ? 0x200 : 0));
    if (absu >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (absu < 0x38800000u) {
        /* result is subnormal (or zero): round |f| * 2^24 to nearest even */
        float a = fabsf(f) * 16777216.0f;
        float r = nearbyintf(a); /* default rounding mode: ties to even */
        return (uint16_t)(sign | (uint32_t)r);
    }
    uint32_t exp = ((absu >> 23) - 112) << 10;
    uint32_t man = (absu >> 13) & 0x3ff;
    uint32_t rest = absu & 0x1fff;
    uint32_t h = exp | man;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++; /* carries into exponent correctly */
    return (uint16_t)(sign | h);
}

/* ---- element access ----------------------------------------------------- */

double pt_load_f64_any(const void *p, petrel_dtype dt) {
    switch (dt) {
    case PETREL_DTYPE_F32: { float x; memcpy(&x, p, 4); return x; }
    case PETREL_DTYPE_F16: { uint16_t x; memcpy(&x, p, 2); return pt_f16_to_f32(x); }
    case PETREL_DTYPE_BF16: { uint16_t x; memcpy(&x, p, 2); return pt_bf16_to_f32(x); }
    case PETREL_DTYPE_F64: { double x; memcpy(&x, p, 8); return x; }
    case PETREL_DTYPE_I64: { int64_t x; memcpy(&x, p, 8); return (double)x; }
    case PETREL_DTYPE_I32: { int32_t x; memcpy(&x, p, 4); return x; }
    case PETREL_DTYPE_I16: { int16_t x; memcpy(&x, p, 2); return x; }
    case PETREL_DTYPE_I8: return *(const int8_t *)p;
    case PETREL_DTYPE_U8: return *(const uint8_t *)p;
    case PETREL_DTYPE_BOOL: return *(const uint8_t *)p ? 1.0 : 0.0;
    case PETREL_DTYPE_COUNT: break;
    }
    return 0;
}

/* Float -> int like a C cast, but defined for NaN/out-of-range values
 * (which torch leaves undefined): they become INT64_MIN, as on x86. */
static int64_t f64_to_i64(double d) {
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return INT64_MIN;
    return (int64_t)d;
}

int64_t pt_load_i64(const void *p, petrel_dtype dt) {
    switch (dt) {
    case PETREL_DTYPE_I64: { int64_t x; memcpy(&x, p, 8); return x; }
    case PETREL_DTYPE_I32: { int32_t x; memcpy(&x, p, 4); return x; }
    case PETREL_DTYPE_I16: { int16_t x; memcpy(&x, p, 2); return x; }
    case PETREL_DTYPE_I8: return *(const int8_t *)p;
    case PETREL_DTYPE_U8: return *(const uint8_t *)p;
    case PETREL_DTYPE_BOOL: return *(const uint8_t *)p ? 1 : 0;
    default: return f64_to_i64(pt_load_f64(p, dt));
    }
}

void pt_store_f64_any(void *p, petrel_dtype dt, double v) {
    switch (dt) {
    case PETREL_DTYPE_F32: { float x = (float)v; memcpy(p, &x, 4); return; }
    case PETREL_DTYPE_F16: { uint16_t x = pt_f32_to_f16((float)v); memcpy(p, &x, 2); return; }
    case PETREL_DTYPE_BF16: { uint16_t x = pt_f32_to_bf16((float)v); memcpy(p, &x, 2); return; }
    case PETREL_DTYPE_F64: memcpy(p, &v, 8); return;
    case PETREL_DTYPE_BOOL: *(uint8_t *)p = v != 0; return;
    default: pt_store_i64(p, dt, f64_to_i64(v)); return;
    }
}

void pt_store_i64(void *p, petrel_dtype dt, int64_t v) {
    switch (dt) {
    case PETREL_DTYPE_I64: memcpy(p, &v, 8); return;
    case PETREL_DTYPE_I32: { int32_t x = (int32_t)v; memcpy(p, &x, 4); return; }
    case PETREL_DTYPE_I16: { int16_t x = (int16_t)v; memcpy(p, &x, 2); return; }
    case PETREL_DTYPE_I8: *(int8_t *)p = (int8_t)v; return;
    case PETREL_DTYPE_U8: *(uint8_t *)p = (uint8_t)v; return;
    case PETREL_DTYPE_BOOL: *(uint8_t *)p = v != 0; return;
    default: pt_store_f64(p, dt, (double)v); return;
    }
}

/* ---- promotion ---------------------------------------------------------- */

/* Rank of each dtype in torch's promotion lattice for the simple cases. */
petrel_dtype pt_promote(petrel_dtype a, petrel_dtype b) {
    if (a == b) return a;
    if (a == PETREL_DTYPE_BOOL) return b;
    if (b == PETREL_DTYPE_BOOL) return a;
    bool fa = pt_dtype_is_float(a), fb = pt_dtype_is_float(b);
    if (fa && !fb) return a;
    if (fb && !fa) return b;
    if (fa && fb) {
        if (a == PETREL_DTYPE_F64 || b == PETREL_DTYPE_F64) return PETREL_DTYPE_F64;
        if (a == PETREL_DTYPE_F32 || b == PETREL_DTYPE_F32) return PETREL_DTYPE_F32;
        return PETREL_DTYPE_F32; /* f16 with bf16 */
    }
    /* both integral, different */
    if (a == PETREL_DTYPE_U8 || b == PETREL_DTYPE_U8) {
        petrel_dtype o = a == PETREL_DTYPE_U8 ? b : a;
        return o == PETREL_DTYPE_I8 ? PETREL_DTYPE_I16 : o;
    }
    return pt_dtype_traits_table[a].size > pt_dtype_traits_table[b].size ? a : b;
}
