/*
** pretokenize.c -- the normalizers and pre-tokenizers of tokenizer.json:
** parsing their JSON into flat step lists (a Sequence is flattened, which
** keeps its meaning since every step runs over all pieces in order) and
** running them.  Each step reproduces the Hugging Face component of the
** same name, including its corner cases (prepend on an empty string does
** nothing, empty pieces are dropped after each split, ...).
*/
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer.h"
#include "unicode_extra.h"

#define OOM(err) pt_fail((err), PETREL_ERR_NOMEM, "tokenizer: out of memory")

/* ---- JSON helpers ------------------------------------------------------------ */

static bool get_bool(json_t *obj, const char *key, bool dflt) {
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static char *dup_json_string(json_t *v, size_t *len) {
    size_t n = json_string_length(v);
    char *s = pt_malloc(n + 1);
    if (s) memcpy(s, json_string_value(v), n + 1);
    if (len) *len = n;
    return s;
}

/* Grow a step array by one zeroed element; NULL when out of memory. */
static void *grow(void **arr, int *n, int *cap, size_t elem) {
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 4;
        void *p = pt_realloc(*arr, (size_t)c * elem);
        if (!p) return NULL;
        *arr = p;
        *cap = c;
    }
    char *e = (char *)*arr + (size_t)(*n)++ * elem;
    memset(e, 0, elem);
    return e;
}

/* ---- normalizers ------------------------------------------------------------- */

static petrel_status norm_add(tk_norm_step **steps, int *n, int *cap, json_t *j, int depth, pt_err *err) {
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: normalizer without a type");
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(j, "normalizers");
        if (!json_is_array(arr) || depth > 16)
            return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: bad Sequence normalizer");
        size_t i;
        json_t *item;
        json_array_foreach(arr, i, item) PT_TRY(norm_add(steps, n, cap, item, depth + 1, err));
        return PETREL_OK;
    }
    static const char *const simple[] = {"NFC", "NFD", "NFKC", "NFKD"};
    tk_norm_kind kind = TK_NORM_KIND_COUNT;
    for (int k = 0; k < 4; k++)
        if (!strcmp(type, simple[k])) kind = (tk_norm_kind)(TK_NORM_NFC + k);
    if (!strcmp(type, "Replace")) kind = TK_NORM_REPLACE;
    if (!strcmp(type, "Prepend")) kind = TK_NORM_PREPEND;
    if (!strcmp(type, "Lowercase")) kind = TK_NORM_LOWERCASE;
    if (!strcmp(type, "Strip")) kind = TK_NORM_STRIP;
    if (kind == TK_NORM_KIND_COUNT)
        return pt_fail(err, PETREL_ERR_UNSUPPORTED, "tokenizer.json: normalizer type '%s' is not supported",
                       type);
    tk_norm_step *st = grow((void **)steps, n, cap, sizeof **steps);
    if (!st) return OOM(err);
    st->kind = kind;
    if (kind == TK_NORM_REPLACE) {
        json_t *content = json_object_get(j, "content");
        if (!json_is_string(content))
            return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: Replace normalizer without content");
        PT_TRY(tk_pattern_parse(&st->pat, json_object_get(j, "pattern"), "Replace normalizer", err));
        if (!(st->str = dup_json_string(content, &st->str_len))) return OOM(err);
    } else if (kind == TK_NORM_PREPEND) {
        json_t *p = json_object_get(j, "prepend");
        if (!json_is_string(p))
            return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: Prepend normalizer without text");
        if (!(st->str = dup_json_string(p, &st->str_len))) return OOM(err);
    } else if (kind == TK_NORM_STRIP) {
        st->left = get_bool(j, "strip_left", true);
        st->right = get_bool(j, "strip_right", true);
    }
    return PETREL_OK;
}

/* Parse the "normalizer" object (null: none) into a flat step list; see
 * tokenizer.h. */
petrel_status tk_norm_parse(tk_norm_step **steps, int *n, json_t *j, pt_err *err) {
    *steps = NULL;
    *n = 0;
    if (!j || json_is_null(j)) return PETREL_OK;
    int cap = 0;
    petrel_status st = norm_add(steps, n, &cap, j, 0, err);
    if (st != PETREL_OK) {
        tk_norm_free(*steps, *n);
        *steps = NULL;
        *n = 0;
    }
    return st;
}

