/*
** format.c -- write and read petrel program files (layout in format.h).
** The reader trusts nothing: every count, offset, string reference and id
** is bounds-checked, expressions may only refer to earlier expressions (no
** cycles), and the decoded graph then passes pt_graph_verify.
*/
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "format.h"

/* ---- growable byte buffer ----------------------------------------------- */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} wbuf;

static void put(wbuf *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *np = pt_realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put_u8(wbuf *b, uint8_t v) { put(b, &v, 1); }
static void put_u32(wbuf *b, uint32_t v) {
    uint8_t t[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, t, 4);
}
static void put_u64(wbuf *b, uint64_t v) {
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}
static void put_i32(wbuf *b, int32_t v) { put_u32(b, (uint32_t)v); }
static void put_i64(wbuf *b, int64_t v) { put_u64(b, (uint64_t)v); }
static void put_f64(wbuf *b, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    put_u64(b, u);
}
#define NO_STR 0xFFFFFFFFu

/* Append a string to the STRINGS buffer; returns its offset. */
static uint32_t put_str(wbuf *s, const char *str) {
    if (!str) return NO_STR;
    uint32_t off = (uint32_t)s->n;
    put(s, str, strlen(str) + 1);
    return off;
}

/* ---- writer ------------------------------------------------------------- */

/* Index of an expression in g->exprs (pointer search; small tables). */
static int32_t expr_index(const pt_graph *g, const pt_expr *e) {
    if (!e) return -1;
    for (int32_t i = 0; i < g->nexprs; i++)
        if (g->exprs[i] == e) return i;
    return -1;
}

static uint64_t weight_span(const pt_value *v) { return v->data ? (uint64_t)v->data_bytes : 0; }

petrel_status pf_write(const pt_graph *g, const pf_extra *extras, int nextras, const char *path, pt_err *err) {
    wbuf s = {0}, gr = {0}, ex = {0};
    petrel_status st = PETREL_OK;
    uint64_t *woff = pt_calloc((size_t)(g->nvalues ? g->nvalues : 1), sizeof *woff);
    bool *owner = pt_calloc((size_t)(g->nvalues ? g->nvalues : 1), sizeof *owner);
    if (!woff || !owner) {
        pt_free(woff);
        pt_free(owner);
        return pt_fail(err, PETREL_ERR_NOMEM, "out of memory writing the program");
    }
    put_u8(&s, 0); /* offset 0 = empty string */
    /* Weights: lay out one copy per distinct storage (tied weights share
     * bytes).  They are streamed to the file at the end, never gathered in
     * memory, so compiling a model needs no more memory than its metadata;
     * their CRC is computed on the way (padding included). */
    uint64_t wsize = 0;
    uint32_t wcrc = 0;
    static const uint8_t zpad[64];
    for (int32_t i = 0; i < g->nvalues; i++) {
        const pt_value *v = &g->values[i];
        woff[i] = UINT64_MAX;
        if (!v->data) continue;
        for (int32_t j = 0; j < i; j++)
            if (g->values[j].data == v->data && g->values[j].data_bytes == v->data_bytes && woff[j] != UINT64_MAX) {
                woff[i] = woff[j];
                break;
            }
        if (woff[i] != UINT64_MAX) continue;
        uint64_t aligned = (wsize + 63) / 64 * 64;
        wcrc = pt_crc32(wcrc, zpad, (size_t)(aligned - wsize));
        woff[i] = aligned;
        owner[i] = true;
        wcrc = pt_crc32(wcrc, v->data, (size_t)weight_span(v));
        wsize = aligned + weight_span(v);
    }
    /* graph record stream */
    put_u32(&gr, put_str(&s, g->dialect));
    put_i32(&gr, g->schema_major);
    put_i32(&gr, g->schema_minor);
    put_u32(&gr, (uint32_t)g->nsyms);
    for (int32_t i = 0; i < g->nsyms; i++) {
        put_u32(&gr, put_str(&s, g->syms[i].name));
        put_i64(&gr, g->syms[i].min);
        put_i64(&gr, g->syms[i].max);
        put_i64(&gr, g->syms[i].hint);
    }
    put_u32(&gr, (uint32_t)g->nexprs);
    for (int32_t i = 0; i < g->nexprs; i++) {
        const pt_expr *e = g->exprs[i];
        put_u8(&gr, (uint8_t)e->kind);
        put_i64(&gr, e->v);
        put_i64(&gr, e->q);
        put_i32(&gr, e->sym);
        put_u32(&gr, (uint32_t)e->nkids);
        for (int k = 0; k < e->nkids; k++) put_i32(&gr, expr_index(g, e->kids[k]));
    }
    put_u32(&gr, (uint32_t)g->nvalues);
    for (int32_t i = 0; i < g->nvalues; i++) {
        const pt_value *v = &g->values[i];
        put_u32(&gr, put_str(&s, v->name));
        put_u8(&gr, (uint8_t)v->kind);
        put_u8(&gr, (uint8_t)v->src);
        put_u8(&gr, (uint8_t)v->dtype);
        put_u8(&gr, (uint8_t)v->rank);
        for (int d = 0; d < v->rank; d++) {
            put_i64(&gr, v->shape[d].lit);
            put_i32(&gr, expr_index(g, v->shape[d].expr));
            put_i64(&gr, v->strides[d]);
        }
        put_i64(&gr, v->storage_offset);
        put_u64(&gr, woff[i]);
        put_u64(&gr, weight_span(v));
        put_u32(&gr, put_str(&s, v->fqn));
        put_i64(&gr, v->ival);
        put_f64(&gr, v->fval);
    }
    put_u32(&gr, (uint32_t)g->nnodes);
    for (int32_t i = 0; i < g->nnodes; i++) {
        const pt_node *n = &g->nodes[i];
        put_u32(&gr, put_str(&s, pt_op_table[n->op].target));
        put_u32(&gr, put_str(&s, n->name));
        put_u32(&gr, (uint32_t)n->nargs);
        for (int a = 0; a < n->nargs; a++) {
            const pt_arg *arg = &n->args[a];
            put_u8(&gr, (uint8_t)arg->kind);
            put_i32(&gr, arg->n);
            put_i32(&gr, arg->fixed_len);
            put_u32(&gr, put_str(&s, arg->str));
            for (int k = 0; k < arg->n; k++) {
                put_i32(&gr, arg->items[k].vid);
                put_i64(&gr, arg->items[k].i);
                put_f64(&gr, arg->items[k].f);
            }
        }
        put_u32(&gr, (uint32_t)n->nout);
        for (int k = 0; k < n->nout; k++) put_i32(&gr, n->outs[k]);
    }
    put_u32(&gr, (uint32_t)g->ninputs);
    for (int32_t i = 0; i < g->ninputs; i++) put_i32(&gr, g->inputs[i]);
    put_u32(&gr, (uint32_t)g->noutputs);
    for (int32_t i = 0; i < g->noutputs; i++) {
        put_u8(&gr, (uint8_t)g->outputs[i].kind);
        put_i32(&gr, g->outputs[i].item.vid);
        put_i64(&gr, g->outputs[i].item.i);
        put_f64(&gr, g->outputs[i].item.f);
    }
    put_u32(&gr, (uint32_t)g->nmuts);
    for (int32_t i = 0; i < g->nmuts; i++) {
        put_i32(&gr, g->muts[i].buffer_vid);
        put_i32(&gr, g->muts[i].value_vid);
    }
    /* 1.1: placement, one device byte per node */
    put_u32(&gr, (uint32_t)g->nnodes);
    for (int32_t i = 0; i < g->nnodes; i++) put_u8(&gr, g->nodes[i].device);
    /* extras: records first, then the blobs */
    put_u32(&ex, (uint32_t)nextras);
    uint64_t blob = 4 + (uint64_t)nextras * 20;
    for (int i = 0; i < nextras; i++) {
        put_u32(&ex, put_str(&s, extras[i].name));
        put_u64(&ex, blob);
        put_u64(&ex, extras[i].size);
        blob += extras[i].size;
    }
    for (int i = 0; i < nextras; i++) put(&ex, extras[i].data, (size_t)extras[i].size);
    if (s.oom || gr.oom || ex.oom || s.n > 0xFFFFFFF0u) {
        st = pt_fail(err, PETREL_ERR_NOMEM, "out of memory writing the program");
        goto done;
    }
    /* layout */
    {
        enum { NSEC = 4 };
        wbuf w = {.n = (size_t)wsize}; /* sizes only: the bytes are streamed */
        wbuf *secs[NSEC] = {&s, &gr, &w, &ex};
        const uint32_t kinds[NSEC] = {PF_SEC_STRINGS, PF_SEC_GRAPH, PF_SEC_WEIGHTS, PF_SEC_EXTRA};
        const uint32_t aligns[NSEC] = {64, 64, 4096, 64};
        uint64_t off[NSEC], pos = PF_HEADER_FIXED + NSEC * PF_SECTION_ENTRY;
        for (int i = 0; i < NSEC; i++) {
            pos = (pos + aligns[i] - 1) / aligns[i] * aligns[i];
            off[i] = pos;
            pos += secs[i]->n;
        }
        uint8_t hdr[PF_HEADER_FIXED + NSEC * PF_SECTION_ENTRY];
        wbuf h = {0};
        put(&h, PF_MAGIC, 8);
        put(&h, PF_SENTINEL, 8);
        put_u8(&h, PF_MAJOR & 0xff); put_u8(&h, PF_MAJOR >> 8);
        put_u8(&h, PF_MINOR & 0xff); put_u8(&h, PF_MINOR >> 8);
        put_u32(&h, (uint32_t)sizeof hdr);
        put_u32(&h, 0x01020304u);
        put_u8(&h, 8); put_u8(&h, 8); put_u8(&h, 0); put_u8(&h, 0);
        put_u32(&h, NSEC);
        put_u32(&h, 0); /* header crc, patched below */
        put_u64(&h, pos);
        put_u64(&h, 0); put_u64(&h, 0);
        for (int i = 0; i < NSEC; i++) {
            put_u32(&h, kinds[i]);
            put_u32(&h, 0);
            put_u64(&h, off[i]);
            put_u64(&h, secs[i]->n);
            put_u32(&h, kinds[i] == PF_SEC_WEIGHTS ? wcrc : pt_crc32(0, secs[i]->p, secs[i]->n));
            put_u32(&h, aligns[i]);
        }
        if (h.oom || h.n != sizeof hdr) {
            pt_free(h.p);
            st = pt_fail(err, PETREL_ERR_NOMEM, "out of memory writing the program");
            goto done;
        }
        memcpy(hdr, h.p, sizeof hdr);
        pt_free(h.p);
        uint32_t crc = pt_crc32(0, hdr, sizeof hdr);
        hdr[36] = (uint8_t)crc; hdr[37] = (uint8_t)(crc >> 8); hdr[38] = (uint8_t)(crc >> 16); hdr[39] = (uint8_t)(crc >> 24);
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
        FILE *f = fopen(tmp, "wb");
        if (!f) {
            st = pt_fail(err, PETREL_ERR_IO, "cannot write '%s': %m", path);
            goto done;
        }
        bool ok = fwrite(hdr, 1, sizeof hdr, f) == sizeof hdr;
        uint64_t at = sizeof hdr;
        static const uint8_t zeros[4096];
        for (int i = 0; ok && i < NSEC; i++) {
            while (ok && at < off[i]) {
                size_t k = (size_t)(off[i] - at < sizeof zeros ? off[i] - at : sizeof zeros);
                ok = fwrite(zeros, 1, k, f) == k;
                at += k;
            }
            if (kinds[i] == PF_SEC_WEIGHTS) {
                uint64_t wat = 0;
                for (int32_t v = 0; ok && v < g->nvalues; v++) {
                    if (!owner[v]) continue;
                    if (woff[v] > wat) ok = fwrite(zpad, 1, (size_t)(woff[v] - wat), f) == woff[v] - wat;
                    size_t len = (size_t)weight_span(&g->values[v]);
                    ok = ok && (len == 0 || fwrite(g->values[v].data, 1, len, f) == len);
                    wat = woff[v] + len;
                }
            } else {
                ok = ok && (secs[i]->n == 0 || fwrite(secs[i]->p, 1, secs[i]->n, f) == secs[i]->n);
            }
            at += secs[i]->n;
        }
        if (fclose(f) != 0) ok = false;
        if (!ok || rename(tmp, path) != 0) {
            unlink(tmp);
            st = pt_fail(err, PETREL_ERR_IO, "cannot write '%s'", path);
        }
    }
done:
    pt_free(woff);
    pt_free(owner);
    pt_free(s.p);
    pt_free(gr.p);
    pt_free(ex.p);
    return st;
}

/* ---- reader ------------------------------------------------------------- */

typedef struct cur {
    const uint8_t *p;
    uint64_t n, at;
    bool bad;
} cur;

static const uint8_t *take(cur *c, uint64_t k) {
    if (c->bad || k > c->n - c->at) {
        c->bad = true;
        return NULL;
    }
    const uint8_t *r = c->p + c->at;
    c->at += k;
    return r;
}
static uint8_t get_u8(cur *c) { const uint8_t *p = take(c, 1); return p ? p[0] : 0; }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }
static uint32_t get_u32(cur *c) { const uint8_t *p = take(c, 4); return p ? rd32(p) : 0; }
static uint64_t get_u64(cur *c) { const uint8_t *p = take(c, 8); return p ? rd64(p) : 0; }
static int32_t get_i32(cur *c) { return (int32_t)get_u32(c); }
static int64_t get_i64(cur *c) { return (int64_t)get_u64(c); }
static double get_f64(cur *c) {
    uint64_t u = get_u64(c);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

typedef struct section { uint64_t off, size; uint32_t crc; bool present; } section;

bool pf_fuzz_skip_checksums;

typedef struct reader {
    const uint8_t *buf;
    uint64_t size;
    section sec[5];
    pt_err *err;
} reader;

/* Copy string `ref` of the STRINGS section (NULL for NO_STR). */
static bool get_str(reader *r, uint32_t ref, char **out) {
    *out = NULL;
    if (ref == NO_STR) return true;
    const section *s = &r->sec[PF_SEC_STRINGS];
    if (ref >= s->size) return false;
    const char *p = (const char *)r->buf + s->off + ref;
    const void *z = memchr(p, 0, (size_t)(s->size - ref));
    if (!z) return false;
    *out = pt_strdup(p);
    return *out != NULL;
}

static petrel_status read_header(reader *r, bool full) {
    const uint8_t *b = r->buf;
    pt_err *err = r->err;
    if (r->size < PF_HEADER_FIXED || memcmp(b, PF_MAGIC, 8) != 0)
        return pt_fail(err, PETREL_ERR_FORMAT, "not a petrel program (bad magic)");
    if (memcmp(b + 8, PF_SENTINEL, 8) != 0)
        return pt_fail(err, PETREL_ERR_FORMAT, "program file corrupted by a text-mode copy (bad sentinel)");
    unsigned major = (unsigned)(b[16] | (b[17] << 8)), minor = (unsigned)(b[18] | (b[19] << 8));
    if (major != PF_MAJOR)
        return pt_fail(err, PETREL_ERR_VERSION, "program file version %u.%u; this petrel reads %d.x", major, minor, PF_MAJOR);
    uint32_t hsize = rd32(b + 20), nsec = rd32(b + 32);
    if (rd32(b + 24) != 0x01020304u || b[28] != 8 || b[29] != 8)
        return pt_fail(err, PETREL_ERR_FORMAT, "program file written for another byte order or type sizes");
    if (nsec > 64 || hsize != PF_HEADER_FIXED + nsec * PF_SECTION_ENTRY || hsize > r->size)
        return pt_fail(err, PETREL_ERR_FORMAT, "program header: bad size (%u bytes, %u sections)", hsize, nsec);
    if (rd64(b + 40) != r->size)
        return pt_fail(err, PETREL_ERR_FORMAT, "program file is %llu bytes but its header says %llu (truncated?)",
                       (unsigned long long)r->size, (unsigned long long)rd64(b + 40));
    uint8_t tmp[PF_HEADER_FIXED + 64 * PF_SECTION_ENTRY];
    memcpy(tmp, b, hsize);
    memset(tmp + 36, 0, 4);
    if (!pf_fuzz_skip_checksums && pt_crc32(0, tmp, hsize) != rd32(b + 36))
        return pt_fail(err, PETREL_ERR_FORMAT, "program header checksum mismatch");
    uint64_t prev_end = hsize;
    for (uint32_t i = 0; i < nsec; i++) {
        const uint8_t *e = b + PF_HEADER_FIXED + i * PF_SECTION_ENTRY;
        uint32_t kind = rd32(e), align = rd32(e + 28);
        uint64_t off = rd64(e + 8), size = rd64(e + 16);
        if (align == 0 || (align & (align - 1)) || off % align || off < prev_end || off > r->size || size > r->size - off)
            return pt_fail(err, PETREL_ERR_FORMAT, "program section %u (kind %u): bad offset/size/alignment", i, kind);
        /* alignment padding is zeros, so every byte of the file is checked */
        for (uint64_t k = prev_end; k < off; k++)
            if (b[k]) return pt_fail(err, PETREL_ERR_FORMAT, "program file: non-zero padding at byte %llu", (unsigned long long)k);
        prev_end = off + size;
        if (kind >= 1 && kind <= 4) {
            if (r->sec[kind].present) return pt_fail(err, PETREL_ERR_FORMAT, "program section kind %u appears twice", kind);
            r->sec[kind] = (section){off, size, rd32(e + 24), true};
            if ((kind != PF_SEC_WEIGHTS || full) && !pf_fuzz_skip_checksums &&
                pt_crc32(0, b + off, (size_t)size) != rd32(e + 24))
                return pt_fail(err, PETREL_ERR_FORMAT, "program section %u (kind %u): checksum mismatch", i, kind);
        }
    }
    if (prev_end != r->size) return pt_fail(err, PETREL_ERR_FORMAT, "program file: bytes after the last section");
    for (int k = 1; k <= 3; k++)
        if (!r->sec[k].present) return pt_fail(err, PETREL_ERR_FORMAT, "program file lacks section kind %d", k);
    return PETREL_OK;
}

#define CHK(cond, ...) do { if (!(cond)) return pt_fail(err, PETREL_ERR_FORMAT, __VA_ARGS__); } while (0)
#define NOMEM() pt_fail(err, PETREL_ERR_NOMEM, "out of memory loading the program")

/* A program written before its op's schema gained trailing arguments (an
 * append-only change, docs/FORMAT.md) gets their defaults, as the
 * importer gives them to an archive that leaves them out. */
static petrel_status fill_trailing_defaults(pt_node *n, uint32_t i, pt_err *err) {
    pt_schema sc;
    if (!pt_schema_parse(pt_op_table[n->op].schema, &sc) || n->nargs >= sc.nargs) return PETREL_OK;
    pt_arg *args = pt_realloc(n->args, (size_t)sc.nargs * sizeof *args);
    if (!args) return pt_fail(err, PETREL_ERR_NOMEM, "out of memory");
    n->args = args;
    for (int k = n->nargs; k < sc.nargs; k++) {
        memset(&args[k], 0, sizeof args[k]);
        if (!sc.args[k].has_default)
            return pt_fail(err, PETREL_ERR_FORMAT, "program GRAPH: node %u (%s): argument '%s' missing", i,
                           pt_op_table[n->op].target, sc.args[k].name);
        n->nargs = k + 1; /* freed with the node from here on */
        char where[96];
        snprintf(where, sizeof where, "program GRAPH: node %u argument '%s'", i, sc.args[k].name);
        PT_TRY(pt_arg_default(&sc.args[k], &args[k], where, err));
        args[k].fixed_len = sc.args[k].list_len;
    }
    return PETREL_OK;
}

static petrel_status read_graph(reader *r, pt_graph *g) {
    pt_err *err = r->err;
    cur c = {r->buf + r->sec[PF_SEC_GRAPH].off, r->sec[PF_SEC_GRAPH].size, 0, false};
    const section *wsec = &r->sec[PF_SEC_WEIGHTS];
    /* Each count is checked against the bytes left: a record is at least
     * 4 bytes, so no count can make us allocate more than the file implies. */
#define COUNT(var, what)                                                                  \
    uint32_t var = get_u32(&c);                                                           \
    CHK(!c.bad && var <= (c.n - c.at) / 4 && var < (1u << 26), "program GRAPH: bad %s count", what)
    CHK(get_str(r, get_u32(&c), &g->dialect), "program GRAPH: bad dialect string");
    g->schema_major = get_i32(&c);
    g->schema_minor = get_i32(&c);
    COUNT(nsyms, "symbol");
    g->syms = pt_calloc(nsyms ? nsyms : 1, sizeof *g->syms);
    if (!g->syms) return NOMEM();
    for (uint32_t i = 0; i < nsyms; i++) {
        CHK(get_str(r, get_u32(&c), &g->syms[i].name) && g->syms[i].name, "program GRAPH: bad symbol name");
        g->nsyms = (int32_t)i + 1;
        g->syms[i].min = get_i64(&c);
        g->syms[i].max = get_i64(&c);
        g->syms[i].hint = get_i64(&c);
    }
    COUNT(nexprs, "expression");
    g->exprs = pt_calloc(nexprs ? nexprs : 1, sizeof *g->exprs);
    if (!g->exprs) return NOMEM();
    g->cap_exprs = (int32_t)(nexprs ? nexprs : 1);
    for (uint32_t i = 0; i < nexprs; i++) {
        pt_expr *e = pt_calloc(1, sizeof *e);
        if (!e) return NOMEM();
        g->exprs[g->nexprs++] = e;
        e->kind = (pt_expr_kind)get_u8(&c);
        e->v = get_i64(&c);
        e->q = get_i64(&c);
        e->sym = get_i32(&c);
        uint32_t nk = get_u32(&c);
        CHK(!c.bad && (unsigned)e->kind < PT_EXPR_KIND_COUNT && nk <= 16, "program GRAPH: bad expression %u", i);
        CHK(e->kind != PT_EXPR_SYM || (e->sym >= 0 && e->sym < g->nsyms), "program GRAPH: expression %u: bad symbol", i);
        if (nk) {
            e->kids = pt_calloc(nk, sizeof *e->kids);
            if (!e->kids) return NOMEM();
            e->nkids = (int32_t)nk;
        }
        for (uint32_t k = 0; k < nk; k++) {
            int32_t ki = get_i32(&c);
            /* only earlier expressions: the tree cannot have cycles */
            CHK(ki >= 0 && (uint32_t)ki < i, "program GRAPH: expression %u refers forward", i);
            e->kids[k] = g->exprs[ki];
        }
    }
    COUNT(nvalues, "value");
    g->values = pt_calloc(nvalues ? nvalues : 1, sizeof *g->values);
    if (!g->values) return NOMEM();
    g->cap_values = (int32_t)(nvalues ? nvalues : 1);
    for (uint32_t i = 0; i < nvalues; i++) {
        pt_value *v = &g->values[i];
        g->nvalues = (int32_t)i + 1;
        CHK(get_str(r, get_u32(&c), &v->name) && v->name, "program GRAPH: value %u: bad name", i);
        v->kind = (pt_vkind)get_u8(&c);
        v->src = (pt_vsrc)get_u8(&c);
        v->dtype = (petrel_dtype)get_u8(&c);
        v->rank = get_u8(&c);
        CHK(v->rank <= PETREL_MAX_RANK, "program GRAPH: value '%s': rank %d", v->name, v->rank);
        for (int d = 0; d < v->rank; d++) {
            v->shape[d].lit = get_i64(&c);
            int32_t ei = get_i32(&c);
            CHK(ei >= -1 && ei < g->nexprs, "program GRAPH: value '%s': bad expression id", v->name);
            v->shape[d].expr = ei >= 0 ? g->exprs[ei] : NULL;
            v->strides[d] = get_i64(&c);
        }
        v->storage_offset = get_i64(&c);
        uint64_t off = get_u64(&c), bytes = get_u64(&c);
        CHK(get_str(r, get_u32(&c), &v->fqn), "program GRAPH: value '%s': bad name", v->name);
        v->ival = get_i64(&c);
        v->fval = get_f64(&c);
        CHK(!c.bad, "program GRAPH: truncated in value %u", i);
        if (off != UINT64_MAX) {
            CHK(off <= wsec->size && bytes <= wsec->size - off && off % 64 == 0,
                "program GRAPH: weight '%s' lies outside the WEIGHTS section", v->name);
            v->data = r->buf + wsec->off + off;
            v->data_bytes = (int64_t)bytes;
            /* the stored view must fit its bytes */
            if (v->kind == PT_V_TENSOR && pt_dtype_valid((int)v->dtype)) {
                int64_t last = v->storage_offset, numel = 1, ext;
                bool ok = last >= 0;
                for (int d = 0; ok && d < v->rank; d++) {
                    int64_t sz = v->shape[d].lit;
                    ok = !v->shape[d].expr && sz >= 0 && v->strides[d] >= 0 && pt_mul_ok(numel, sz, &numel) &&
                         (sz == 0 || (pt_mul_ok(sz - 1, v->strides[d], &ext) && pt_add_ok(last, ext, &last)));
                }
                int64_t need;
                ok = ok && (numel == 0 || (pt_add_ok(last, 1, &need) && pt_mul_ok(need, (int64_t)petrel_dtype_size(v->dtype), &need) &&
                                           (uint64_t)need <= bytes));
                CHK(ok, "program GRAPH: weight '%s' does not fit its %llu bytes", v->name, (unsigned long long)bytes);
            }
        } else {
            v->data = NULL;
            v->data_bytes = 0;
        }
    }
    COUNT(nnodes, "node");
    g->nodes = pt_calloc(nnodes ? nnodes : 1, sizeof *g->nodes);
    if (!g->nodes) return NOMEM();
    for (uint32_t i = 0; i < nnodes; i++) {
        pt_node *n = &g->nodes[i];
        g->nnodes = (int32_t)i + 1;
        char *target = NULL;
        CHK(get_str(r, get_u32(&c), &target) && target, "program GRAPH: node %u: bad op name", i);
        int op = pt_op_find(target);
        if (op < 0) {
            petrel_status st = pt_fail(err, PETREL_ERR_UNSUPPORTED_OP, "program uses operator '%s', unknown to this petrel", target);
            pt_free(target);
            return st;
        }
        pt_free(target);
        n->op = (pt_op)op;
        CHK(get_str(r, get_u32(&c), &n->name), "program GRAPH: node %u: bad name", i);
        uint32_t nargs = get_u32(&c);
        CHK(!c.bad && nargs <= PT_MAX_SCHEMA_ARGS, "program GRAPH: node %u: bad argument count", i);
        n->args = pt_calloc(nargs ? nargs : 1, sizeof *n->args);
        if (!n->args) return NOMEM();
        n->nargs = (int32_t)nargs;
        for (uint32_t a = 0; a < nargs; a++) {
            pt_arg *arg = &n->args[a];
            arg->kind = (pt_arg_kind)get_u8(&c);
            int32_t cnt = get_i32(&c);
            arg->fixed_len = get_i32(&c);
            CHK(get_str(r, get_u32(&c), &arg->str), "program GRAPH: node %u: bad string argument", i);
            CHK(!c.bad && cnt >= 0 && (uint64_t)cnt <= (c.n - c.at) / 20 && (unsigned)arg->kind < PT_ARG_KIND_COUNT,
                "program GRAPH: node %u: bad argument %u", i, a);
            if (cnt) {
                arg->items = pt_calloc((size_t)cnt, sizeof *arg->items);
                if (!arg->items) return NOMEM();
            }
            arg->n = cnt;
            for (int32_t k = 0; k < cnt; k++) {
                arg->items[k].vid = get_i32(&c);
                arg->items[k].i = get_i64(&c);
                arg->items[k].f = get_f64(&c);
            }
        }
        PT_TRY(fill_trailing_defaults(n, i, err));
        uint32_t nout = get_u32(&c);
        CHK(!c.bad && nout <= (c.n - c.at) / 4, "program GRAPH: node %u: bad output count", i);
        n->outs = pt_calloc(nout ? nout : 1, sizeof *n->outs);
        if (!n->outs) return NOMEM();
        n->nout = (int32_t)nout;
        for (uint32_t k = 0; k < nout; k++) n->outs[k] = get_i32(&c);
    }
    COUNT(nin, "input");
    g->inputs = pt_calloc(nin ? nin : 1, sizeof *g->inputs);
    if (!g->inputs) return NOMEM();
    g->ninputs = (int32_t)nin;
    for (uint32_t i = 0; i < nin; i++) g->inputs[i] = get_i32(&c);
    COUNT(nout, "output");
    g->outputs = pt_calloc(nout ? nout : 1, sizeof *g->outputs);
    if (!g->outputs) return NOMEM();
    g->noutputs = (int32_t)nout;
    for (uint32_t i = 0; i < nout; i++) {
        g->outputs[i].kind = (pt_vkind)get_u8(&c);
        g->outputs[i].item.vid = get_i32(&c);
        g->outputs[i].item.i = get_i64(&c);
        g->outputs[i].item.f = get_f64(&c);
    }
    COUNT(nmuts, "mutation");
    g->muts = pt_calloc(nmuts ? nmuts : 1, sizeof *g->muts);
    if (!g->muts) return NOMEM();
    g->nmuts = (int32_t)nmuts;
    for (uint32_t i = 0; i < nmuts; i++) {
        g->muts[i].buffer_vid = get_i32(&c);
        g->muts[i].value_vid = get_i32(&c);
    }
    if (c.at < c.n) { /* 1.1: placement (absent in 1.0 files: all on the CPU) */
        uint32_t np = get_u32(&c);
        CHK(!c.bad && np == nnodes, "program GRAPH: placement of %u nodes for %u nodes", np, nnodes);
        for (uint32_t i = 0; i < np; i++) {
            uint8_t d = get_u8(&c);
            CHK(!c.bad && d < PT_DEV_COUNT, "program GRAPH: node %u: unknown device %u", i, d);
            g->nodes[i].device = d;
        }
    }
    CHK(!c.bad, "program GRAPH: truncated");
    CHK(c.at == c.n, "program GRAPH: %llu trailing bytes", (unsigned long long)(c.n - c.at));
#undef COUNT
    return PETREL_OK;
}

bool pf_is_program(const uint8_t *buf, uint64_t size) { return size >= 8 && memcmp(buf, PF_MAGIC, 8) == 0; }

petrel_status pf_read(pt_graph *g, const uint8_t *buf, uint64_t size, bool full, pt_err *err) {
    memset(g, 0, sizeof *g);
    reader r = {.buf = buf, .size = size, .err = err};
    petrel_status st = read_header(&r, full);
    if (st == PETREL_OK) st = read_graph(&r, g);
    if (st == PETREL_OK) st = pt_graph_verify(g, err);
    if (st != PETREL_OK) pt_graph_free(g);
    return st;
}

const uint8_t *pf_find_extra(const uint8_t *buf, uint64_t size, const char *name, uint64_t *len) {
    reader r = {.buf = buf, .size = size};
    pt_err e;
    r.err = &e;
    if (read_header(&r, false) != PETREL_OK || !r.sec[PF_SEC_EXTRA].present) return NULL;
    const section *x = &r.sec[PF_SEC_EXTRA], *s = &r.sec[PF_SEC_STRINGS];
    cur c = {buf + x->off, x->size, 0, false};
    uint32_t n = get_u32(&c);
    for (uint32_t i = 0; i < n && !c.bad; i++) {
        uint32_t ref = get_u32(&c);
        uint64_t off = get_u64(&c), sz = get_u64(&c);
        if (c.bad || ref >= s->size || off > x->size || sz > x->size - off) return NULL;
        const char *nm = (const char *)buf + s->off + ref;
        if (!memchr(nm, 0, (size_t)(s->size - ref))) return NULL;
        if (!strcmp(nm, name)) {
            *len = sz;
            return buf + x->off + off;
        }
    }
    return NULL;
}

bool pf_section(const uint8_t *buf, uint64_t size, int i, uint32_t *kind, uint64_t *off, uint64_t *len,
                uint32_t *align) {
    if (size < PF_HEADER_FIXED || i < 0 || (uint32_t)i >= rd32(buf + 32)) return false;
    uint64_t e = PF_HEADER_FIXED + (uint64_t)i * PF_SECTION_ENTRY;
    if (e + PF_SECTION_ENTRY > size) return false;
    *kind = rd32(buf + e);
    *off = rd64(buf + e + 8);
    *len = rd64(buf + e + 16);
    *align = rd32(buf + e + 28);
    return true;
}
