/*
** tokenizer.c -- petrel_tokenizer_*: load a Hugging Face tokenizer.json
** (optionally gzip-compressed), and run the encode pipeline described in
** tokenizer.h: added tokens, normalizer, pre-tokenizer, BPE, template.
*/
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "tokenizer.h"

#define OOM(err)       pt_fail((err), PETREL_ERR_NOMEM, "tokenizer: out of memory")
#define MAX_ADDED_ID   (1 << 26)
#define MAX_JSON_BYTES ((size_t)1 << 31) /* refuse to inflate past 2 GiB */

/* ---- reading the file ------------------------------------------------------------ */

static petrel_status read_file(const char *path, unsigned char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return pt_fail(NULL, errno == ENOENT ? PETREL_ERR_NOT_FOUND : PETREL_ERR_IO, "%s: %s", path,
                       strerror(errno));
    size_t cap = 1 << 20, n = 0;
    unsigned char *buf = pt_malloc(cap);
    petrel_status st = PETREL_OK;
    while (buf) {
        if (n == cap) {
            unsigned char *p = cap < MAX_JSON_BYTES ? pt_realloc(buf, cap * 2) : NULL;
            if (!p) {
                st = pt_fail(NULL, cap < MAX_JSON_BYTES ? PETREL_ERR_NOMEM : PETREL_ERR_FORMAT, "%s: %s",
                             path, cap < MAX_JSON_BYTES ? "out of memory" : "file too large");
                break;
            }
            buf = p;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) {
            if (ferror(f)) st = pt_fail(NULL, PETREL_ERR_IO, "%s: read error", path);
            break;
        }
    }
    if (!buf) st = pt_fail(NULL, PETREL_ERR_NOMEM, "%s: out of memory", path);
    fclose(f);
    if (st != PETREL_OK) {
        pt_free(buf);
        return st;
    }
    *data = buf;
    *len = n;
    return PETREL_OK;
}

/* Inflate a gzip stream into a new buffer. */
static petrel_status gunzip(const unsigned char *in, size_t n, unsigned char **out, size_t *out_len) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return pt_fail(NULL, PETREL_ERR_NOMEM, "tokenizer: zlib init failed");
    size_t cap = n * 4 + 1024, len = 0;
    unsigned char *buf = pt_malloc(cap);
    petrel_status st = PETREL_OK;
    z.next_in = (unsigned char *)in;
    size_t left = n;
    int rc = Z_OK;
    while (buf && rc != Z_STREAM_END) {
        if (len == cap) {
            unsigned char *p = cap < MAX_JSON_BYTES ? pt_realloc(buf, cap * 2) : NULL;
            if (!p) {
                st = pt_fail(NULL, cap < MAX_JSON_BYTES ? PETREL_ERR_NOMEM : PETREL_ERR_FORMAT,
                             "tokenizer: %s",
                             cap < MAX_JSON_BYTES ? "out of memory" : "inflated data too large");
                break;
            }
            buf = p;
            cap *= 2;
        }
        if (z.avail_in == 0) {
            z.avail_in = left > UINT32_MAX ? UINT32_MAX : (uInt)left;
            left -= z.avail_in;
        }
        size_t room = cap - len;
        z.next_out = buf + len;
        z.avail_out = room > UINT32_MAX ? UINT32_MAX : (uInt)room;
        uInt before = z.avail_out;
        rc = inflate(&z, Z_NO_FLUSH);
        len += before - z.avail_out;
        if (rc == Z_STREAM_END) break;
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            st = pt_fail(NULL, PETREL_ERR_FORMAT, "tokenizer: corrupt gzip data (%s)",
                         z.msg ? z.msg : "inflate failed");
            break;
        }
        if (rc == Z_BUF_ERROR && z.avail_in == 0 && left == 0) {
            st = pt_fail(NULL, PETREL_ERR_FORMAT, "tokenizer: truncated gzip data");
            break;
        }
    }
    if (!buf) st = pt_fail(NULL, PETREL_ERR_NOMEM, "tokenizer: out of memory");
    inflateEnd(&z);
    if (st != PETREL_OK) {
        pt_free(buf);
        return st;
    }
    *out = buf;
    *out_len = len;
    return PETREL_OK;
}

/* ---- added tokens ----------------------------------------------------------------- */

static void trie_free(tk_trie *t) {
    tk_map64_free(&t->edges);
    pt_free(t->term);
    memset(t, 0, sizeof *t);
}

