/*
** text.c -- the tokenizer's small text toolbox: growable buffers and piece
** lists, UTF-8 validation and lossy decoding (byte-for-byte what Rust's
** from_utf8_lossy produces, since Hugging Face decodes with it), hashing,
** a u64 -> u64 hash map, and string/regex patterns on top of PCRE2.
*/
#include <stdio.h>
#include <string.h>

#include "tokenizer.h"
#include "unicode_extra.h"

/* ---- buffers ------------------------------------------------------------ */

/* Grow b for `extra` more bytes plus a NUL; false (b unchanged) when out of memory. */
bool tk_buf_reserve(tk_buf *b, size_t extra) {
    if (b->n + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra + 1) {
        if (cap > SIZE_MAX / 2) return false;
        cap *= 2;
    }
    char *p = pt_realloc(b->p, cap);
    if (!p) return false;
    b->p = p;
    b->cap = cap;
    return true;
}

/* Append n bytes (copied); false when out of memory. */
bool tk_buf_put(tk_buf *b, const void *s, size_t n) {
    if (!tk_buf_reserve(b, n)) return false;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    return true;
}

/* Release the bytes and reset b to empty. */
void tk_buf_free(tk_buf *b) {
    pt_free(b->p);
    memset(b, 0, sizeof *b);
}

static bool ids_reserve(tk_ids *v, size_t extra) {
    if (v->n + extra <= v->cap) return true;
    size_t cap = v->cap ? v->cap : 64;
    while (cap < v->n + extra) {
        if (cap > SIZE_MAX / 2 / sizeof(int32_t)) return false;
        cap *= 2;
    }
    int32_t *p = pt_realloc(v->p, cap * sizeof(int32_t));
    if (!p) return false;
    v->p = p;
    v->cap = cap;
    return true;
}

/* Append one id; false when out of memory. */
bool tk_ids_push(tk_ids *v, int32_t id) {
    if (v->n == v->cap && !ids_reserve(v, 1)) return false;
    v->p[v->n++] = id;
    return true;
}

/* Append n ids (copied); false when out of memory. */
bool tk_ids_append(tk_ids *v, const int32_t *ids, size_t n) {
    if (!ids_reserve(v, n)) return false;
    if (n) memcpy(v->p + v->n, ids, n * sizeof(int32_t));
    v->n += n;
    return true;
}

/* Register ps->text[off..] as one more piece; false when out of memory. */
bool tk_pieces_commit(tk_pieces *ps, size_t off, bool first) {
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 64;
        tk_piece *p = pt_realloc(ps->p, cap * sizeof *p);
        if (!p) return false;
        ps->p = p;
        ps->cap = cap;
    }
    ps->p[ps->n++] = (tk_piece){off, ps->text.n - off, first};
    return true;
}

/* Copy n bytes in as one more piece; false when out of memory. */
bool tk_pieces_add(tk_pieces *ps, const char *s, size_t n, bool first) {
    size_t off = ps->text.n;
    return tk_buf_put(&ps->text, s, n) && tk_pieces_commit(ps, off, first);
}

/* Empty the list, keeping its memory for reuse. */
void tk_pieces_clear(tk_pieces *ps) {
    ps->n = 0;
    ps->text.n = 0;
}

/* Release the list and reset it to empty. */
void tk_pieces_free(tk_pieces *ps) {
    tk_buf_free(&ps->text);
    pt_free(ps->p);
    memset(ps, 0, sizeof *ps);
}

/* ---- UTF-8 ---------------------------------------------------------------- */

/* Length and allowed second-byte range of the sequence a lead byte starts
 * (Unicode table 3-7); 0 for bytes that cannot start one. */
static size_t lead_info(unsigned char c, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80;
    *hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) return 2;
    if (c >= 0xe0 && c <= 0xef) {
        if (c == 0xe0) *lo = 0xa0;
        if (c == 0xed) *hi = 0x9f;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (c == 0xf0) *lo = 0x90;
        if (c == 0xf4) *hi = 0x8f;
        return 4;
    }
    return 0;
}

/* Bytes of a valid sequence starting at u[0] (0 when invalid); with
 * `prefix` set, the length of its longest valid prefix instead (>= 1). */
static size_t seq_len(const unsigned char *u, size_t avail, bool prefix) {
    unsigned char lo, hi;
    size_t len = lead_info(u[0], &lo, &hi);
    if (len == 0) return prefix ? 1 : 0;
    size_t k = 1;
    if (k < avail && u[1] >= lo && u[1] <= hi) {
        k = 2;
        while (k < len && k < avail && (u[k] & 0xc0) == 0x80) k++;
    }
    if (k == len) return len;
    return prefix ? k : 0;
}

