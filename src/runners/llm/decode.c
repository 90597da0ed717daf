/*
** decode.c -- the decoders of tokenizer.json.  A decoder chain maps the
** list of token strings to a new list, step by step (Hugging Face's
** decode_chain), and the final list is concatenated.  ByteLevel turns the
** GPT-2 alphabet back into bytes, ByteFallback turns <0xNN> runs into
** text, Replace/Strip/Metaspace edit each token, Fuse joins them.
*/
#include <string.h>

#include "tokenizer.h"

#define OOM(err) pt_fail((err), PETREL_ERR_NOMEM, "tokenizer: out of memory")

/* ---- parsing --------------------------------------------------------------------- */

static petrel_status one_char(json_t *v, uint32_t *cp, const char *what, pt_err *err) {
    const char *s = json_string_value(v);
    size_t adv = 0;
    if (!s || !*s || (*cp = tk_utf8_decode(s, &adv), adv != json_string_length(v)))
        return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: %s must be one character", what);
    return PETREL_OK;
}

static petrel_status dec_add(tk_dec_step **steps, int *n, int *cap, json_t *j, int depth, pt_err *err) {
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: decoder without a type");
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(j, "decoders");
        if (!json_is_array(arr) || depth > 16)
            return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: bad Sequence decoder");
        size_t i;
        json_t *item;
        json_array_foreach(arr, i, item) PT_TRY(dec_add(steps, n, cap, item, depth + 1, err));
        return PETREL_OK;
    }
    tk_dec_kind kind = !strcmp(type, "ByteLevel")      ? TK_DEC_BYTE_LEVEL
                       : !strcmp(type, "Replace")      ? TK_DEC_REPLACE
                       : !strcmp(type, "ByteFallback") ? TK_DEC_BYTE_FALLBACK
                       : !strcmp(type, "Fuse")         ? TK_DEC_FUSE
                       : !strcmp(type, "Strip")        ? TK_DEC_STRIP
                       : !strcmp(type, "Metaspace")    ? TK_DEC_METASPACE
                                                       : TK_DEC_KIND_COUNT;
    if (kind == TK_DEC_KIND_COUNT)
        return pt_fail(err, PETREL_ERR_UNSUPPORTED, "tokenizer.json: decoder type '%s' is not supported",
                       type);
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 4;
        tk_dec_step *p = pt_realloc(*steps, (size_t)c * sizeof *p);
        if (!p) return OOM(err);
        *steps = p;
        *cap = c;
    }
    tk_dec_step *st = &(*steps)[(*n)++];
    memset(st, 0, sizeof *st);
    st->kind = kind;
    switch (kind) {
    case TK_DEC_REPLACE: {
        json_t *content = json_object_get(j, "content");
        if (!json_is_string(content))
            return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: Replace decoder without content");
        PT_TRY(tk_pattern_parse(&st->pat, json_object_get(j, "pattern"), "Replace decoder", err));
        st->str_len = json_string_length(content);
        if (!(st->str = pt_malloc(st->str_len + 1))) return OOM(err);
        memcpy(st->str, json_string_value(content), st->str_len + 1);
        return PETREL_OK;
    }
    case TK_DEC_STRIP: {
        json_t *start = json_object_get(j, "start"), *stop = json_object_get(j, "stop");
        if (!json_is_integer(start) || !json_is_integer(stop) || json_integer_value(start) < 0 ||
            json_integer_value(stop) < 0 || json_integer_value(start) > 1 << 20 ||
            json_integer_value(stop) > 1 << 20)
            return pt_fail(err, PETREL_ERR_FORMAT,
                           "tokenizer.json: Strip decoder needs start and stop counts");
        st->start = (int)json_integer_value(start);
        st->stop = (int)json_integer_value(stop);
        return one_char(json_object_get(j, "content"), &st->cp, "Strip decoder content", err);
    }
    case TK_DEC_METASPACE: {
        PT_TRY(one_char(json_object_get(j, "replacement"), &st->cp, "Metaspace replacement", err));
        const char *scheme = json_string_value(json_object_get(j, "prepend_scheme"));
        json_t *aps = json_object_get(j, "add_prefix_space");
        st->prepend = scheme ? strcmp(scheme, "never") != 0 : !json_is_false(aps);
        return PETREL_OK;
    }
    default: return PETREL_OK;
    }
}

/* Parse the "decoder" object (null: none) into a flat step list the
 * caller frees with tk_dec_free, also on failure. */
petrel_status tk_dec_parse(tk_dec_step **steps, int *n, json_t *j, pt_err *err) {
    *steps = NULL;
    *n = 0;
    if (!j || json_is_null(j)) return PETREL_OK;
    int cap = 0;
    petrel_status st = dec_add(steps, n, &cap, j, 0, err);
    if (st != PETREL_OK) {
        tk_dec_free(*steps, *n);
        *steps = NULL;
        *n = 0;
    }
    return st;
}