/* Release a step list from tk_norm_parse. */
void tk_norm_free(tk_norm_step *steps, int n) {
    for (int i = 0; i < n; i++) {
        tk_pattern_free(&steps[i].pat);
        pt_free(steps[i].str);
    }
    pt_free(steps);
}

static bool all_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return false;
    return true;
}

static bool in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid][0])
            hi = mid;
        else if (cp > r[mid][1])
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

/* Normalize s[0..n) with utf8proc and append the result to out. */
static petrel_status map_utf8proc(const char *s, size_t n, int opt, tk_buf *out, pt_err *err) {
    if (n == 0) return PETREL_OK;
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t len =
        utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, (utf8proc_option_t)opt);
    if (len < 0) {
        free(dst); /* utf8proc allocates with malloc */
        return pt_fail(err, len == UTF8PROC_ERROR_NOMEM ? PETREL_ERR_NOMEM : PETREL_ERR_INVALID_ARG,
                       "tokenizer: normalization failed (%s)", utf8proc_errmsg(len));
    }
    bool ok = tk_buf_put(out, dst, (size_t)len);
    free(dst);
    return ok ? PETREL_OK : OOM(err);
}

/* A Unicode normal form as Hugging Face computes it.  Its tables are older
 * than utf8proc's: code points they do not know behave as starters with no
 * mapping there, so those are copied through and the text between them is
 * normalized on its own -- which gives exactly that behaviour. */
static petrel_status normal_form(tk_norm_kind kind, const char *s, size_t n, tk_buf *out, pt_err *err) {
    int opt = UTF8PROC_STABLE;
    opt |= (kind == TK_NORM_NFC || kind == TK_NORM_NFKC) ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
    bool compat = kind == TK_NORM_NFKC || kind == TK_NORM_NFKD;
    if (compat) opt |= UTF8PROC_COMPAT;
    const uint32_t(*unknown)[2] = compat ? tk_norm_compat_unknown : tk_norm_canon_unknown;
    size_t n_unknown = compat ? sizeof tk_norm_compat_unknown / sizeof tk_norm_compat_unknown[0]
                              : sizeof tk_norm_canon_unknown / sizeof tk_norm_canon_unknown[0];
    size_t start = 0;
    for (size_t i = 0; i < n;) {
        size_t adv;
        uint32_t cp = tk_utf8_decode(s + i, &adv);
        if (cp >= unknown[0][0] && in_ranges(unknown, n_unknown, cp)) {
            PT_TRY(map_utf8proc(s + start, i - start, opt, out, err));
            if (!tk_buf_put(out, s + i, adv)) return OOM(err);
            start = i + adv;
        }
        i += adv;
    }
    return map_utf8proc(s + start, n - start, opt, out, err);
}

static void swap_bufs(tk_buf *a, tk_buf *b) {
    tk_buf t = *a;
    *a = *b;
    *b = t;
}