/* True when s[0..n) is well-formed UTF-8 (see tokenizer.h). */
bool tk_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t len = seq_len(u + i, n - i, false);
        if (!len) return false;
        i += len;
    }
    return true;
}

/* Encode a code point (at most U+10FFFF) as UTF-8; returns its length. */
size_t tk_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Unicode White_Space: the characters Rust's char::is_whitespace accepts. */
bool tk_is_whitespace(uint32_t cp) {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0d);
    if (cp < 0x85) return false;
    return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* Append bytes, each maximal invalid UTF-8 subsequence becoming U+FFFD;
 * false when out of memory. */
bool tk_put_lossy(tk_buf *out, const char *s, size_t n) {
    static const char repl[3] = {(char)0xef, (char)0xbf, (char)0xbd}; /* U+FFFD */
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0; /* [run, i) is valid text not yet copied */
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t len = seq_len(u + i, n - i, false);
        if (len) {
            i += len;
            continue;
        }
        if (!tk_buf_put(out, s + run, i - run) || !tk_buf_put(out, repl, 3)) return false;
        i += seq_len(u + i, n - i, true);
        run = i;
    }
    return tk_buf_put(out, s + run, n - run);
}

/* ---- hashing -------------------------------------------------------------- */

/* A 64-bit hash of n bytes (not cryptographic; for the tables here). */
uint64_t tk_hash(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (n * 0xc2b2ae3d27d4eb4fULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ (w * 0x87c37b91114253d5ULL)) * 0x4cf5ad432745937fULL;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    return tk_mix64(h ^ w);
}

/* Allocate an empty map sized for `expected` keys; false when out of memory. */
bool tk_map64_init(tk_map64 *m, size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2) cap *= 2;
    m->keys = pt_malloc(cap * sizeof(uint64_t));
    m->vals = pt_malloc(cap * sizeof(uint64_t));
    if (!m->keys || !m->vals) {
        tk_map64_free(m);
        return false;
    }
    memset(m->keys, 0xff, cap * sizeof(uint64_t));
    m->mask = cap - 1;
    m->n = 0;
    return true;
}

/* Release the map and reset it to empty. */
void tk_map64_free(tk_map64 *m) {
    pt_free(m->keys);
    pt_free(m->vals);
    memset(m, 0, sizeof *m);
}

static void map64_insert(tk_map64 *m, uint64_t key, uint64_t val) {
    for (size_t i = tk_mix64(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == key) {
            m->vals[i] = val;
            return;
        }
        if (m->keys[i] == UINT64_MAX) {
            m->keys[i] = key;
            m->vals[i] = val;
            m->n++;
            return;
        }
    }
}

/* Insert or overwrite key -> val, growing at half load; false when out of
 * memory (the map is unchanged then). */
bool tk_map64_put(tk_map64 *m, uint64_t key, uint64_t val) {
    if (!m->keys && !tk_map64_init(m, 8)) return false;
    if ((m->n + 1) * 2 > m->mask + 1) {
        tk_map64 big = {0};
        if (!tk_map64_init(&big, m->n + 1)) return false;
        for (size_t i = 0; i <= m->mask; i++)
            if (m->keys[i] != UINT64_MAX) map64_insert(&big, m->keys[i], m->vals[i]);
        tk_map64_free(m);
        *m = big;
    }
    map64_insert(m, key, val);
    return true;
}

/* ---- patterns --------------------------------------------------------------- */

/* Create the PCRE2 match block, match context and JIT stack (the stack is
 * optional: without it PCRE2 uses its default).  PETREL_ERR_NOMEM. */
petrel_status tk_rx_init(tk_rx *rx, pt_err *err) {
    rx->md = pcre2_match_data_create(1, NULL);
    rx->mc = pcre2_match_context_create(NULL);
    /* Long whitespace runs against \s+(?!\S) need more than the default
     * 32 KiB of JIT stack. */
    rx->js = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!rx->md || !rx->mc) return pt_fail(err, PETREL_ERR_NOMEM, "tokenizer: out of memory");
    if (rx->js) pcre2_jit_stack_assign(rx->mc, NULL, rx->js);
    return PETREL_OK;
}

/* Release what tk_rx_init created; safe on a zeroed or half-built rx. */
void tk_rx_free(tk_rx *rx) {
    if (rx->md) pcre2_match_data_free(rx->md);
    if (rx->mc) pcre2_match_context_free(rx->mc);
    if (rx->js) pcre2_jit_stack_free(rx->js);
    memset(rx, 0, sizeof *rx);
}

/* Oniguruma's \s: the White_Space property.  PCRE2's also has U+180E. */
static const char onig_space[] =
    "\\t\\n\\x0b\\f\\r\\x20\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}"
    "\\x{205f}\\x{3000}";