/* Release a step list from tk_dec_parse. */
void tk_dec_free(tk_dec_step *steps, int n) {
    for (int i = 0; i < n; i++) {
        tk_pattern_free(&steps[i].pat);
        pt_free(steps[i].str);
    }
    pt_free(steps);
}

/* ---- running the chain ------------------------------------------------------------- */

/* The byte of a "<0xNN>" token, or -1. */
static int fallback_byte(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int k = 3; k < 5; k++) {
        char c = s[k];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Put the bytes a ByteLevel token stands for: each character mapped back
 * to its byte, or the token's own bytes when any character is outside the
 * byte alphabet (added tokens such as "<|im_end|> "). */
static bool put_byte_level(tk_buf *out, const char *s, size_t n) {
    size_t start = out->n;
    if (!tk_buf_reserve(out, n)) return false;
    for (size_t i = 0; i < n;) {
        size_t adv;
        int b = tk_cp_to_byte(tk_utf8_decode(s + i, &adv));
        if (b < 0) {
            out->n = start;
            return tk_buf_put(out, s, n);
        }
        out->p[out->n++] = (char)b;
        i += adv;
    }
    return true;
}

/* Flush pending <0xNN> bytes as one token, or as one U+FFFD token per
 * byte when they are not valid UTF-8 (ByteFallback's rule). */
static bool flush_bytes(tk_pieces *out, tk_buf *bytes) {
    bool ok = true;
    if (bytes->n && tk_utf8_valid(bytes->p, bytes->n))
        ok = tk_pieces_add(out, bytes->p, bytes->n, false);
    else
        for (size_t k = 0; k < bytes->n && ok; k++) ok = tk_pieces_add(out, "\xef\xbf\xbd", 3, false);
    bytes->n = 0;
    return ok;
}

static petrel_status run_step(const tk_dec_step *st, tk_scratch *sc, const tk_pieces *in, tk_pieces *out,
                              pt_err *err) {
    switch (st->kind) {
    case TK_DEC_BYTE_LEVEL: {
        tk_buf *bytes = &sc->tmp;
        bytes->n = 0;
        for (size_t i = 0; i < in->n; i++)
            if (!put_byte_level(bytes, in->text.p + in->p[i].off, in->p[i].len)) return OOM(err);
        size_t off = out->text.n;
        if (!tk_put_lossy(&out->text, bytes->p, bytes->n) || !tk_pieces_commit(out, off, false))
            return OOM(err);
        return PETREL_OK;
    }
    case TK_DEC_FUSE: {
        size_t off = out->text.n;
        for (size_t i = 0; i < in->n; i++)
            if (!tk_buf_put(&out->text, in->text.p + in->p[i].off, in->p[i].len)) return OOM(err);
        return tk_pieces_commit(out, off, false) ? PETREL_OK : OOM(err);
    }
    case TK_DEC_BYTE_FALLBACK: {
        tk_buf *bytes = &sc->tmp;
        bytes->n = 0;
        for (size_t i = 0; i < in->n; i++) {
            const char *s = in->text.p + in->p[i].off;
            int b = fallback_byte(s, in->p[i].len);
            if (b >= 0) {
                if (!tk_buf_putc(bytes, (char)b)) return OOM(err);
                continue;
            }
            if (!flush_bytes(out, bytes) || !tk_pieces_add(out, s, in->p[i].len, false)) return OOM(err);
        }
        return flush_bytes(out, bytes) ? PETREL_OK : OOM(err);
    }
    case TK_DEC_REPLACE:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = in->text.p + in->p[i].off;
            size_t n = in->p[i].len, prev = 0, off = out->text.n;
            PT_TRY(tk_pattern_find(&st->pat, &sc->rx, s, n, &sc->m, err));
            for (size_t k = 0; k < sc->m.n; k++) {
                if (!tk_buf_put(&out->text, s + prev, sc->m.p[k].start - prev) ||
                    !tk_buf_put(&out->text, st->str, st->str_len))
                    return OOM(err);
                prev = sc->m.p[k].end;
            }
            if (!tk_buf_put(&out->text, s + prev, n - prev) || !tk_pieces_commit(out, off, false))
                return OOM(err);
        }
        return PETREL_OK;
    case TK_DEC_STRIP:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = in->text.p + in->p[i].off;
            size_t n = in->p[i].len, a = 0, b = n, adv;
            for (int k = 0; k < st->start && a < n && tk_utf8_decode(s + a, &adv) == st->cp; k++) a += adv;
            for (int k = 0; k < st->stop && b > a; k++) {
                size_t j = b - 1;
                while (j > a && ((unsigned char)s[j] & 0xc0) == 0x80) j--;
                if (tk_utf8_decode(s + j, &adv) != st->cp) break;
                b = j;
            }
            if (!tk_pieces_add(out, s + a, b - a, false)) return OOM(err);
        }
        return PETREL_OK;
    case TK_DEC_METASPACE:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = in->text.p + in->p[i].off;
            size_t n = in->p[i].len, off = out->text.n;
            for (size_t k = 0; k < n;) {
                size_t adv;
                uint32_t cp = tk_utf8_decode(s + k, &adv);
                bool ok = true;
                if (cp != st->cp)
                    ok = tk_buf_put(&out->text, s + k, adv);
                else if (!(i == 0 && st->prepend))
                    ok = tk_buf_putc(&out->text, ' ');
                if (!ok) return OOM(err);
                k += adv;
            }
            if (!tk_pieces_commit(out, off, false)) return OOM(err);
        }
        return PETREL_OK;
    case TK_DEC_KIND_COUNT: break;
    }
    return PETREL_OK;
}