static int32_t trie_new_node(tk_trie *t) {
    if (t->n_nodes == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        int32_t *p = pt_realloc(t->term, cap * sizeof *p);
        if (!p) return -1;
        t->term = p;
        t->cap = cap;
    }
    t->term[t->n_nodes] = -1;
    return (int32_t)t->n_nodes++;
}

static bool trie_init(tk_trie *t) {
    memset(t, 0, sizeof *t);
    for (int i = 0; i < 256; i++) t->root[i] = -1;
    return trie_new_node(t) == 0; /* node 0 is the root */
}

static inline int32_t trie_child(const tk_trie *t, int32_t node, uint8_t c) {
    if (node == 0) return t->root[c];
    return (int32_t)(int64_t)tk_map64_get(&t->edges, (uint64_t)node << 8 | c, (uint64_t)-1);
}

/* Add one pattern; the first token with a given content keeps it. */
static bool trie_add(tk_trie *t, const char *s, size_t n, int32_t index) {
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        int32_t next = trie_child(t, node, c);
        if (next < 0) {
            if ((next = trie_new_node(t)) < 0) return false;
            if (node == 0)
                t->root[c] = next;
            else if (!tk_map64_put(&t->edges, (uint64_t)node << 8 | c, (uint64_t)next))
                return false;
        }
        node = next;
    }
    if (t->term[node] < 0) t->term[node] = index;
    return true;
}

/* Whether the character at s (of `len` bytes) is a word character for
 * single_word tokens: Unicode \w as the Rust regex crate defines it
 * (Alphabetic, marks, decimal digits, connector punctuation, joiners). */
static bool is_word_char(petrel_tokenizer_t *tok, const char *s, size_t len) {
    if (!tok->word.re) return false;
    return pcre2_match(tok->word.re, (PCRE2_SPTR)s, len, 0, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK,
                       tok->sc.rx.md, tok->sc.rx.mc) >= 0;
}

/* Start of the character that ends at `end` (end > 0). */
static size_t char_before(const char *s, size_t end) {
    size_t k = end - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80) k--;
    return k;
}

static bool parts_push(tk_parts *ps, size_t start, size_t end, int32_t id) {
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 64;
        tk_part *p = pt_realloc(ps->p, cap * sizeof *p);
        if (!p) return false;
        ps->p = p;
        ps->cap = cap;
    }
    ps->p[ps->n++] = (tk_part){start, end, id};
    return true;
}

/* Cut the added tokens of trie `t` out of s[0..n) into `out`: the matches
 * are leftmost-longest, then AddedVocabulary::find_matches' rules apply
 * (single_word drops a match inside a word; lstrip/rstrip widen it over
 * neighbouring whitespace). */
static petrel_status split_added(petrel_tokenizer_t *tok, const tk_trie *t, const char *s, size_t n,
                                 tk_parts *out, pt_err *err) {
    out->n = 0;
    size_t start_offset = 0;
    for (size_t i = 0; i < n && t->n_nodes > 1;) {
        int32_t node = t->root[(uint8_t)s[i]];
        if (node < 0) {
            i++;
            continue;
        }
        int32_t best = t->term[node];
        size_t best_end = i + 1;
        for (size_t j = i + 1; j < n; j++) {
            node = trie_child(t, node, (uint8_t)s[j]);
            if (node < 0) break;
            if (t->term[node] >= 0) best = t->term[node], best_end = j + 1;
        }
        if (best < 0) {
            i++;
            continue;
        }
        const tk_added *a = &tok->added[best];
        size_t start = i, stop = best_end, adv;
        i = best_end; /* the scan goes on after the raw match */
        if (a->single_word) {
            size_t before = start ? char_before(s, start) : 0;
            bool start_space = start == 0 || !is_word_char(tok, s + before, start - before);
            bool stop_space = stop == n || !is_word_char(tok, s + stop, tk_utf8_len((unsigned char)s[stop]));
            if (!start_space || !stop_space) continue;
        }
        if (a->lstrip) {
            size_t k = start;
            while (k > 0) {
                size_t c = char_before(s, k);
                if (!tk_is_whitespace(tk_utf8_decode(s + c, &adv))) break;
                k = c;
            }
            start = k > start_offset ? k : start_offset;
        }
        if (a->rstrip) {
            while (stop < n && tk_is_whitespace(tk_utf8_decode(s + stop, &adv))) stop += adv;
        }
        if (start_offset < start && !parts_push(out, start_offset, start, -1)) return OOM(err);
        if (!parts_push(out, start, stop, a->id)) return OOM(err);
        start_offset = stop;
    }
    if (start_offset < n && !parts_push(out, start_offset, n, -1)) return OOM(err);
    return PETREL_OK;
}