/* Put a property class, widened by the code points PCRE2's older Unicode
 * tables lack: inside a class as "\p{X}extra", outside as "[\p{X}extra]"
 * (or "[^...]" when negated). */
static bool put_prop(tk_buf *out, const char *name, size_t len, bool negate, bool in_class) {
    const char *extra = "";
    for (size_t k = 0; k < sizeof tk_unicode_extra / sizeof tk_unicode_extra[0]; k++)
        if (strlen(tk_unicode_extra[k].prop) == len && !memcmp(tk_unicode_extra[k].prop, name, len))
            extra = tk_unicode_extra[k].extra;
    if (in_class && negate) { /* cannot widen a negated property inside a class */
        return tk_buf_put(out, "\\P{", 3) && tk_buf_put(out, name, len) && tk_buf_putc(out, '}');
    }
    bool ok = true;
    if (!in_class) ok = tk_buf_put(out, negate ? "[^" : "[", negate ? 2 : 1);
    ok = ok && tk_buf_put(out, "\\p{", 3) && tk_buf_put(out, name, len) && tk_buf_putc(out, '}') &&
         tk_buf_put(out, extra, strlen(extra));
    if (!in_class) ok = ok && tk_buf_putc(out, ']');
    return ok;
}

/* Rewrite an Oniguruma pattern (what Hugging Face compiles) for PCRE2 so
 * both match the same characters: \s becomes Oniguruma's White_Space set,
 * and \p{..}, \d and \w gain the code points of Unicode versions newer
 * than the system PCRE2 knows (unicode_extra.h).  Anything else passes
 * through unchanged. */
static bool translate_regex(const char *src, size_t n, tk_buf *out) {
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '\\' && i + 1 < n) {
            char d = src[++i];
            bool ok;
            if (d == 's') {
                ok = (in_class || tk_buf_putc(out, '[')) &&
                     tk_buf_put(out, onig_space, sizeof onig_space - 1) &&
                     (in_class || tk_buf_putc(out, ']'));
            } else if (d == 'S' && !in_class) {
                ok = tk_buf_put(out, "[^", 2) && tk_buf_put(out, onig_space, sizeof onig_space - 1) &&
                     tk_buf_putc(out, ']');
            } else if (d == 'd' || (d == 'D' && !in_class)) {
                ok = put_prop(out, "Nd", 2, d == 'D', in_class);
            } else if (d == 'w' || (d == 'W' && !in_class)) {
                /* Oniguruma's word characters: letters, marks, decimal
                 * digits, connector punctuation */
                ok = (in_class || tk_buf_put(out, d == 'W' ? "[^" : "[", d == 'W' ? 2 : 1)) &&
                     put_prop(out, "L", 1, false, true) && put_prop(out, "M", 1, false, true) &&
                     put_prop(out, "Nd", 2, false, true) && tk_buf_put(out, "\\p{Pc}", 6) &&
                     (in_class || tk_buf_putc(out, ']'));
            } else if ((d == 'p' || d == 'P') && i + 1 < n) {
                const char *name = src + i + 1;
                size_t len = 1;
                bool negate = d == 'P';
                if (*name == '{') {
                    const char *close = memchr(name, '}', n - (i + 1));
                    if (!close) return tk_buf_putc(out, c) && tk_buf_put(out, src + i, n - i);
                    i += (size_t)(close - name) + 1;
                    name++;
                    len = (size_t)(close - name);
                    if (len && *name == '^') negate = !negate, name++, len--;
                } else {
                    i++;
                }
                ok = put_prop(out, name, len, negate, in_class);
            } else {
                ok = tk_buf_putc(out, c) && tk_buf_putc(out, d);
            }
            if (!ok) return false;
            continue;
        }
        if (!tk_buf_putc(out, c)) return false;
        if (c == '[' && !in_class) {
            in_class = true;
            /* a leading ^ and a leading ] belong to the class */
            if (i + 1 < n && src[i + 1] == '^') {
                if (!tk_buf_putc(out, '^')) return false;
                i++;
            }
            if (i + 1 < n && src[i + 1] == ']') {
                if (!tk_buf_putc(out, ']')) return false;
                i++;
            }
        } else if (c == ']' && in_class) {
            in_class = false;
        }
    }
    return true;
}

/* Translate and compile a tokenizer.json regex (src is borrowed).
 * PETREL_ERR_FORMAT with PCRE2's message when it does not compile. */
