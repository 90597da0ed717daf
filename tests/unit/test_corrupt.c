/*
** test_corrupt.c -- thousands of damaged copies of real fixtures, in both
** formats, each loaded from memory and, when it loads, looked at (as
** `petrel inspect` does) and run once on the fixture's real inputs.  Every
** outcome must be clean: a status other than OK with a non-empty one-line
** message, or a program that runs.  Never a crash, a leak or undefined
** behaviour (`make test-asan` runs this too).
**
** The damage is seeded (each case has its own seed, so a failure can be
** replayed alone) and comes in kinds:
**   raw      byte flips, runs of 0x00/0xFF, truncation, a range removed or
**            duplicated -- for both formats
**   zip      a field of a local header, a central directory entry or an end
**            record set to an edge value (.pt2)
**   json     model.json or another JSON entry edited as text (digits
**            changed, a quote or bracket deleted, keys or string values
**            swapped, numbers replaced by edge values, ranges deleted or
**            repeated); the entry is resized and the archive's offsets
**            fixed, so the damage gets past the zip reader to the importer
**   weights  bytes of a weight payload changed: must load and run
**   sealed   .petrel damage inside a section, in the section table or in
**            the header, with every checksum recomputed afterwards, so it
**            reaches the graph reader and the verifier
**
** usage: test_corrupt [-v] [CASES] [FIXTURE_SUBSTRING] [FIRST_CASE]
**   CASES (also $PETREL_CORRUPT_CASES): total over all fixtures, default
**   6000 (1000 under ASan); with FIXTURE_SUBSTRING, per format of the
**   fixtures it matches.  -v prints each case and its outcome.  A failure
**   "FAIL llm/qwen3.pt2 case 29" replays with `test_corrupt -v 1 qwen3 29`.
*/
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/core.h"
#include "check.h"

#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN 1
#endif
#endif

#ifdef ASAN
#define DEFAULT_CASES 1000
/* Damage can turn a size into a huge but valid one (a convolution's
 * padding, say): ASan's allocator then returns NULL rather than abort, and
 * the library must say out of memory. */
__attribute__((visibility("default"))) const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1:max_allocation_size_mb=1024"; }
#else
#define DEFAULT_CASES 6000
#endif

/* Fixtures: tiny LLMs (export and core-ATen forms, static KV cache; the
 * MoE one's program compiled with int4 weights, its experts quantized)
 * and three op tests (a weight gather, a convolution, a mutable buffer). */
static const struct {
    const char *model, *inputs;
    int share; /* relative number of cases: the LLMs cost more per load */
    const char *quant; /* the .petrel form's --quant, or NULL */
} fixtures[] = {
    {"tests/fixtures/llama_export/model.pt2", "tests/fixtures/llama_export/step0.in.safetensors", 3, NULL},
    {"tests/fixtures/llm/qwen3.pt2", "tests/fixtures/llama_export/step0.in.safetensors", 3, NULL},
    {"tests/fixtures/embedding_export/model.pt2", "tests/fixtures/embedding_export/step0.in.safetensors", 2, NULL},
    {"tests/fixtures/conv2d_dilation_nobias_aten/model.pt2", "tests/fixtures/conv2d_dilation_nobias_aten/step0.in.safetensors", 2, NULL},
    {"tests/fixtures/state_buffer_add_export/model.pt2", "tests/fixtures/state_buffer_add_export/step0.in.safetensors", 2, NULL},
    {"tests/fixtures/qwen3_moe_export/model.pt2", "tests/fixtures/qwen3_moe_export/step0.in.safetensors", 3, "int4"},
};
#define NFIX (int)(sizeof fixtures / sizeof fixtures[0])

static bool verbose;

/* ---- bytes ------------------------------------------------------------------------ */

/* A damaged copy: exactly n bytes on the heap, so ASan sees any read past
 * the end. */
typedef struct blob {
    uint8_t *p;
    size_t n;
} blob;

static blob blob_new(size_t n) {
    blob b = {malloc(n ? n : 1), n};
    if (!b.p) abort();
    return b;
}

/* p[0:at] + ins[0:ins_n] + p[at+del:n] */
static blob splice(const uint8_t *p, size_t n, size_t at, size_t del, const void *ins, size_t ins_n) {
    blob b = blob_new(n - del + ins_n);
    memcpy(b.p, p, at);
    if (ins_n) memcpy(b.p + at, ins, ins_n);
    memcpy(b.p + at + ins_n, p + at + del, n - at - del);
    return b;
}