static petrel_status load_added(petrel_tokenizer_t *tok, json_t *arr, pt_err *err) {
    if (!trie_init(&tok->trie_raw) || !trie_init(&tok->trie_norm)) return OOM(err);
    if (!arr || json_is_null(arr)) return PETREL_OK;
    if (!json_is_array(arr))
        return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: added_tokens is not an array");
    size_t n = json_array_size(arr);
    tok->added = pt_calloc(n ? n : 1, sizeof *tok->added);
    if (!tok->added) return OOM(err);
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) {
        json_t *id = json_object_get(e, "id"), *content = json_object_get(e, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= MAX_ADDED_ID ||
            !json_is_string(content))
            return pt_fail(err, PETREL_ERR_FORMAT,
                           "tokenizer.json: added token %zu needs an id and a content", i);
        tk_added *a = &tok->added[tok->n_added++];
        a->id = (int32_t)json_integer_value(id);
        a->len = json_string_length(content);
        if (!(a->content = pt_malloc(a->len + 1))) return OOM(err);
        memcpy(a->content, json_string_value(content), a->len + 1);
        a->special = json_is_true(json_object_get(e, "special"));
        json_t *norm = json_object_get(e, "normalized");
        a->normalized = json_is_boolean(norm) ? json_is_true(norm) : !a->special;
        a->single_word = json_is_true(json_object_get(e, "single_word"));
        a->lstrip = json_is_true(json_object_get(e, "lstrip"));
        a->rstrip = json_is_true(json_object_get(e, "rstrip"));
    }
    for (int k = 0; k < tok->n_added; k++) {
        if (tok->added[k].single_word && !tok->word.re)
            PT_TRY(tk_pattern_class(&tok->word, "\\p{Alphabetic}\\p{L}\\p{M}\\p{Nd}\\p{Pc}\\x{200c}\\x{200d}",
                                    "rust_word", "", "word characters", err));
    }
    for (int k = 0; k < tok->n_added; k++) {
        tk_added *a = &tok->added[k];
        if (a->len == 0) continue; /* would match everywhere; Hugging Face never matches it either */
        if (!a->normalized) {
            if (!trie_add(&tok->trie_raw, a->content, a->len, k)) return OOM(err);
            continue;
        }
        /* normalized tokens are matched in normalized text, so their
         * pattern is the normalized content */
        if (!tk_utf8_valid(a->content, a->len))
            return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: added token %d is not valid UTF-8",
                           a->id);
        PT_TRY(tk_normalize(tok->norm, tok->n_norm, &tok->sc, a->content, a->len, NULL, err));
        if (tok->sc.norm.n && !trie_add(&tok->trie_norm, tok->sc.norm.p, tok->sc.norm.n, k)) return OOM(err);
        /* Hugging Face decodes such a token to its normalized form */
        a->norm_len = tok->sc.norm.n;
        if (!(a->norm = pt_malloc(a->norm_len + 1))) return OOM(err);
        memcpy(a->norm, tok->sc.norm.p, a->norm_len);
        a->norm[a->norm_len] = '\0';
    }
    return PETREL_OK;
}

/* ---- post-processor --------------------------------------------------------------- */

static petrel_status add_special_ids(tk_ids *v, json_t *specials, const char *name, pt_err *err) {
    json_t *ids = json_object_get(json_object_get(specials, name), "ids");
    if (!json_is_array(ids))
        return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: template token '%s' is not in special_tokens",
                       name);
    size_t i;
    json_t *x;
    json_array_foreach(ids, i, x) {
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= MAX_ADDED_ID)
            return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: template token '%s' has a bad id", name);
        if (!tk_ids_push(v, (int32_t)json_integer_value(x))) return OOM(err);
    }
    return PETREL_OK;
}

/* Wrap the current prefix/suffix in one more processor (processors of a
 * Sequence apply in order, each around the result of the previous one). */
