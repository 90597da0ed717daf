/*
** expr.c -- parse, evaluate and compare the symbolic sizes torch.export
** records as sympy srepr strings ("Mul(Integer(2), Symbol('s27',
** integer=True))").  Evaluation is exact rational arithmetic over int64
** with overflow checks; comparison is structural.
*/
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

typedef struct parser {
    pt_graph *g;
    const char *s;
    pt_err *err;
    int depth;
    petrel_status st;  /* why parsing stopped */
} parser;

static void skip_ws(parser *p) {
    while (isspace((unsigned char)*p->s)) p->s++;
}

static pt_expr *new_expr(parser *p, pt_expr_kind k) {
    pt_graph *g = p->g;
    if (g->nexprs == g->cap_exprs) {
        int32_t cap = g->cap_exprs ? g->cap_exprs * 2 : 64;
        pt_expr **ne = pt_realloc(g->exprs, (size_t)cap * sizeof *ne);
        if (!ne) return NULL;
        g->exprs = ne;
        g->cap_exprs = cap;
    }
    pt_expr *e = pt_calloc(1, sizeof *e);
    if (!e) return NULL;
    e->kind = k;
    g->exprs[g->nexprs++] = e;
    return e;
}

static int find_or_add_symbol(pt_graph *g, const char *name, size_t len) {
    for (int32_t i = 0; i < g->nsyms; i++)
        if (strlen(g->syms[i].name) == len && !strncmp(g->syms[i].name, name, len)) return i;
    pt_symbol *ns = pt_realloc(g->syms, (size_t)(g->nsyms + 1) * sizeof *ns);
    if (!ns) return -1;
    g->syms = ns;
    char *nm = pt_malloc(len + 1);
    if (!nm) return -1;
    memcpy(nm, name, len);
    nm[len] = 0;
    g->syms[g->nsyms] = (pt_symbol){nm, INT64_MIN, INT64_MAX, -1};
    return g->nsyms++;
}

static bool parse_int(parser *p, int64_t *v) {
    skip_ws(p);
    char *end;
    long long x = strtoll(p->s, &end, 10);
    if (end == p->s) return false;
    p->s = end;
    *v = x;
    return true;
}

static pt_expr *parse(parser *p);

/* Skip a keyword argument "name=Value" (assumption flags). */
static void skip_kwarg(parser *p) {
    int depth = 0;
    while (*p->s) {
        if (*p->s == '(') depth++;
        else if (*p->s == ')') {
            if (depth == 0) return;
            depth--;
        } else if (*p->s == ',' && depth == 0) return;
        p->s++;
    }
}

static pt_expr *fail(parser *p, const char *what) {
    p->st = strcmp(what, "out of memory") ? PETREL_ERR_UNSUPPORTED : PETREL_ERR_NOMEM;
    pt_fail(p->err, p->st, "symbolic size: %s near '%.20s'", what, p->s);
    return NULL;
}