static blob copy(const uint8_t *p, size_t n) { return splice(p, n, 0, 0, NULL, 0); }

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = sz > 0 ? malloc((size_t)sz) : NULL;
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static uint64_t rd(const uint8_t *p, int width) {
    uint64_t v = 0;
    for (int i = width - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void wr(uint8_t *p, int width, uint64_t v) {
    for (int i = 0; i < width; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- seeded randomness ------------------------------------------------------------ */

static uint64_t rng;

static uint64_t rnd(void) { /* splitmix64 */
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

/* A value a parser might mishandle, for a field of `width` bytes that held
 * `orig` in a file of n bytes. */
static uint64_t edge_value(uint64_t orig, int width, size_t n) {
    uint64_t ones = width == 8 ? UINT64_MAX : (1ull << (8 * width)) - 1;
    uint64_t v[] = {0, 1, orig + 1, orig - 1, orig ^ (1ull << below((size_t)width * 8)), ones, ones >> 1,
                    (ones >> 1) + 1, n, n + 1, orig * 2, rnd()};
    return v[below(sizeof v / sizeof v[0])] & ones;
}

/* ---- raw damage (both formats) ---------------------------------------------------- */

static blob raw_damage(const uint8_t *p, size_t n, const char **what) {
    blob b;
    size_t at = below(n), len;
    switch (below(5)) {
    case 0:
        *what = "raw: bytes flipped";
        b = copy(p, n);
        for (int k = 1 + (int)below(8); k > 0; k--) b.p[below(n)] ^= (uint8_t)(1 + below(255));
        return b;
    case 1:
        *what = "raw: run of 0x00/0xff";
        b = copy(p, n);
        len = 1 + below(below(2) ? 16 : 512);
        memset(b.p + at, below(2) ? 0xff : 0x00, len < n - at ? len : n - at);
        return b;
    case 2:
        *what = "raw: truncated";
        return copy(p, at);
    case 3:
        *what = "raw: range removed";
        len = 1 + below(below(2) ? 8 : 2048);
        return splice(p, n, at, len < n - at ? len : n - at, NULL, 0);
    default:
        *what = "raw: range duplicated";
        len = 1 + below(below(2) ? 8 : 2048);
        if (len > n - at) len = n - at;
        return splice(p, n, below(n + 1), 0, p + at, len);
    }
}

/* ---- zip archives ----------------------------------------------------------------- */

typedef struct zent {
    size_t cen, lho, data, size; /* central record, local header, payload offsets; payload bytes */
    char name[160];
} zent;

typedef struct zinfo {
    size_t eocd, z64loc, z64; /* 0: no zip64 records */
    int n;
    zent e[64];
    int model_json;           /* index of models/model.json */
} zinfo;

/* Index an intact archive (the fixture); false if it is not the kind of
 * zip torch writes. */
static bool zip_index(zinfo *z, const uint8_t *m, size_t size) {
    memset(z, 0, sizeof *z);
    z->model_json = -1;
    size_t p = size - 22;
    while (p > 0 && rd(m + p, 4) != 0x06054b50u) p--;
    z->eocd = p;
    size_t cd = (size_t)rd(m + p + 16, 4), count = (size_t)rd(m + p + 10, 2);
    if (p >= 20 && rd(m + p - 20, 4) == 0x07064b50u) {
        z->z64loc = p - 20;
        z->z64 = (size_t)rd(m + p - 20 + 8, 8);
        count = (size_t)rd(m + z->z64 + 32, 8);
        cd = (size_t)rd(m + z->z64 + 48, 8);
    }
    if (count > 64) return false;
    for (size_t i = 0; i < count; i++) {
        zent *e = &z->e[z->n++];
        const uint8_t *c = m + cd;
        size_t nlen = (size_t)rd(c + 28, 2);
        e->cen = cd;
        e->lho = (size_t)rd(c + 42, 4);
        e->size = (size_t)rd(c + 24, 4);
        e->data = e->lho + 30 + (size_t)rd(m + e->lho + 26, 2) + (size_t)rd(m + e->lho + 28, 2);
        snprintf(e->name, sizeof e->name, "%.*s", (int)nlen, (const char *)c + 46);
        if (strstr(e->name, "models/model.json")) z->model_json = (int)i;
        cd += 46 + nlen + (size_t)rd(c + 30, 2) + (size_t)rd(c + 32, 2);
    }
    return z->model_json >= 0;
}

/* The archive with entry k's payload replaced by (pay, pay_n): sizes in
 * its central record, and every offset past the payload, moved along. */
static blob zip_with_payload(const uint8_t *m, size_t size, const zinfo *z, int k, const uint8_t *pay,
                             size_t pay_n) {
    const zent *e = &z->e[k];
    size_t end = e->data + e->size;
    blob b = splice(m, size, e->data, e->size, pay, pay_n);
    int64_t d = (int64_t)pay_n - (int64_t)e->size;
#define MOVED(off) ((size_t)((int64_t)(off) + ((off) >= end ? d : 0)))
    for (int i = 0; i < z->n; i++) {
        uint8_t *c = b.p + MOVED(z->e[i].cen);
        if (i == k) {
            wr(c + 20, 4, pay_n);
            wr(c + 24, 4, pay_n);
        }
        wr(c + 42, 4, MOVED(z->e[i].lho));
    }
    uint8_t *lh = b.p + e->lho; /* local sizes, unless a data descriptor carries them */
    if (rd(lh + 18, 4)) {
        wr(lh + 18, 4, pay_n);
        wr(lh + 22, 4, pay_n);
    }
    uint8_t *eocd = b.p + MOVED(z->eocd);
    wr(eocd + 16, 4, MOVED(rd(eocd + 16, 4)));
    if (z->z64loc) {
        uint8_t *loc = b.p + MOVED(z->z64loc), *r64 = b.p + MOVED(z->z64);
        wr(loc + 8, 8, MOVED(z->z64));
        wr(r64 + 48, 8, MOVED(rd(r64 + 48, 8)));
    }
#undef MOVED
    return b;
}

/* One field of a zip record: its offset in the record and width. */
typedef struct field {
    int off, width;
} field;

static blob damage_field(const uint8_t *p, size_t n, size_t rec, const field *f, int nf) {
    blob b = copy(p, n);
    const field *x = &f[below((size_t)nf)];
    if (rec + (size_t)x->off + (size_t)x->width <= n)
        wr(b.p + rec + x->off, x->width, edge_value(rd(p + rec + x->off, x->width), x->width, n));
    return b;
}

static blob zip_damage(const uint8_t *p, size_t n, const zinfo *z, const char **what) {
    static const field local[] = {{0, 4}, {4, 2}, {6, 2}, {8, 2}, {14, 4}, {18, 4}, {22, 4}, {26, 2}, {28, 2}, {30, 1}};
    static const field central[] = {{0, 4},  {8, 2},  {10, 2}, {16, 4}, {20, 4}, {24, 4},
                                    {28, 2}, {30, 2}, {32, 2}, {34, 2}, {42, 4}, {46, 1}};
    static const field eocd[] = {{0, 4}, {4, 2}, {6, 2}, {8, 2}, {10, 2}, {12, 4}, {16, 4}, {20, 2}};
    static const field loc64[] = {{0, 4}, {4, 4}, {8, 8}, {16, 4}};
    static const field rec64[] = {{0, 4}, {4, 8}, {16, 4}, {20, 4}, {24, 8}, {32, 8}, {40, 8}, {48, 8}};
    const zent *e = &z->e[below((size_t)z->n)];
    switch (below(5)) {
    case 0:
        *what = "zip: local header field";
        return damage_field(p, n, e->lho, local, 10);
    case 1:
    case 2:
        *what = "zip: central directory field";
        return damage_field(p, n, e->cen, central, 12);
    case 3:
        *what = "zip: end record field";
        return damage_field(p, n, z->eocd, eocd, 8);
    default:
        *what = "zip: zip64 end record field";
        if (!z->z64loc) return damage_field(p, n, z->eocd, eocd, 8);
        return below(2) ? damage_field(p, n, z->z64loc, loc64, 4) : damage_field(p, n, z->z64, rec64, 8);
    }
}

/* ---- JSON text -------------------------------------------------------------------- */

typedef struct span {
    uint32_t at, len;
} span;

/* Where things are in a JSON text: keys and string values (quotes
 * included), numbers, and the structural characters. */
typedef struct jmap {
    span *keys, *strs, *nums, *punct;
    size_t nkeys, nstrs, nnums, npunct;
} jmap;

static void push(span **v, size_t *n, size_t at, size_t len) {
    span *w = realloc(*v, (*n + 1) * sizeof *w);
    if (!w) abort();
    w[*n] = (span){(uint32_t)at, (uint32_t)len};
    *v = w;
    ++*n;
}

static void jmap_build(jmap *j, const uint8_t *t, size_t n) {
    memset(j, 0, sizeof *j);
    for (size_t i = 0; i < n;) {
        if (t[i] == '"') {
            size_t k = i + 1;
            while (k < n && t[k] != '"') k += t[k] == '\\' ? 2 : 1;
            if (k >= n) break;
            size_t after = k + 1;
            while (after < n && (t[after] == ' ' || t[after] == '\n')) after++;
            if (after < n && t[after] == ':') push(&j->keys, &j->nkeys, i, k + 1 - i);
            else push(&j->strs, &j->nstrs, i, k + 1 - i);
            i = k + 1;
        } else if (t[i] == '-' || (t[i] >= '0' && t[i] <= '9')) {
            size_t k = i + 1;
            while (k < n && t[k] && strchr("0123456789.eE+-", t[k])) k++;
            push(&j->nums, &j->nnums, i, k - i);
            i = k;
        } else {
            if (t[i] && strchr("{}[]:,", t[i])) push(&j->punct, &j->npunct, i, 1);
            i++;
        }
    }
}

static void jmap_free(jmap *j) {
    free(j->keys);
    free(j->strs);
    free(j->nums);
    free(j->punct);
}

/* t with spans a and b (a before b, not overlapping) swapped. */
static blob swap_spans(const uint8_t *t, size_t n, span a, span b) {
    if (a.at > b.at) {
        span s = a;
        a = b;
        b = s;
    }
    if (a.at + a.len > b.at) return copy(t, n);
    blob r = blob_new(n);
    size_t o = 0;
    memcpy(r.p + o, t, a.at), o += a.at;
    memcpy(r.p + o, t + b.at, b.len), o += b.len;
    memcpy(r.p + o, t + a.at + a.len, b.at - a.at - a.len), o += b.at - a.at - a.len;
    memcpy(r.p + o, t + a.at, a.len), o += a.len;
    memcpy(r.p + o, t + b.at + b.len, n - b.at - b.len);
    return r;
}

/* Two spans of v with different text (the same key twice would be no
 * damage); the second may be far away or close by. */
static void pick_two(const uint8_t *t, const span *v, size_t n, span *a, span *b) {
    size_t ia = below(n);
    *a = v[ia];
    for (int tries = 0; tries < 8; tries++) {
        if (below(2)) { /* a neighbour: a sibling field of the same node */
            size_t lo = ia > 6 ? ia - 6 : 0, hi = ia + 7 < n ? ia + 7 : n;
            *b = v[lo + below(hi - lo)];
        } else {
            *b = v[below(n)];
        }
        if (b->len != a->len || memcmp(t + a->at, t + b->at, a->len)) return;
    }
}

static const char *const edge_numbers[] = {
    "-1", "0", "1", "2", "-2", "99999999999999999999", "-99999999999999999999", "2147483648", "4294967296",
    "9223372036854775807", "-9223372036854775808", "9223372036854775808", "1e308", "1e999", "-0", "0.5",
    "3.5", "1e-320", "NaN", "Infinity", "null", "true", "\"7\"", "[]", "{}", "65536", "1000000000"};
static const char *const edge_strings[] = {
    "\"\"", "\"x\"", "null", "0", "[]", "{}", "\"aten.add.Tensor\"", "\"aten.mm.default\"",
    "\"Tensor\"", "\"\\u0000\"", "\"line\\nbreak\"", "\"\\ud800\"", "\"\\u00ff\\u00fe\""};

/* An edit of JSON text t (n bytes). */
static blob json_edit(const uint8_t *t, size_t n, const jmap *j, const char **what) {
    span a, b;
    const char *s;
    size_t at, len;
    switch (below(10)) {
    case 0: {
        *what = "json: digits changed";
        blob r = copy(t, n);
        for (int k = 1 + (int)below(3); k > 0 && j->nnums; k--) {
            span x = j->nums[below(j->nnums)];
            uint8_t *c = r.p + x.at + below(x.len);
            if (*c >= '0' && *c <= '9') *c = (uint8_t)('0' + (*c - '0' + 1 + below(9)) % 10);
        }
        return r;
    }
    case 1:
        *what = "json: punctuation deleted";
        if (!j->npunct) return copy(t, n);
        return splice(t, n, j->punct[below(j->npunct)].at, 1, NULL, 0);
    case 2:
        *what = "json: quote deleted";
        if (!j->nstrs || !j->nkeys) return copy(t, n);
        a = below(2) ? j->keys[below(j->nkeys)] : j->strs[below(j->nstrs)];
        return splice(t, n, below(2) ? a.at : a.at + a.len - 1, 1, NULL, 0);
    case 3:
        *what = "json: keys swapped";
        if (j->nkeys < 2) return copy(t, n);
        pick_two(t, j->keys, j->nkeys, &a, &b);
        return swap_spans(t, n, a, b);
    case 4:
        *what = "json: string values swapped";
        if (j->nstrs < 2) return copy(t, n);
        pick_two(t, j->strs, j->nstrs, &a, &b);
        return swap_spans(t, n, a, b);
    case 5:
        *what = "json: number replaced";
        if (!j->nnums) return copy(t, n);
        a = j->nums[below(j->nnums)];
        s = edge_numbers[below(sizeof edge_numbers / sizeof *edge_numbers)];
        return splice(t, n, a.at, a.len, s, strlen(s));
    case 6:
        *what = "json: string replaced";
        if (!j->nstrs) return copy(t, n);
        a = j->strs[below(j->nstrs)];
        s = edge_strings[below(sizeof edge_strings / sizeof *edge_strings)];
        return splice(t, n, a.at, a.len, s, strlen(s));
    case 7:
        *what = "json: key renamed";
        if (!j->nkeys) return copy(t, n);
        a = j->keys[below(j->nkeys)];
        {
            blob r = copy(t, n);
            if (a.len > 2) r.p[a.at + 1 + below(a.len - 2)] ^= 0x20; /* a letter's case flipped */
            return r;
        }
    case 8:
        *what = "json: range deleted";
        at = below(n);
        len = 1 + below(200);
        return splice(t, n, at, len < n - at ? len : n - at, NULL, 0);
    default:
        *what = "json: range repeated";
        at = below(n);
        len = 1 + below(200);
        return splice(t, n, at, 0, t + at, len < n - at ? len : n - at);
    }
}

/* ---- program files ---------------------------------------------------------------- */

typedef struct psec {
    uint32_t kind;
    size_t off, size;
} psec;

typedef struct pinfo {
    int n;
    psec s[8];
} pinfo;

/* The section table of an intact program file (the fixture, compiled). */
static void prog_index(pinfo *pi, const uint8_t *b) {
    pi->n = (int)rd(b + 32, 4);
    if (pi->n > 8) pi->n = 8;
    for (int i = 0; i < pi->n; i++) {
        const uint8_t *e = b + 64 + 32 * i;
        pi->s[i] = (psec){(uint32_t)rd(e, 4), (size_t)rd(e + 8, 8), (size_t)rd(e + 16, 8)};
    }
}

/* Recompute every checksum a damaged program file can still carry, so the
 * reader trusts it and goes on to the deeper checks. */
static void reseal(uint8_t *b, size_t n) {
    if (n < 64) return;
    uint32_t nsec = (uint32_t)rd(b + 32, 4);
    if (nsec > 64 || 64 + 32 * (size_t)nsec > n) return;
    for (uint32_t i = 0; i < nsec; i++) {
        uint8_t *e = b + 64 + 32 * i;
        uint64_t off = rd(e + 8, 8), size = rd(e + 16, 8);
        if (off <= n && size <= n - off) wr(e + 24, 4, pt_crc32(0, b + off, (size_t)size));
    }
    size_t hsize = 64 + 32 * (size_t)nsec;
    wr(b + 36, 4, 0);
    wr(b + 36, 4, pt_crc32(0, b, hsize));
}

static blob sealed_damage(const uint8_t *p, size_t n, const pinfo *pi, const char **what) {
    static const field header[] = {{16, 2}, {18, 2}, {20, 4}, {24, 4}, {28, 1}, {29, 1}, {30, 1}, {32, 4}, {40, 8}, {48, 8}};
    static const field entry[] = {{0, 4}, {4, 4}, {8, 8}, {16, 8}, {28, 4}};
    blob b;
    size_t r = below(100);
    if (r < 10) {
        *what = "sealed: header field";
        b = damage_field(p, n, 0, header, 10);
    } else if (r < 25) {
        *what = "sealed: section table field";
        b = damage_field(p, n, 64 + 32 * below((size_t)pi->n), entry, 5);
    } else {
        /* inside a section: mostly the graph and its strings */
        static const uint32_t pick[] = {2, 2, 2, 2, 2, 1, 1, 3, 4};
        uint32_t kind = pick[below(sizeof pick / sizeof *pick)];
        const psec *s = &pi->s[0];
        for (int i = 0; i < pi->n; i++)
            if (pi->s[i].kind == kind) s = &pi->s[i];
        if (!s->size) return copy(p, n);
        b = copy(p, n);
        uint8_t *base = b.p + s->off;
        size_t at = below(s->size), left = s->size - at, len;
        switch (below(5)) {
        case 0:
            *what = "sealed: section bytes flipped";
            for (int k = 1 + (int)below(4); k > 0; k--) base[below(s->size)] ^= (uint8_t)(1 + below(255));
            break;
        case 1:
        case 2:
            *what = "sealed: section word set";
            len = left < 4 ? left : 4;
            wr(base + at, (int)len, edge_value(rd(base + at, (int)len), (int)len, s->size));
            break;
        case 3:
            *what = "sealed: section run of 0x00/0xff";
            len = 1 + below(64);
            memset(base + at, below(2) ? 0xff : 0x00, len < left ? len : left);
            break;
        default:
            /* a range dropped, the rest of the section moved up, zeros after */
            *what = "sealed: section range dropped";
            len = 1 + below(left < 32 ? left : 32);
            memmove(base + at, base + at + len, left - len);
            memset(base + s->size - len, 0, len);
            break;
        }
    }
    reseal(b.p, b.n);
    return b;
}

/* ---- one case --------------------------------------------------------------------- */

typedef struct tally {
    int cases, rejected, ran, run_failed, inspected;
} tally;

static int reported;

/* Count a failure; print the first few (a systematic bug would flood). */
__attribute__((format(printf, 4, 5))) static void problem(const char *label, int c, const char *what,
                                                          const char *fmt, ...) {
    failures++;
    if (++reported > 40) return;
    printf("FAIL %s case %d (%s): ", label, c, what);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

/* A failure's message must be one non-empty line. */
static void check_msg(const char *label, int c, const char *what, petrel_status st, const char *msg, const char *step) {
    if (st <= PETREL_OK || st >= PETREL_STATUS_COUNT || !msg || !msg[0] || strchr(msg, '\n') || strchr(msg, '\r'))
        problem(label, c, what, "%s: status %d, message '%s'", step, (int)st, msg ? msg : "(null)");
}

static volatile uint8_t sink;

/* Read every byte of a tensor the program hands out (ASan checks the range). */
static void touch(const petrel_tensor_desc *t) {
    int64_t n = petrel_tensor_numel(t);
    size_t bytes = (size_t)n * petrel_dtype_size(t->dtype);
    const uint8_t *d = t->data;
    uint8_t x = 0;
    for (size_t i = 0; i < bytes; i++) x ^= d[i];
    sink ^= x;
}

/* What `petrel inspect` asks of a loaded program. */
static void inspect(petrel_program_t *p) {
    petrel_program_stats st;
    petrel_program_get_stats(&st, p);
    petrel_io_info io;
    for (int i = 0; i < petrel_program_num_inputs(p); i++) petrel_program_input_info(&io, p, i);
    for (int i = 0; i < petrel_program_num_outputs(p); i++) petrel_program_output_info(&io, p, i);
    const char *targets[64];
    int64_t counts[64];
    petrel_program_op_counts_on(p, "cpu", targets, counts, 64);
    petrel_section_info si;
    for (int i = 0; petrel_program_section(&si, p, i) == PETREL_OK; i++) sink ^= (uint8_t)si.size;
    static const char *const extras[] = {"tokenizer.json", "petrel_meta.json"};
    for (int i = 0; i < 2; i++) {
        const void *d;
        size_t sz;
        if (petrel_program_extra(&d, &sz, p, extras[i]) == PETREL_OK)
            for (size_t k = 0; k < sz; k++) sink ^= ((const uint8_t *)d)[k];
    }
}

static void run_case(const char *label, int c, const char *what, const blob *b, const petrel_tensor_file_t *in,
                     bool verify, bool inspect_only, tally *t) {
    if (verbose) {
        printf("%s case %d: %s, %zu bytes\n", label, c, what, b->n);
        fflush(stdout);
    }
    t->cases++;
    petrel_program_t *p = NULL;
    petrel_load_opts o = {.verify_weights = verify, .inspect_only = inspect_only};
    petrel_status st = petrel_program_load_memory(&p, b->p, b->n, &o);
    if (st != PETREL_OK) {
        t->rejected++;
        if (verbose) printf("  load: %s: %s\n", petrel_status_str(st), petrel_last_error());
        check_msg(label, c, what, st, petrel_last_error(), "load");
        if (p) problem(label, c, what, "load failed but returned a program");
        return;
    }
    inspect(p);
    if (inspect_only) {
        t->inspected++;
        petrel_program_free(p);
        return;
    }
    st = PETREL_OK;
    for (int i = 0; st == PETREL_OK && i < petrel_program_num_inputs(p); i++) {
        petrel_io_info io;
        petrel_tensor_desc x;
        if (petrel_program_input_info(&io, p, i) != PETREL_OK) continue;
        if (petrel_tensor_file_get(&x, in, io.name) != PETREL_OK) continue; /* execute must say it is missing */
        st = petrel_program_set_input(p, i, &x);
        if (st != PETREL_OK) check_msg(label, c, what, st, petrel_program_error(p), "set_input");
    }
    if (st == PETREL_OK) {
        st = petrel_program_execute(p);
        if (st != PETREL_OK) check_msg(label, c, what, st, petrel_program_error(p), "execute");
    }
    for (int i = 0; st == PETREL_OK && i < petrel_program_num_outputs(p); i++) {
        petrel_tensor_desc out;
        petrel_value_kind kind;
        petrel_status s = petrel_program_get_output(&out, p, i, &kind);
        if (s != PETREL_OK) check_msg(label, c, what, s, petrel_program_error(p), "get_output");
        else if (kind == PETREL_VALUE_TENSOR) touch(&out);
    }
    if (verbose) printf("  run: %s: %s\n", petrel_status_str(st), st ? petrel_program_error(p) : "ok");
    if (st == PETREL_OK) t->ran++;
    else t->run_failed++;
    petrel_program_free(p);
}

/* ---- fixtures --------------------------------------------------------------------- */

/* A fixture in one format, intact, with what the damage needs to know. */
typedef struct target {
    char label[128];
    uint8_t *good;
    size_t n;
    bool is_pt2;
    zinfo z;
    jmap json; /* of model.json */
    pinfo prog;
} target;

/* One damaged copy of a target, for case c. */
static blob damage(const target *g, const char **what) {
    size_t r = below(100);
    if (g->is_pt2) {
        if (r < 25) return raw_damage(g->good, g->n, what);
        if (r < 40) return zip_damage(g->good, g->n, &g->z, what);
        if (r < 95) {
            /* mostly model.json, sometimes another JSON entry */
            int k = g->z.model_json, js[64], nj = 0;
            for (int i = 0; r >= 90 && i < g->z.n; i++)
                if (strstr(g->z.e[i].name, ".json") && i != k) js[nj++] = i;
            if (nj) k = js[below((size_t)nj)];
            const zent *e = &g->z.e[k];
            jmap other;
            if (nj) jmap_build(&other, g->good + e->data, e->size);
            blob text = json_edit(g->good + e->data, e->size, nj ? &other : &g->json, what);
            blob b = zip_with_payload(g->good, g->n, &g->z, k, text.p, text.n);
            free(text.p);
            if (nj) jmap_free(&other);
            return b;
        }
        /* a weight payload: the archive stays valid */
        *what = "weights: payload bytes changed";
        int ws[64], nw = 0;
        for (int i = 0; i < g->z.n; i++)
            if (strstr(g->z.e[i].name, "/weights/weight_") || strstr(g->z.e[i].name, "/constants/tensor_"))
                if (g->z.e[i].size) ws[nw++] = i;
        blob b = copy(g->good, g->n);
        if (nw) {
            const zent *e = &g->z.e[ws[below((size_t)nw)]];
            for (int k = 1 + (int)below(16); k > 0; k--) b.p[e->data + below(e->size)] = (uint8_t)rnd();
        }
        return b;
    }
    if (r < 25) return raw_damage(g->good, g->n, what);
    return sealed_damage(g->good, g->n, &g->prog, what);
}

/* Run `count` damaged copies of one target (cases first..first+count-1). */
static tally run_target(const target *g, int fix, int first, int count, const petrel_tensor_file_t *in) {
    tally t = {0};
    for (int c = first; c < first + count; c++) {
        rng = 0x5eed0000ull + (uint64_t)fix * 1000003u + (uint64_t)c * 2 + !g->is_pt2;
        const char *what = "?";
        blob b = damage(g, &what);
        /* a few loads verify every weight, a few only inspect (as `petrel inspect`) */
        bool verify = below(4) == 0, inspect_only = below(8) == 0;
        run_case(g->label, c, what, &b, in, verify, inspect_only, &t);
        free(b.p);
    }
    printf("%-56s %5d cases: %5d rejected at load, %4d loaded and ran, %4d failed at run, %3d inspected only\n",
           g->label, t.cases, t.rejected, t.ran, t.run_failed, t.inspected);
    return t;
}

/* The intact target must load and run; for a .pt2, so must an archive
 * rebuilt with a longer model.json (proves the offset fix-up). */
static bool sane(const target *g, const petrel_tensor_file_t *in) {
    tally t = {0};
    blob b = copy(g->good, g->n);
    run_case(g->label, -1, "intact", &b, in, true, false, &t);
    free(b.p);
    if (g->is_pt2) {
        const zent *e = &g->z.e[g->z.model_json];
        blob text = splice(g->good + e->data, e->size, e->size, 0, "  \n ", 4);
        b = zip_with_payload(g->good, g->n, &g->z, g->z.model_json, text.p, text.n);
        run_case(g->label, -1, "model.json resized", &b, in, true, false, &t);
        free(text.p);
        free(b.p);
    }
    CHECK(t.ran == t.cases, "%s: the intact file does not run (%s)", g->label, petrel_last_error());
    return t.ran == t.cases;
}

int main(int argc, char **argv) {
    const char *arg[3] = {getenv("PETREL_CORRUPT_CASES"), NULL, NULL};
    for (int a = 1, n = 0; a < argc; a++) {
        if (!strcmp(argv[a], "-v")) verbose = true;
        else if (n < 3) arg[n++] = argv[a];
    }
    int total = arg[0] ? atoi(arg[0]) : DEFAULT_CASES, first_case = arg[2] ? atoi(arg[2]) : 0;
    const char *only = arg[1];
#ifndef ASAN
    /* a damaged size may ask for many GB, validly: let that fail fast as
     * out of memory instead of filling a shared machine */
    struct rlimit lim = {(rlim_t)4 << 30, (rlim_t)4 << 30};
    setrlimit(RLIMIT_AS, &lim);
#endif
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/petrel_corrupt_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : P_tmpdir);
    char *tmp = mkdtemp(tmpl);
    CHECK(tmp, "cannot make a temporary directory");
    if (!tmp) return 1;
    int shares = 0;
    for (int f = 0; f < NFIX; f++) shares += fixtures[f].share;
    tally all = {0};
    for (int f = 0; f < NFIX; f++) {
        if (only && !strstr(fixtures[f].model, only)) continue;
        petrel_tensor_file_t *in = NULL;
        CHECK(petrel_tensor_file_read(&in, fixtures[f].inputs) == PETREL_OK, "%s", petrel_last_error());
        int per = only ? total : total * fixtures[f].share / shares / 2; /* per format */
        for (int form = 0; in && form < 2; form++) {
            target g = {.is_pt2 = form == 0};
            const char *path = fixtures[f].model;
            char compiled[600];
            if (!g.is_pt2) {
                snprintf(compiled, sizeof compiled, "%s/%d.petrel", tmp, f);
                petrel_compile_opts co = {.quant = fixtures[f].quant};
                petrel_status st = petrel_compile(NULL, path, compiled, &co);
                CHECK(st == PETREL_OK, "compile %s: %s", path, petrel_last_error());
                if (st != PETREL_OK) continue;
                path = compiled;
            }
            g.good = slurp(path, &g.n);
            if (!g.is_pt2) remove(compiled);
            snprintf(g.label, sizeof g.label, "%s%s", fixtures[f].model + strlen("tests/fixtures/"),
                     g.is_pt2 ? "" : " (.petrel)");
            CHECK(g.good, "cannot read %s", path);
            if (!g.good) continue;
            bool indexed = !g.is_pt2 || zip_index(&g.z, g.good, g.n);
            CHECK(indexed, "%s: not an archive as torch writes it", g.label);
            if (!g.is_pt2) prog_index(&g.prog, g.good);
            else if (indexed) jmap_build(&g.json, g.good + g.z.e[g.z.model_json].data, g.z.e[g.z.model_json].size);
            if (indexed && sane(&g, in)) {
                tally t = run_target(&g, f, first_case, per, in);
                all.cases += t.cases;
                all.rejected += t.rejected;
                all.ran += t.ran;
                all.run_failed += t.run_failed;
                all.inspected += t.inspected;
            }
            if (g.is_pt2 && indexed) jmap_free(&g.json);
            free(g.good);
        }
        petrel_tensor_file_free(in);
    }
    rmdir(tmp);
    printf("test_corrupt: %d cases: %d rejected at load, %d loaded and ran, %d failed at run, %d inspected only; "
           "%d problems: %s\n",
           all.cases, all.rejected, all.ran, all.run_failed, all.inspected, failures, failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}