static petrel_status post_add(petrel_tokenizer_t *tok, json_t *j, int depth, pt_err *err) {
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: post_processor without a type");
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(j, "processors");
        if (!json_is_array(arr) || depth > 16)
            return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: bad Sequence post_processor");
        size_t i;
        json_t *item;
        json_array_foreach(arr, i, item) PT_TRY(post_add(tok, item, depth + 1, err));
        return PETREL_OK;
    }
    if (!strcmp(type, "ByteLevel")) return PETREL_OK; /* only touches offsets */
    tk_ids pre = {0}, suf = {0};
    petrel_status st = PETREL_OK;
    if (!strcmp(type, "TemplateProcessing")) {
        json_t *single = json_object_get(j, "single"), *specials = json_object_get(j, "special_tokens");
        if (!json_is_array(single)) {
            st = pt_fail(err, PETREL_ERR_FORMAT,
                         "tokenizer.json: TemplateProcessing without a single template");
        } else {
            bool after = false;
            size_t i;
            json_t *item;
            json_array_foreach(single, i, item) {
                json_t *sp = json_object_get(item, "SpecialToken");
                if (json_object_get(item, "Sequence")) {
                    after = true;
                } else if (json_is_string(json_object_get(sp, "id"))) {
                    st = add_special_ids(after ? &suf : &pre, specials,
                                         json_string_value(json_object_get(sp, "id")), err);
                } else {
                    st =
                        pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: bad TemplateProcessing item %zu", i);
                }
                if (st != PETREL_OK) break;
            }
        }
    } else if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        json_t *cls = json_array_get(json_object_get(j, "cls"), 1),
               *sep = json_array_get(json_object_get(j, "sep"), 1);
        if (!json_is_integer(cls) || !json_is_integer(sep) || json_integer_value(cls) < 0 ||
            json_integer_value(sep) < 0 || json_integer_value(cls) >= MAX_ADDED_ID ||
            json_integer_value(sep) >= MAX_ADDED_ID)
            st = pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: %s needs cls and sep", type);
        else if (!tk_ids_push(&pre, (int32_t)json_integer_value(cls)) ||
                 !tk_ids_push(&suf, (int32_t)json_integer_value(sep)))
            st = OOM(err);
    } else {
        st = pt_fail(err, PETREL_ERR_UNSUPPORTED, "tokenizer.json: post_processor type '%s' is not supported",
                     type);
    }
    if (st == PETREL_OK) {
        /* new prefix = pre + old prefix; new suffix = old suffix + suf */
        if (!tk_ids_append(&pre, tok->prefix.p, tok->prefix.n) ||
            !tk_ids_append(&tok->suffix, suf.p, suf.n)) {
            st = OOM(err);
        } else {
            pt_free(tok->prefix.p);
            tok->prefix = pre;
            pre.p = NULL;
        }
    }
    pt_free(pre.p);
    pt_free(suf.p);
    return st;
}

/* ---- loading ---------------------------------------------------------------------- */

static int32_t find_special(const petrel_tokenizer_t *tok, const char *const *names) {
    for (int k = 0; names[k]; k++)
        for (int i = 0; i < tok->n_added; i++)
            if (tok->added[i].special && !strcmp(tok->added[i].content, names[k])) return tok->added[i].id;
    return -1;
}