/* Run the decoder steps over the token strings and append the text to out. */
petrel_status tk_decode_chain(const tk_dec_step *steps, int n_steps, bool has_decoder, tk_scratch *sc,
                              tk_pieces *toks, tk_buf *out, pt_err *err) {
    for (int i = 0; i < n_steps; i++) {
        tk_pieces_clear(&sc->pieces);
        PT_TRY(run_step(&steps[i], sc, toks, &sc->pieces, err));
        tk_pieces t = *toks;
        *toks = sc->pieces;
        sc->pieces = t;
    }
    for (size_t i = 0; i < toks->n; i++) {
        if (!has_decoder && i > 0 && !tk_buf_putc(out, ' ')) return OOM(err);
        if (!tk_buf_put(out, toks->text.p + toks->p[i].off, toks->p[i].len)) return OOM(err);
    }
    return PETREL_OK;
}

/* One token through the context-free decoder steps, raw bytes kept;
 * PETREL_ERR_NOMEM. */
petrel_status tk_decode_piece(const tk_dec_step *steps, int n_steps, const char *s, size_t n, tk_buf *out) {
    /* one token through the steps that do not depend on its neighbours;
     * bytes stay raw so a streamed multi-byte character can be completed */
    tk_buf a = {0}, b = {0};
    if (!tk_buf_put(&a, s, n)) return PETREL_ERR_NOMEM;
    petrel_status st = PETREL_OK;
    for (int i = 0; i < n_steps && st == PETREL_OK; i++) {
        const tk_dec_step *d = &steps[i];
        b.n = 0;
        bool ok = true;
        switch (d->kind) {
        case TK_DEC_BYTE_LEVEL: ok = put_byte_level(&b, a.p, a.n); break;
        case TK_DEC_BYTE_FALLBACK: {
            int v = fallback_byte(a.p, a.n);
            ok = v >= 0 ? tk_buf_putc(&b, (char)v) : tk_buf_put(&b, a.p, a.n);
            break;
        }
        case TK_DEC_REPLACE:
            if (d->pat.lit && d->pat.lit_len) {
                size_t prev = 0;
                for (;;) {
                    const char *hit = a.n - prev >= d->pat.lit_len
                                          ? memmem(a.p + prev, a.n - prev, d->pat.lit, d->pat.lit_len)
                                          : NULL;
                    if (!hit) break;
                    ok = ok && tk_buf_put(&b, a.p + prev, (size_t)(hit - a.p) - prev) &&
                         tk_buf_put(&b, d->str, d->str_len);
                    prev = (size_t)(hit - a.p) + d->pat.lit_len;
                }
                ok = ok && tk_buf_put(&b, a.p + prev, a.n - prev);
            } else {
                ok = tk_buf_put(&b, a.p, a.n); /* regex replacements need a scratch context: skipped */
            }
            break;
        case TK_DEC_METASPACE: {
            /* compared byte-wise: after ByteLevel the text may not be UTF-8 */
            char rep[4];
            size_t rl = tk_utf8_encode(d->cp, rep);
            for (size_t k = 0; k < a.n && ok;) {
                if (a.n - k >= rl && !memcmp(a.p + k, rep, rl)) {
                    ok = tk_buf_putc(&b, ' ');
                    k += rl;
                } else {
                    ok = tk_buf_putc(&b, a.p[k++]);
                }
            }
            break;
        }
        default: ok = tk_buf_put(&b, a.p, a.n); break; /* Fuse, Strip */
        }
        if (!ok) st = PETREL_ERR_NOMEM;
        tk_buf t = a;
        a = b;
        b = t;
    }
    if (st == PETREL_OK && !tk_buf_put(out, a.p, a.n)) st = PETREL_ERR_NOMEM;
    tk_buf_free(&a);
    tk_buf_free(&b);
    return st;
}