static pt_expr *parse(parser *p) {
    if (++p->depth > 64) return fail(p, "expression nested too deeply");
    skip_ws(p);
    const char *name = p->s;
    while (isalnum((unsigned char)*p->s) || *p->s == '_') p->s++;
    size_t nlen = (size_t)(p->s - name);
    skip_ws(p);
    if (nlen == 0 || *p->s != '(') return fail(p, "expected Name(...)");
    p->s++;
#define IS(lit) (nlen == sizeof(lit) - 1 && !strncmp(name, lit, nlen))
    pt_expr *e = NULL;
    if (IS("Integer")) {
        if (!(e = new_expr(p, PT_EXPR_INT))) return fail(p, "out of memory");
        if (!parse_int(p, &e->v)) return fail(p, "bad Integer");
    } else if (IS("Rational")) {
        if (!(e = new_expr(p, PT_EXPR_RATIONAL))) return fail(p, "out of memory");
        if (!parse_int(p, &e->v)) return fail(p, "bad Rational");
        skip_ws(p);
        if (*p->s++ != ',' || !parse_int(p, &e->q) || e->q == 0) return fail(p, "bad Rational");
    } else if (IS("Symbol")) {
        skip_ws(p);
        char q = *p->s;
        if (q != '\'' && q != '"') return fail(p, "bad Symbol");
        const char *sn = ++p->s;
        while (*p->s && *p->s != q) p->s++;
        if (!*p->s) return fail(p, "unterminated Symbol name");
        size_t sl = (size_t)(p->s - sn);
        p->s++;
        if (!(e = new_expr(p, PT_EXPR_SYM))) return fail(p, "out of memory");
        e->sym = find_or_add_symbol(p->g, sn, sl);
        if (e->sym < 0) return fail(p, "out of memory");
        skip_ws(p);
        while (*p->s == ',') {
            p->s++;
            skip_kwarg(p);
        }
    } else if (IS("One") || IS("Zero") || IS("NegativeOne")) {
        if (!(e = new_expr(p, PT_EXPR_INT))) return fail(p, "out of memory");
        e->v = IS("One") ? 1 : IS("Zero") ? 0 : -1;
    } else if (IS("Half")) {
        if (!(e = new_expr(p, PT_EXPR_RATIONAL))) return fail(p, "out of memory");
        e->v = 1;
        e->q = 2;
    } else {
        pt_expr_kind k;
        if (IS("Add")) k = PT_EXPR_ADD;
        else if (IS("Mul")) k = PT_EXPR_MUL;
        else if (IS("Pow")) k = PT_EXPR_POW;
        else if (IS("FloorDiv")) k = PT_EXPR_FLOORDIV;
        else if (IS("Mod") || IS("PythonMod")) k = PT_EXPR_MOD;
        else if (IS("Max")) k = PT_EXPR_MAX;
        else if (IS("Min")) k = PT_EXPR_MIN;
        else if (IS("CeilToInt") || IS("FloorToInt") || IS("TruncToInt") || IS("IntTrueDiv") ||
                 IS("CeilDiv"))
            k = PT_EXPR_CEILDIV; /* refined below */
        else return fail(p, "unsupported function");
        bool ceil_wrap = IS("CeilToInt"), floor_wrap = IS("FloorToInt") || IS("TruncToInt");
        bool truediv = IS("IntTrueDiv"), ceildiv = IS("CeilDiv");
        /* collect args */
        pt_expr *kids[16];
        int nk = 0;
        for (;;) {
            skip_ws(p);
            if (*p->s == ')') break;
            if (nk == 16) return fail(p, "too many arguments");
            if (!(kids[nk++] = parse(p))) return NULL;
            skip_ws(p);
            if (*p->s == ',') p->s++;
            else if (*p->s != ')') return fail(p, "expected ',' or ')'");
        }
        if (ceil_wrap || floor_wrap) {
            /* CeilToInt(IntTrueDiv(a, b)) -> ceildiv(a, b); FloorToInt(x) -> x's floor div */
            if (nk != 1) return fail(p, "bad rounding function");
            pt_expr *in = kids[0];
            if (in->kind == PT_EXPR_CEILDIV && in->nkids == 2 && in->v == 1) {
                /* IntTrueDiv marker (v=1): pick rounding */
                in->kind = ceil_wrap ? PT_EXPR_CEILDIV : PT_EXPR_FLOORDIV;
                in->v = 0;
                e = in;
            } else {
                e = in; /* integer-valued already */
            }
            p->s++; /* ')' */
            p->depth--;
            return e;
        }
        if (!(e = new_expr(p, k))) return fail(p, "out of memory");
        if (truediv) {
            if (nk != 2) return fail(p, "bad IntTrueDiv");
            e->v = 1; /* marker: exact division; ceil/floor chosen by the wrapper */
        }
        if (ceildiv && nk != 2) return fail(p, "bad CeilDiv");
        if ((k == PT_EXPR_POW || k == PT_EXPR_FLOORDIV || k == PT_EXPR_MOD) && nk != 2)
            return fail(p, "expected two arguments");
        if (nk == 0) return fail(p, "function without arguments");
        e->kids = pt_malloc((size_t)nk * sizeof *e->kids);
        if (!e->kids) return fail(p, "out of memory");
        memcpy(e->kids, kids, (size_t)nk * sizeof *kids);
        e->nkids = nk;
    }
#undef IS
    skip_ws(p);
    if (*p->s != ')') return fail(p, "expected ')'");
    p->s++;
    p->depth--;
    return e;
}

pt_expr *pt_expr_unknown(pt_graph *g) {
    parser p = {g, "", NULL, 0, PETREL_OK};
    return new_expr(&p, PT_EXPR_UNKNOWN);
}

pt_expr *pt_expr_parse(pt_graph *g, const char *s, pt_err *err) {
    parser p = {g, s, err, 0, PETREL_OK};
    pt_expr *e = parse(&p);
    if (!e) return NULL;
    skip_ws(&p);
    if (*p.s) {
        fail(&p, "trailing characters");
        return NULL;
    }
    return e;
}

/* ---- evaluation: exact rationals n/d with d > 0 ------------------------- */

typedef struct rat { int64_t n, d; } rat;

static int64_t gcd64(int64_t a, int64_t b) {
    if (a < 0) a = -a;
    if (b < 0) b = -b;
    while (b) { int64_t t = a % b; a = b; b = t; }
    return a ? a : 1;
}

static bool norm(rat *r) {
    if (r->d == 0) return false;
    if (r->d < 0) {
        if (r->n == INT64_MIN || r->d == INT64_MIN) return false;
        r->n = -r->n;
        r->d = -r->d;
    }
    int64_t g = gcd64(r->n, r->d);
    r->n /= g;
    r->d /= g;
    return true;
}