static petrel_status build(petrel_tokenizer_t *tok, json_t *root, pt_err *err) {
    if (!json_is_object(root))
        return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: top level is not an object");
    PT_TRY(tk_rx_init(&tok->sc.rx, err));
    PT_TRY(tk_bpe_load(&tok->bpe, json_object_get(root, "model"), err));
    PT_TRY(tk_norm_parse(&tok->norm, &tok->n_norm, json_object_get(root, "normalizer"), err));
    PT_TRY(tk_pre_parse(&tok->pre, &tok->n_pre, json_object_get(root, "pre_tokenizer"), err));
    json_t *dec = json_object_get(root, "decoder");
    tok->has_decoder = dec && !json_is_null(dec);
    PT_TRY(tk_dec_parse(&tok->dec, &tok->n_dec, dec, err));
    json_t *post = json_object_get(root, "post_processor");
    if (post && !json_is_null(post)) PT_TRY(post_add(tok, post, 0, err));
    PT_TRY(load_added(tok, json_object_get(root, "added_tokens"), err));

    int32_t size = tok->bpe.n_tok;
    for (int i = 0; i < tok->n_added; i++)
        if (tok->added[i].id >= size) size = tok->added[i].id + 1;
    for (size_t i = 0; i < tok->prefix.n; i++)
        if (tok->prefix.p[i] >= size) size = tok->prefix.p[i] + 1;
    for (size_t i = 0; i < tok->suffix.n; i++)
        if (tok->suffix.p[i] >= size) size = tok->suffix.p[i] + 1;
    tok->vocab_size = size;
    tok->added_of_id = pt_malloc((size_t)(size ? size : 1) * sizeof(int32_t));
    if (!tok->added_of_id) return OOM(err);
    for (int32_t i = 0; i < size; i++) tok->added_of_id[i] = -1;
    for (int i = 0; i < tok->n_added; i++)
        if (tok->added_of_id[tok->added[i].id] < 0) tok->added_of_id[tok->added[i].id] = i;

    static const char *const bos_names[] = {"<s>", "<bos>", "<|begin_of_text|>", NULL};
    static const char *const eos_names[] = {"</s>", "<eos>", "<|end_of_text|>", "<|endoftext|>", NULL};
    tok->bos_id = tok->prefix.n ? tok->prefix.p[0] : find_special(tok, bos_names);
    tok->eos_id = find_special(tok, eos_names);
    return PETREL_OK;
}

/* Public API (petrel_tokenizer.h): parse JSON or gzip bytes; the message
 * of a failure goes to petrel_last_error(). */
petrel_status petrel_tokenizer_load_memory(petrel_tokenizer_t **out, const void *data, size_t len) {
    if (!out || (!data && len))
        return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_tokenizer_load_memory: NULL argument");
    *out = NULL;
    const unsigned char *bytes = data;
    unsigned char *inflated = NULL;
    if (len >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) {
        PT_TRY(gunzip(bytes, len, &inflated, &len));
        bytes = inflated;
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)bytes, len, JSON_ALLOW_NUL, &jerr);
    pt_free(inflated);
    if (!root)
        return pt_fail(NULL, PETREL_ERR_FORMAT, "tokenizer.json: line %d, column %d: %s", jerr.line,
                       jerr.column, jerr.text);
    petrel_tokenizer_t *tok = pt_calloc(1, sizeof *tok);
    if (!tok) {
        json_decref(root);
        return pt_fail(NULL, PETREL_ERR_NOMEM, "tokenizer: out of memory");
    }
    petrel_status st = build(tok, root, &tok->err);
    json_decref(root);
    if (st != PETREL_OK) {
        pt_set_last_error(tok->err.msg);
        petrel_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return PETREL_OK;
}

/* Public API: read a file, then petrel_tokenizer_load_memory; the message
 * of a failure is prefixed with the path. */
petrel_status petrel_tokenizer_load(petrel_tokenizer_t **out, const char *path) {
    if (!out || !path) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_tokenizer_load: NULL argument");
    *out = NULL;
    unsigned char *data = NULL;
    size_t len = 0;
    PT_TRY(read_file(path, &data, &len));
    petrel_status st = petrel_tokenizer_load_memory(out, data, len);
    pt_free(data);
    if (st != PETREL_OK) {
        char msg[sizeof((pt_err *)0)->msg];
        snprintf(msg, sizeof msg, "%s: %s", path, petrel_last_error());
        pt_set_last_error(msg);
    }
    return st;
}

/* Public API: release everything the tokenizer owns; NULL is a no-op. */
void petrel_tokenizer_free(petrel_tokenizer_t *tok) {
    if (!tok) return;
    tk_bpe_free(&tok->bpe);
    for (int i = 0; i < tok->n_added; i++) {
        pt_free(tok->added[i].content);
        pt_free(tok->added[i].norm);
    }
    pt_free(tok->added);
    pt_free(tok->added_of_id);
    trie_free(&tok->trie_raw);
    trie_free(&tok->trie_norm);
    tk_pattern_free(&tok->word);
    tk_norm_free(tok->norm, tok->n_norm);
    tk_pre_free(tok->pre, tok->n_pre);
    tk_dec_free(tok->dec, tok->n_dec);
    pt_free(tok->prefix.p);
    pt_free(tok->suffix.p);
    tk_rx_free(&tok->sc.rx);
    pt_free(tok->sc.m.p);
    pt_free(tok->sc.seg);
    tk_buf_free(&tok->sc.norm);
    tk_buf_free(&tok->sc.tmp);
    tk_pieces_free(&tok->sc.words);
    tk_pieces_free(&tok->sc.pieces);
    pt_free(tok->parts_raw.p);
    pt_free(tok->parts_norm.p);
    tk_pieces_free(&tok->toks);
    pt_free(tok);
}