petrel_status tk_pattern_regex(tk_pattern *p, const char *src, size_t n, const char *what, pt_err *err) {
    tk_buf t = {0};
    if (!translate_regex(src, n, &t)) {
        tk_buf_free(&t);
        return pt_fail(err, PETREL_ERR_NOMEM, "tokenizer: out of memory");
    }
    int code;
    PCRE2_SIZE at;
    p->re = pcre2_compile((PCRE2_SPTR)(t.p ? t.p : ""), t.n, PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
    tk_buf_free(&t);
    if (!p->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: %s: bad regex (%s)", what, (const char *)msg);
    }
    /* JIT is an optimization only: without it PCRE2 interprets. */
    (void)pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE);
    return PETREL_OK;
}

/* Parse {"String": s} / {"Regex": r} into p (which owns what it holds). */
petrel_status tk_pattern_parse(tk_pattern *p, json_t *j, const char *what, pt_err *err) {
    memset(p, 0, sizeof *p);
    json_t *s = json_object_get(j, "String");
    json_t *r = json_object_get(j, "Regex");
    if (json_is_string(s)) {
        p->lit_len = json_string_length(s);
        p->lit = pt_malloc(p->lit_len + 1);
        if (!p->lit) return pt_fail(err, PETREL_ERR_NOMEM, "tokenizer: out of memory");
        memcpy(p->lit, json_string_value(s), p->lit_len + 1);
        return PETREL_OK;
    }
    if (json_is_string(r)) return tk_pattern_regex(p, json_string_value(r), json_string_length(r), what, err);
    return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: %s: pattern is neither String nor Regex", what);
}

/* Compile "[" body extra "]" suffix; see tokenizer.h. */
petrel_status tk_pattern_class(tk_pattern *p, const char *body, const char *extra, const char *suffix,
                               const char *what, pt_err *err) {
    memset(p, 0, sizeof *p);
    const char *more = "";
    for (size_t k = 0; k < sizeof tk_unicode_extra / sizeof tk_unicode_extra[0]; k++)
        if (!strcmp(tk_unicode_extra[k].prop, extra)) more = tk_unicode_extra[k].extra;
    tk_buf t = {0};
    bool ok = tk_buf_putc(&t, '[') && tk_buf_put(&t, body, strlen(body)) &&
              tk_buf_put(&t, more, strlen(more)) && tk_buf_putc(&t, ']') &&
              tk_buf_put(&t, suffix, strlen(suffix));
    petrel_status st = ok ? tk_pattern_regex(p, t.p, t.n, what, err)
                          : pt_fail(err, PETREL_ERR_NOMEM, "tokenizer: out of memory");
    tk_buf_free(&t);
    return st;
}

/* Release the literal or compiled regex; safe on a zeroed pattern. */
void tk_pattern_free(tk_pattern *p) {
    pt_free(p->lit);
    if (p->re) pcre2_code_free(p->re);
    memset(p, 0, sizeof *p);
}

static bool matches_push(tk_matches *m, size_t start, size_t end) {
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        tk_match *p = pt_realloc(m->p, cap * sizeof *p);
        if (!p) return false;
        m->p = p;
        m->cap = cap;
    }
    m->p[m->n++] = (tk_match){start, end};
    return true;
}

/* All non-overlapping matches left to right into out (cleared first).
 * PETREL_ERR_RUNTIME when PCRE2 fails (e.g. its JIT stack runs out). */
petrel_status tk_pattern_find(const tk_pattern *p, tk_rx *rx, const char *s, size_t n, tk_matches *out,
                              pt_err *err) {
    out->n = 0;
    if (p->lit) {
        if (p->lit_len == 0) return PETREL_OK;
        const char *at = s, *end = s + n;
        while ((size_t)(end - at) >= p->lit_len) {
            const char *hit = memmem(at, (size_t)(end - at), p->lit, p->lit_len);
            if (!hit) break;
            if (!matches_push(out, (size_t)(hit - s), (size_t)(hit - s) + p->lit_len))
                return pt_fail(err, PETREL_ERR_NOMEM, "tokenizer: out of memory");
            at = hit + p->lit_len;
        }
        return PETREL_OK;
    }
    size_t pos = 0;
    while (pos <= n) {
        /* The text was validated once up front; checking it again on every
         * call would make the scan quadratic. */
        int rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, rx->md, rx->mc);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return pt_fail(err, PETREL_ERR_RUNTIME, "tokenizer: regex match failed (%s)", (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(rx->md);
        size_t a = ov[0], b = ov[1];
        if (!matches_push(out, a, b)) return pt_fail(err, PETREL_ERR_NOMEM, "tokenizer: out of memory");
        if (b > a) {
            pos = b;
        } else {
            if (b >= n) break;
            pos = b + tk_utf8_len((unsigned char)s[b]);
        }
    }
    return PETREL_OK;
}