/* Run the normalizer steps over s[0..n) into sc->norm; see tokenizer.h. */
petrel_status tk_normalize(const tk_norm_step *steps, int n_steps, tk_scratch *sc, const char *s, size_t n,
                           bool *first, pt_err *err) {
    tk_buf *cur = &sc->norm, *tmp = &sc->tmp;
    cur->n = 0;
    if (!tk_buf_put(cur, s, n)) return OOM(err);
    for (int i = 0; i < n_steps; i++) {
        const tk_norm_step *st = &steps[i];
        tmp->n = 0;
        switch (st->kind) {
        case TK_NORM_NFC:
        case TK_NORM_NFD:
        case TK_NORM_NFKC:
        case TK_NORM_NFKD:
            if (all_ascii(cur->p, cur->n)) continue; /* every form maps ASCII to itself */
            PT_TRY(normal_form(st->kind, cur->p, cur->n, tmp, err));
            break;
        case TK_NORM_REPLACE: {
            PT_TRY(tk_pattern_find(&st->pat, &sc->rx, cur->p, cur->n, &sc->m, err));
            /* Hugging Face aligns replacement text with the last character
             * it replaces, so a leading match of several characters (or
             * one replaced by nothing) no longer starts at offset 0.  This
             * assumes the earlier steps kept characters aligned one to one. */
            if (first && sc->m.n && sc->m.p[0].start == 0 && sc->m.p[0].end > 0 &&
                (st->str_len == 0 || tk_utf8_len((unsigned char)cur->p[0]) != sc->m.p[0].end))
                *first = false;
            size_t prev = 0;
            for (size_t k = 0; k < sc->m.n; k++) {
                if (!tk_buf_put(tmp, cur->p + prev, sc->m.p[k].start - prev) ||
                    !tk_buf_put(tmp, st->str, st->str_len))
                    return OOM(err);
                prev = sc->m.p[k].end;
            }
            if (!tk_buf_put(tmp, cur->p + prev, cur->n - prev)) return OOM(err);
            break;
        }
        case TK_NORM_PREPEND:
            if (cur->n == 0) continue;
            if (!tk_buf_put(tmp, st->str, st->str_len) || !tk_buf_put(tmp, cur->p, cur->n)) return OOM(err);
            break;
        case TK_NORM_LOWERCASE:
            for (size_t k = 0; k < cur->n;) {
                size_t adv;
                uint32_t cp = tk_utf8_decode(cur->p + k, &adv);
                char u[8];
                size_t ulen;
                if (cp == 0x130) { /* Rust lowercases İ to two characters: i + U+0307 */
                    memcpy(u, "i\xcc\x87", 3);
                    ulen = 3;
                } else {
                    ulen = tk_utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), u);
                }
                if (!tk_buf_put(tmp, u, ulen)) return OOM(err);
                k += adv;
            }
            break;
        case TK_NORM_STRIP: {
            size_t a = 0, b = cur->n;
            while (st->left && a < b) {
                size_t adv;
                if (!tk_is_whitespace(tk_utf8_decode(cur->p + a, &adv))) break;
                a += adv;
            }
            while (st->right && b > a) {
                size_t k = b - 1, adv;
                while (k > a && ((unsigned char)cur->p[k] & 0xc0) == 0x80) k--;
                if (!tk_is_whitespace(tk_utf8_decode(cur->p + k, &adv))) break;
                b = k;
            }
            if (a > 0 && first) *first = false;
            if (!tk_buf_put(tmp, cur->p + a, b - a)) return OOM(err);
            break;
        }
        case TK_NORM_KIND_COUNT: break;
        }
        swap_bufs(cur, tmp);
    }
    /* the result must end up in sc->norm */
    if (cur != &sc->norm) swap_bufs(&sc->norm, &sc->tmp);
    return PETREL_OK;
}

/* ---- the byte-level alphabet -------------------------------------------------- */

/* GPT-2 keeps the printable bytes 33..126, 161..172 and 174..255 as the
 * code points of the same value and moves the other 68 to 256..323, in
 * byte order. */
uint32_t tk_byte_to_cp(uint8_t b) {
    if (b <= 32) return 256u + b;
    if (b >= 127 && b <= 160) return (uint32_t)b + 162u;
    if (b == 173) return 323;
    return b;
}

/* The byte a byte-level character stands for, or -1. */
int tk_cp_to_byte(uint32_t cp) {
    if (cp >= 256 && cp <= 288) return (int)(cp - 256);
    if (cp >= 289 && cp <= 322) return (int)(cp - 162);
    if (cp == 323) return 173;
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) return (int)cp;
    return -1;
}

/* ---- pre-tokenizers ---------------------------------------------------------- */