/* Public API: the last encode/decode failure message on this tokenizer. */
const char *petrel_tokenizer_error(const petrel_tokenizer_t *tok) { return tok ? tok->err.msg : ""; }

/* ---- encode / decode -------------------------------------------------------------- */

/* Normalize, cut normalized added tokens, pre-tokenize and BPE one run of
 * raw text (between raw added tokens); `first` says it starts the input. */
static petrel_status encode_text(petrel_tokenizer_t *tok, const char *s, size_t n, bool first, tk_ids *out) {
    pt_err *err = &tok->err;
    const char *t = s;
    size_t tn = n;
    if (tok->n_norm) {
        PT_TRY(tk_normalize(tok->norm, tok->n_norm, &tok->sc, s, n, &first, err));
        t = tok->sc.norm.p;
        tn = tok->sc.norm.n;
    }
    tk_parts *parts = &tok->parts_norm;
    parts->n = 0;
    if (tok->trie_norm.n_nodes > 1)
        PT_TRY(split_added(tok, &tok->trie_norm, t, tn, parts, err));
    else if (tn && !parts_push(parts, 0, tn, -1))
        return OOM(err);
    for (size_t i = 0; i < parts->n; i++) {
        tk_part p = parts->p[i];
        if (p.id >= 0) {
            if (!tk_ids_push(out, p.id)) return OOM(err);
            continue;
        }
        PT_TRY(tk_pretokenize(tok->pre, tok->n_pre, &tok->sc, t + p.start, p.end - p.start,
                              first && p.start == 0, err));
        const tk_pieces *w = &tok->sc.words;
        for (size_t k = 0; k < w->n; k++)
            PT_TRY(tk_bpe_encode(&tok->bpe, w->text.p + w->p[k].off, w->p[k].len, out, err));
    }
    return PETREL_OK;
}

/* Public API: the encode pipeline of tokenizer.h; the id array is
 * malloc'ed and owned by the caller. */
petrel_status petrel_tokenizer_encode(petrel_tokenizer_t *tok, const char *text, size_t len, bool add_special,
                                      int32_t **ids, size_t *n_ids) {
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (!tok || !ids || !n_ids || (!text && len))
        return pt_fail(tok ? &tok->err : NULL, PETREL_ERR_INVALID_ARG,
                       "petrel_tokenizer_encode: NULL argument");
    if (!tk_utf8_valid(text, len))
        return pt_fail(&tok->err, PETREL_ERR_INVALID_ARG, "tokenizer: the text is not valid UTF-8");
    tk_ids out = {0};
    petrel_status st = PETREL_OK;
    if (add_special && !tk_ids_append(&out, tok->prefix.p, tok->prefix.n)) st = OOM(&tok->err);
    tk_parts *parts = &tok->parts_raw;
    if (st == PETREL_OK) st = split_added(tok, &tok->trie_raw, text, len, parts, &tok->err);
    for (size_t i = 0; st == PETREL_OK && i < parts->n; i++) {
        tk_part p = parts->p[i];
        if (p.id >= 0)
            st = tk_ids_push(&out, p.id) ? PETREL_OK : OOM(&tok->err);
        else
            st = encode_text(tok, text + p.start, p.end - p.start, p.start == 0, &out);
    }
    if (st == PETREL_OK && add_special && !tk_ids_append(&out, tok->suffix.p, tok->suffix.n))
        st = OOM(&tok->err);
    if (st != PETREL_OK || out.n == 0) {
        pt_free(out.p);
        return st;
    }
    *ids = out.p;
    *n_ids = out.n;
    return PETREL_OK;
}

/* The string of an id (added token first, as Hugging Face's
 * id_to_token), or NULL. */
static const char *token_string(const petrel_tokenizer_t *tok, int32_t id, size_t *len) {
    if (id < 0 || id >= tok->vocab_size) return NULL;
    int32_t a = tok->added_of_id[id];
    if (a >= 0) {
        const tk_added *t = &tok->added[a];
        *len = t->norm ? t->norm_len : t->len;
        return t->norm ? t->norm : t->content;
    }
    if (id >= tok->bpe.n_tok || tok->bpe.tok[id].off == UINT32_MAX) return NULL;
    *len = tok->bpe.tok[id].len;
    return tok->bpe.arena.p + tok->bpe.tok[id].off;
}