static bool r_add(rat a, rat b, rat *o) {
    int64_t x, y, d;
    if (!pt_mul_ok(a.n, b.d, &x) || !pt_mul_ok(b.n, a.d, &y) || !pt_add_ok(x, y, &o->n) ||
        !pt_mul_ok(a.d, b.d, &d))
        return false;
    o->d = d;
    return norm(o);
}

static bool r_mul(rat a, rat b, rat *o) {
    if (!pt_mul_ok(a.n, b.n, &o->n) || !pt_mul_ok(a.d, b.d, &o->d)) return false;
    return norm(o);
}

static int64_t floordiv64(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}

static bool eval(const pt_expr *e, const int64_t *symv, rat *o) {
    rat a, b;
    switch (e->kind) {
    case PT_EXPR_INT: *o = (rat){e->v, 1}; return true;
    case PT_EXPR_RATIONAL: *o = (rat){e->v, e->q}; return norm(o);
    case PT_EXPR_SYM:
        if (symv[e->sym] == INT64_MIN) return false;
        *o = (rat){symv[e->sym], 1};
        return true;
    case PT_EXPR_ADD:
    case PT_EXPR_MUL:
        *o = (rat){e->kind == PT_EXPR_ADD ? 0 : 1, 1};
        for (int i = 0; i < e->nkids; i++) {
            if (!eval(e->kids[i], symv, &a)) return false;
            if (!(e->kind == PT_EXPR_ADD ? r_add(*o, a, o) : r_mul(*o, a, o))) return false;
        }
        return true;
    case PT_EXPR_MAX:
    case PT_EXPR_MIN:
        for (int i = 0; i < e->nkids; i++) {
            if (!eval(e->kids[i], symv, &a)) return false;
            /* compare a/ad with o: cross-multiply in long double (values are sizes) */
            if (i == 0) { *o = a; continue; }
            long double x = (long double)a.n / a.d, y = (long double)o->n / o->d;
            if (e->kind == PT_EXPR_MAX ? x > y : x < y) *o = a;
        }
        return true;
    case PT_EXPR_POW: {
        if (!eval(e->kids[0], symv, &a) || !eval(e->kids[1], symv, &b) || b.d != 1) return false;
        int64_t k = b.n;
        rat r = {1, 1};
        if (k < 0) {
            if (a.n == 0) return false;
            a = (rat){a.d, a.n};
            if (!norm(&a)) return false;
            k = -k;
        }
        if (k > 64) return false;
        for (int64_t i = 0; i < k; i++)
            if (!r_mul(r, a, &r)) return false;
        *o = r;
        return true;
    }
    case PT_EXPR_FLOORDIV:
    case PT_EXPR_MOD:
    case PT_EXPR_CEILDIV: {
        if (!eval(e->kids[0], symv, &a) || !eval(e->kids[1], symv, &b)) return false;
        if (b.n == 0) return false;
        /* a/b as a rational, then round */
        rat q;
        if (!r_mul(a, (rat){b.d, b.n}, &q)) return false;
        int64_t fl = floordiv64(q.n, q.d);
        if (e->kind == PT_EXPR_FLOORDIV) { *o = (rat){fl, 1}; return true; }
        if (e->kind == PT_EXPR_CEILDIV) {
            if (e->v == 1) { *o = q; return true; } /* bare IntTrueDiv */
            *o = (rat){fl + (q.n % q.d != 0), 1};
            return true;
        }
        /* Mod: a - b*floor(a/b) */
        rat t;
        if (!r_mul(b, (rat){fl, 1}, &t) || !r_add(a, (rat){-t.n, t.d}, o)) return false;
        return true;
    }
    case PT_EXPR_UNKNOWN:
    case PT_EXPR_KIND_COUNT: break;
    }
    return false;
}

bool pt_expr_eval(const pt_expr *e, const int64_t *symv, int64_t *out) {
    rat r;
    if (!eval(e, symv, &r) || r.d != 1) return false;
    *out = r.n;
    return true;
}

/* ---- comparison ---------------------------------------------------------- */

static bool expr_eq(const pt_expr *a, const pt_expr *b) {
    if (a->kind == PT_EXPR_UNKNOWN || a->kind != b->kind || a->v != b->v || a->q != b->q || a->nkids != b->nkids)
        return false;
    if (a->kind == PT_EXPR_SYM && a->sym != b->sym) return false;
    for (int i = 0; i < a->nkids; i++)
        if (!expr_eq(a->kids[i], b->kids[i])) return false;
    return true;
}

bool pt_dim_eq(const pt_dim *a, const pt_dim *b) {
    if (!a->expr && !b->expr) return a->lit == b->lit;
    return a->expr && b->expr && expr_eq(a->expr, b->expr);
}