/* GPT-2's split, used by ByteLevel when use_regex is set. */
static const char gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static petrel_status pre_add(tk_pre_step **steps, int *n, int *cap, json_t *j, int depth, pt_err *err) {
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: pre_tokenizer without a type");
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(j, "pretokenizers");
        if (!json_is_array(arr) || depth > 16)
            return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: bad Sequence pre_tokenizer");
        size_t i;
        json_t *item;
        json_array_foreach(arr, i, item) PT_TRY(pre_add(steps, n, cap, item, depth + 1, err));
        return PETREL_OK;
    }
    tk_pre_kind kind = !strcmp(type, "Split")       ? TK_PRE_SPLIT
                       : !strcmp(type, "ByteLevel") ? TK_PRE_BYTE_LEVEL
                       : !strcmp(type, "Metaspace") ? TK_PRE_METASPACE
                       : !strcmp(type, "Digits")    ? TK_PRE_DIGITS
                                                    : TK_PRE_KIND_COUNT;
    if (kind == TK_PRE_KIND_COUNT)
        return pt_fail(err, PETREL_ERR_UNSUPPORTED,
                       "tokenizer.json: pre_tokenizer type '%s' is not supported", type);
    tk_pre_step *st = grow((void **)steps, n, cap, sizeof **steps);
    if (!st) return OOM(err);
    st->kind = kind;
    switch (kind) {
    case TK_PRE_SPLIT: {
        static const char *const names[TK_SPLIT_BEHAVIOR_COUNT] = {
            "Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        const char *b = json_string_value(json_object_get(j, "behavior"));
        st->behavior = TK_SPLIT_BEHAVIOR_COUNT;
        for (int k = 0; b && k < TK_SPLIT_BEHAVIOR_COUNT; k++)
            if (!strcmp(b, names[k])) st->behavior = (tk_split_behavior)k;
        if (st->behavior == TK_SPLIT_BEHAVIOR_COUNT)
            return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: Split behavior '%s' is unknown",
                           b ? b : "(missing)");
        st->invert = get_bool(j, "invert", false);
        return tk_pattern_parse(&st->pat, json_object_get(j, "pattern"), "Split pre_tokenizer", err);
    }
    case TK_PRE_BYTE_LEVEL:
        st->add_prefix_space = get_bool(j, "add_prefix_space", true);
        st->use_regex = get_bool(j, "use_regex", true);
        if (st->use_regex)
            return tk_pattern_regex(&st->pat, gpt2_regex, sizeof gpt2_regex - 1, "ByteLevel", err);
        return PETREL_OK;
    case TK_PRE_METASPACE: {
        json_t *r = json_object_get(j, "replacement");
        const char *rs = json_string_value(r);
        size_t adv = 0;
        if (!rs || !*rs || (tk_utf8_decode(rs, &adv), adv != json_string_length(r)))
            return pt_fail(err, PETREL_ERR_FORMAT,
                           "tokenizer.json: Metaspace replacement must be one character");
        memcpy(st->rep, rs, adv);
        st->rep_len = adv;
        const char *scheme = json_string_value(json_object_get(j, "prepend_scheme"));
        if (scheme) {
            st->prepend = !strcmp(scheme, "first")    ? TK_PREPEND_FIRST
                          : !strcmp(scheme, "never")  ? TK_PREPEND_NEVER
                          : !strcmp(scheme, "always") ? TK_PREPEND_ALWAYS
                                                      : TK_PREPEND_SCHEME_COUNT;
            if (st->prepend == TK_PREPEND_SCHEME_COUNT)
                return pt_fail(err, PETREL_ERR_FORMAT,
                               "tokenizer.json: Metaspace prepend_scheme '%s' is unknown", scheme);
        } else {
            /* files older than prepend_scheme carry add_prefix_space */
            st->prepend = get_bool(j, "add_prefix_space", true) ? TK_PREPEND_ALWAYS : TK_PREPEND_NEVER;
        }
        st->split = get_bool(j, "split", true);
        return PETREL_OK;
    }
    case TK_PRE_DIGITS:
        /* Hugging Face splits at each character with Rust's
         * char::is_numeric (Nd, Nl, No), isolating each one or, with
         * Contiguous, each run: the same pieces as an isolating split on
         * \p{N} or \p{N}+ (with Rust's Unicode version) */
        st->individual_digits = get_bool(j, "individual_digits", false);
        return tk_pattern_class(&st->pat, "\\p{N}", "rust_numeric", st->individual_digits ? "" : "+",
                                "Digits", err);
    case TK_PRE_KIND_COUNT: break;
    }
    return PETREL_OK;
}