/* Public API: ids to token strings (unknown ids skipped), then the
 * decoder chain; the text is malloc'ed and owned by the caller. */
petrel_status petrel_tokenizer_decode(petrel_tokenizer_t *tok, const int32_t *ids, size_t n_ids,
                                      bool skip_special, char **text, size_t *len) {
    if (text) *text = NULL;
    if (len) *len = 0;
    if (!tok || !text || (!ids && n_ids))
        return pt_fail(tok ? &tok->err : NULL, PETREL_ERR_INVALID_ARG,
                       "petrel_tokenizer_decode: NULL argument");
    tk_pieces_clear(&tok->toks);
    for (size_t i = 0; i < n_ids; i++) {
        size_t n;
        const char *s = token_string(tok, ids[i], &n);
        if (!s || (skip_special && petrel_tokenizer_is_special(tok, ids[i]))) continue;
        if (!tk_pieces_add(&tok->toks, s, n, false)) return OOM(&tok->err);
    }
    tk_buf out = {0};
    petrel_status st =
        tk_decode_chain(tok->dec, tok->n_dec, tok->has_decoder, &tok->sc, &tok->toks, &out, &tok->err);
    if (st == PETREL_OK && !tk_buf_reserve(&out, 0)) st = OOM(&tok->err);
    if (st != PETREL_OK) {
        tk_buf_free(&out);
        return st;
    }
    out.p[out.n] = '\0';
    *text = out.p;
    if (len) *len = out.n;
    return PETREL_OK;
}

/* Public API: one token's bytes for streaming output. */
petrel_status petrel_tokenizer_token_to_piece(const petrel_tokenizer_t *tok, int32_t id, char *buf,
                                              size_t cap, size_t *len) {
    if (len) *len = 0;
    size_t n;
    const char *s = tok ? token_string(tok, id, &n) : NULL;
    if (!s) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "tokenizer: unknown token id %d", (int)id);
    tk_buf piece = {0};
    petrel_status st = tk_decode_piece(tok->dec, tok->n_dec, s, n, &piece);
    if (st != PETREL_OK) {
        tk_buf_free(&piece);
        return pt_fail(NULL, st, "tokenizer: out of memory");
    }
    if (len) *len = piece.n;
    if (piece.n > cap)
        st = pt_fail(NULL, PETREL_ERR_INVALID_ARG, "tokenizer: piece of token %d needs %zu bytes", (int)id,
                     piece.n);
    else if (piece.n)
        memcpy(buf, piece.p, piece.n);
    tk_buf_free(&piece);
    return st;
}

/* Public API: the token string of an id, borrowed from the tokenizer. */
const char *petrel_tokenizer_id_to_token(const petrel_tokenizer_t *tok, int32_t id) {
    size_t n;
    return tok ? token_string(tok, id, &n) : NULL;
}

/* Public API: added tokens by content first, then the vocabulary; -1. */
int32_t petrel_tokenizer_token_id(const petrel_tokenizer_t *tok, const char *token) {
    if (!tok || !token) return -1;
    size_t n = strlen(token);
    for (int i = 0; i < tok->n_added; i++)
        if (tok->added[i].len == n && !memcmp(tok->added[i].content, token, n)) return tok->added[i].id;
    return tk_bpe_lookup(&tok->bpe, token, n);
}

/* Public API: queries of the loaded tokenizer (NULL-safe). */
int32_t petrel_tokenizer_vocab_size(const petrel_tokenizer_t *tok) { return tok ? tok->vocab_size : 0; }

/* Public API: whether an id is an added token flagged special. */
bool petrel_tokenizer_is_special(const petrel_tokenizer_t *tok, int32_t id) {
    if (!tok || id < 0 || id >= tok->vocab_size) return false;
    int32_t a = tok->added_of_id[id];
    return a >= 0 && tok->added[a].special;
}

/* Public API: the BOS and end-of-text ids found at load, or -1. */
int32_t petrel_tokenizer_bos_id(const petrel_tokenizer_t *tok) { return tok ? tok->bos_id : -1; }
int32_t petrel_tokenizer_eos_id(const petrel_tokenizer_t *tok) { return tok ? tok->eos_id : -1; }