/* Parse the "pre_tokenizer" object (null: none) into a flat step list;
 * see tokenizer.h. */
petrel_status tk_pre_parse(tk_pre_step **steps, int *n, json_t *j, pt_err *err) {
    *steps = NULL;
    *n = 0;
    if (!j || json_is_null(j)) return PETREL_OK;
    int cap = 0;
    petrel_status st = pre_add(steps, n, &cap, j, 0, err);
    if (st != PETREL_OK) {
        tk_pre_free(*steps, *n);
        *steps = NULL;
        *n = 0;
    }
    return st;
}

/* Release a step list from tk_pre_parse. */
void tk_pre_free(tk_pre_step *steps, int n) {
    for (int i = 0; i < n; i++) tk_pattern_free(&steps[i].pat);
    pt_free(steps);
}

/* Append a piece, mapping each byte to its byte-level character when asked. */
static bool emit(tk_pieces *out, const char *s, size_t n, bool first, bool map_bytes) {
    if (!map_bytes) return tk_pieces_add(out, s, n, first);
    size_t off = out->text.n;
    if (!tk_buf_reserve(&out->text, 2 * n)) return false;
    for (size_t i = 0; i < n; i++) {
        char u[4];
        size_t k = tk_utf8_encode(tk_byte_to_cp((uint8_t)s[i]), u);
        memcpy(out->text.p + out->text.n, u, k);
        out->text.n += k;
    }
    return tk_pieces_commit(out, off, first);
}

/* Split s[0..n) at the matches in sc->m the way NormalizedString::split
 * does for `behavior`, and emit the non-empty parts that are kept. */
static petrel_status split_emit(tk_scratch *sc, const char *s, size_t n, bool first,
                                tk_split_behavior behavior, bool invert, bool map_bytes, tk_pieces *out,
                                pt_err *err) {
    if (n == 0) return PETREL_OK;
    size_t need = 2 * sc->m.n + 1;
    if (need > sc->seg_cap) {
        tk_seg *p = pt_realloc(sc->seg, need * sizeof *p);
        if (!p) return OOM(err);
        sc->seg = p;
        sc->seg_cap = need;
    }
    tk_seg *seg = sc->seg;
    size_t k = 0, prev = 0;
    for (size_t i = 0; i < sc->m.n; i++) {
        tk_match mt = sc->m.p[i];
        if (prev != mt.start) seg[k++] = (tk_seg){prev, mt.start, invert};
        seg[k++] = (tk_seg){mt.start, mt.end, !invert};
        prev = mt.end;
    }
    if (prev != n) seg[k++] = (tk_seg){prev, n, invert};
    /* Each rule below turns (span, is_match) into (span, remove). */
    size_t m = 0;
    bool prev_match = false;
    switch (behavior) {
    case TK_SPLIT_ISOLATED:
        for (size_t i = 0; i < k; i++) seg[i].flag = false;
        m = k;
        break;
    case TK_SPLIT_REMOVED: m = k; break;
    case TK_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < k; i++) {
            bool is_match = seg[i].flag;
            if (is_match == prev_match && m > 0)
                seg[m - 1].end = seg[i].end;
            else
                seg[m++] = (tk_seg){seg[i].start, seg[i].end, false};
            prev_match = is_match;
        }
        break;
    case TK_SPLIT_MERGED_WITH_PREVIOUS:
        for (size_t i = 0; i < k; i++) {
            bool is_match = seg[i].flag;
            if (is_match && !prev_match && m > 0)
                seg[m - 1].end = seg[i].end;
            else
                seg[m++] = (tk_seg){seg[i].start, seg[i].end, false};
            prev_match = is_match;
        }
        break;
    case TK_SPLIT_MERGED_WITH_NEXT: {
        /* right to left, merging each match into the part after it; the
         * result is built at the top of the array, then moved down */
        size_t top = k;
        for (size_t i = k; i-- > 0;) {
            bool is_match = seg[i].flag;
            if (is_match && !prev_match && top < k)
                seg[top].start = seg[i].start;
            else
                seg[--top] = (tk_seg){seg[i].start, seg[i].end, false};
            prev_match = is_match;
        }
        m = k - top;
        memmove(seg, seg + top, m * sizeof *seg);
        break;
    }
    case TK_SPLIT_BEHAVIOR_COUNT: break;
    }
    for (size_t i = 0; i < m; i++) {
        if (seg[i].flag || seg[i].end == seg[i].start) continue;
        if (!emit(out, s + seg[i].start, seg[i].end - seg[i].start, first && seg[i].start == 0, map_bytes))
            return OOM(err);
    }
    return PETREL_OK;
}

/* Run one step over one piece, appending the resulting pieces to out. */
static petrel_status pre_step(const tk_pre_step *st, tk_scratch *sc, const char *s, size_t n, bool first,
                              tk_pieces *out, pt_err *err) {
    switch (st->kind) {
    case TK_PRE_SPLIT:
        PT_TRY(tk_pattern_find(&st->pat, &sc->rx, s, n, &sc->m, err));
        return split_emit(sc, s, n, first, st->behavior, st->invert, false, out, err);
    case TK_PRE_BYTE_LEVEL:
        if (st->add_prefix_space && n > 0 && s[0] != ' ') {
            sc->tmp.n = 0;
            if (!tk_buf_putc(&sc->tmp, ' ') || !tk_buf_put(&sc->tmp, s, n)) return OOM(err);
            s = sc->tmp.p;
            n = sc->tmp.n;
        }
        if (!st->use_regex) return emit(out, s, n, first, true) ? PETREL_OK : OOM(err);
        PT_TRY(tk_pattern_find(&st->pat, &sc->rx, s, n, &sc->m, err));
        return split_emit(sc, s, n, first, TK_SPLIT_ISOLATED, false, true, out, err);
    case TK_PRE_METASPACE: {
        tk_buf *t = &sc->tmp;
        t->n = 0;
        if (n > 0 && (st->prepend == TK_PREPEND_ALWAYS || (st->prepend == TK_PREPEND_FIRST && first)) &&
            !(n >= st->rep_len && !memcmp(s, st->rep, st->rep_len)) && s[0] != ' ') {
            /* (a leading space becomes the replacement, so it counts too) */
            if (!tk_buf_put(t, st->rep, st->rep_len)) return OOM(err);
        }
        for (size_t i = 0; i < n; i++) {
            bool ok = s[i] == ' ' ? tk_buf_put(t, st->rep, st->rep_len) : tk_buf_putc(t, s[i]);
            if (!ok) return OOM(err);
        }
        if (!st->split) return emit(out, t->p, t->n, first, false) ? PETREL_OK : OOM(err);
        tk_pattern lit = {.lit = (char *)st->rep, .lit_len = st->rep_len};
        PT_TRY(tk_pattern_find(&lit, &sc->rx, t->p, t->n, &sc->m, err));
        return split_emit(sc, t->p, t->n, first, TK_SPLIT_MERGED_WITH_NEXT, false, false, out, err);
    }
    case TK_PRE_DIGITS:
        PT_TRY(tk_pattern_find(&st->pat, &sc->rx, s, n, &sc->m, err));
        return split_emit(sc, s, n, first, TK_SPLIT_ISOLATED, false, false, out, err);
    case TK_PRE_KIND_COUNT: break;
    }
    return PETREL_OK;
}

/* Split s[0..n) into words in sc->words, one step after the other over
 * every piece, as PreTokenizedString::split does. */
petrel_status tk_pretokenize(const tk_pre_step *steps, int n_steps, tk_scratch *sc, const char *s, size_t n,
                             bool first, pt_err *err) {
    tk_pieces *cur = &sc->words, *next = &sc->pieces;
    tk_pieces_clear(cur);
    if (n == 0) return PETREL_OK;
    if (!tk_pieces_add(cur, s, n, first)) return OOM(err);
    for (int i = 0; i < n_steps; i++) {
        tk_pieces_clear(next);
        for (size_t k = 0; k < cur->n; k++) {
            tk_piece p = cur->p[k];
            PT_TRY(pre_step(&steps[i], sc, cur->text.p + p.off, p.len, p.first, next, err));
        }
        tk_pieces t = *cur;
        *cur = *next;
        *next = t;
    }
    return PETREL_OK;
}
