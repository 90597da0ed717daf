/*
** bpe.c -- the BPE model of tokenizer.json: vocabulary and merge tables,
** and the merge loop that turns one pre-tokenized word into ids.
**
** The loop is Hugging Face's Word::merge_all: every adjacent pair with a
** merge rule goes into a min-heap keyed by (rank, position); the lowest is
** applied, and the pairs it forms with its neighbours are pushed.  Entries
** made stale by an earlier merge are recognised and skipped, so a word of n
** symbols costs O(n log n) -- a whole 1 MB paragraph (Gemma splits nothing
** off) is fine.  Words up to CACHE_MAX_WORD bytes are cached.
*/
#include <stdio.h>
#include <string.h>

#include "tokenizer.h"

#define OOM(err) pt_fail((err), PETREL_ERR_NOMEM, "tokenizer: out of memory")

#define CACHE_MAX_WORD  128        /* longer words are not cached */
#define CACHE_SLOTS     (1u << 16) /* flushed when half full */
#define CACHE_MAX_BYTES (8u << 20) /* ... or when the key arena is this big */
#define MAX_VOCAB       (1 << 26)

typedef struct sym {
    int32_t id, prev, next;
    uint32_t len; /* bytes of input it covers; 0 = merged away */
} sym;

typedef struct hent {
    int32_t rank, pos, new_id;
} hent;

/* ---- vocabulary ---------------------------------------------------------------- */

static uint32_t hash32(const char *s, size_t n) { return (uint32_t)(tk_hash(s, n) >> 32); }

/* The id of vocabulary string s[0..n), or -1. */
int32_t tk_bpe_lookup(const tk_bpe *b, const char *s, size_t n) {
    if (!b->vmap) return -1;
    uint32_t h = hash32(s, n);
    for (size_t i = h & b->vmask;; i = (i + 1) & b->vmask) {
        const tk_vslot *e = &b->vmap[i];
        if (e->id < 0) return -1;
        if (e->hash == h && e->len == n && !memcmp(b->arena.p + e->off, s, n)) return e->id;
    }
}

/* Insert (or re-point) a string already stored in the arena. */
static void vmap_insert(tk_bpe *b, uint32_t off, uint32_t len, int32_t id) {
    const char *s = b->arena.p + off;
    uint32_t h = hash32(s, len);
    for (size_t i = h & b->vmask;; i = (i + 1) & b->vmask) {
        tk_vslot *e = &b->vmap[i];
        if (e->id < 0) {
            *e = (tk_vslot){h, off, len, id};
            return;
        }
        if (e->hash == h && e->len == len && !memcmp(b->arena.p + e->off, s, len)) {
            e->id = id; /* a repeated key: the later one wins, as in a JSON map */
            return;
        }
    }
}

static petrel_status load_vocab(tk_bpe *b, json_t *vocab, pt_err *err) {
    if (!json_is_object(vocab))
        return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: model.vocab is not an object");
    const char *key;
    size_t klen;
    json_t *v;
    json_int_t max_id = -1;
    size_t count = 0, bytes = 0;
    json_object_keylen_foreach(vocab, key, klen, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= MAX_VOCAB)
            return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: vocab entry '%.40s' has a bad id", key);
        if (json_integer_value(v) > max_id) max_id = json_integer_value(v);
        count++;
        bytes += klen;
    }
    if (bytes + count >= UINT32_MAX / 2)
        return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: vocabulary too large");
    b->n_tok = (int32_t)(max_id + 1);
    b->tok = pt_malloc((size_t)(b->n_tok ? b->n_tok : 1) * sizeof *b->tok);
    size_t cap = 16;
    while (cap < count * 2) cap *= 2;
    b->vmap = pt_malloc(cap * sizeof *b->vmap);
    /* each string is stored NUL-terminated so id_to_token can hand it out */
    if (!b->tok || !b->vmap || !tk_buf_reserve(&b->arena, bytes + count)) return OOM(err);
    for (int32_t i = 0; i < b->n_tok; i++) b->tok[i] = (tk_str){UINT32_MAX, 0};
    for (size_t i = 0; i < cap; i++) b->vmap[i].id = -1;
    b->vmask = cap - 1;
    json_object_keylen_foreach(vocab, key, klen, v) {
        uint32_t off = (uint32_t)b->arena.n;
        tk_buf_put(&b->arena, key, klen); /* reserved above: cannot fail */
        tk_buf_putc(&b->arena, '\0');
        int32_t id = (int32_t)json_integer_value(v);
        b->tok[id] = (tk_str){off, (uint32_t)klen};
        vmap_insert(b, off, (uint32_t)klen, id);
    }
    return PETREL_OK;
}

/* ---- merges ----------------------------------------------------------------- */

static petrel_status merge_part(const tk_bpe *b, const char *s, size_t n, size_t rank, int32_t *id,
                                pt_err *err) {
    *id = tk_bpe_lookup(b, s, n);
    if (*id < 0)
        return pt_fail(err, PETREL_ERR_FORMAT,
                       "tokenizer.json: merge %zu uses '%.*s', which is not in the vocabulary", rank,
                       (int)(n > 40 ? 40 : n), s);
    return PETREL_OK;
}

static petrel_status load_merges(tk_bpe *b, json_t *merges, pt_err *err) {
    if (!merges || json_is_null(merges)) return PETREL_OK;
    if (!json_is_array(merges))
        return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: model.merges is not an array");
    if (!tk_map64_init(&b->merges, json_array_size(merges))) return OOM(err);
    tk_buf joined = {0};
    petrel_status st = PETREL_OK;
    size_t rank;
    json_t *m;
    json_array_foreach(merges, rank, m) {
        const char *l, *r;
        size_t ll, rl;
        if (json_is_string(m)) { /* "left right" */
            l = json_string_value(m);
            const char *sp = memchr(l, ' ', json_string_length(m));
            if (!sp || memchr(sp + 1, ' ', json_string_length(m) - (size_t)(sp + 1 - l))) {
                st = pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: merge %zu is not two tokens", rank);
                break;
            }
            ll = (size_t)(sp - l);
            r = sp + 1;
            rl = json_string_length(m) - ll - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            l = json_string_value(json_array_get(m, 0));
            ll = json_string_length(json_array_get(m, 0));
            r = json_string_value(json_array_get(m, 1));
            rl = json_string_length(json_array_get(m, 1));
        } else {
            st = pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: merge %zu is not two tokens", rank);
            break;
        }
        int32_t a, c, merged;
        if ((st = merge_part(b, l, ll, rank, &a, err)) != PETREL_OK) break;
        if ((st = merge_part(b, r, rl, rank, &c, err)) != PETREL_OK) break;
        /* the merged token drops the right part's continuing-subword prefix */
        if (b->prefix_len && rl >= b->prefix_len && !memcmp(r, b->prefix, b->prefix_len)) {
            r += b->prefix_len;
            rl -= b->prefix_len;
        }
        joined.n = 0;
        if (!tk_buf_put(&joined, l, ll) || !tk_buf_put(&joined, r, rl)) {
            st = OOM(err);
            break;
        }
        if ((st = merge_part(b, joined.p, joined.n, rank, &merged, err)) != PETREL_OK) break;
        if (!tk_map64_put(&b->merges, (uint64_t)(uint32_t)a << 32 | (uint32_t)c,
                          (uint64_t)rank << 32 | (uint32_t)merged)) {
            st = OOM(err);
            break;
        }
    }
    tk_buf_free(&joined);
    return st;
}

static petrel_status opt_string(json_t *model, const char *key, char **out, size_t *len, pt_err *err) {
    json_t *v = json_object_get(model, key);
    if (!json_is_string(v)) return PETREL_OK;
    *len = json_string_length(v);
    if (!(*out = pt_malloc(*len + 1))) return OOM(err);
    memcpy(*out, json_string_value(v), *len + 1);
    return PETREL_OK;
}

/* Build the BPE model from tokenizer.json's "model" object; on failure the
 * caller still frees b with tk_bpe_free. */
petrel_status tk_bpe_load(tk_bpe *b, json_t *model, pt_err *err) {
    memset(b, 0, sizeof *b);
    b->unk_id = -1;
    for (int i = 0; i < 256; i++) b->byte_id[i] = -1;
    if (!json_is_object(model)) return pt_fail(err, PETREL_ERR_FORMAT, "tokenizer.json: no model object");
    const char *type = json_string_value(json_object_get(model, "type"));
    if (type ? strcmp(type, "BPE") != 0 : !json_object_get(model, "merges"))
        return pt_fail(err, PETREL_ERR_UNSUPPORTED,
                       "tokenizer.json: model type '%s' is not supported (only BPE)",
                       type ? type : "(untyped)");
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0.0)
        return pt_fail(err, PETREL_ERR_UNSUPPORTED, "tokenizer.json: BPE dropout is not supported");
    b->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    b->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    b->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    size_t unk_len = 0;
    PT_TRY(opt_string(model, "continuing_subword_prefix", &b->prefix, &b->prefix_len, err));
    PT_TRY(opt_string(model, "end_of_word_suffix", &b->suffix, &b->suffix_len, err));
    PT_TRY(opt_string(model, "unk_token", &b->unk_token, &unk_len, err));
    PT_TRY(load_vocab(b, json_object_get(model, "vocab"), err));
    if (b->unk_token) b->unk_id = tk_bpe_lookup(b, b->unk_token, unk_len);
    for (int i = 0; i < 256; i++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", i);
        b->byte_id[i] = tk_bpe_lookup(b, name, 6);
    }
    PT_TRY(load_merges(b, json_object_get(model, "merges"), err));
    b->cache = pt_calloc(CACHE_SLOTS, sizeof *b->cache);
    if (!b->cache) return OOM(err);
    b->cache_mask = CACHE_SLOTS - 1;
    return PETREL_OK;
}

/* Release the model, its cache and scratch; safe on a zeroed model. */
void tk_bpe_free(tk_bpe *b) {
    tk_buf_free(&b->arena);
    pt_free(b->tok);
    pt_free(b->vmap);
    tk_map64_free(&b->merges);
    pt_free(b->unk_token);
    pt_free(b->prefix);
    pt_free(b->suffix);
    pt_free(b->cache);
    tk_buf_free(&b->cache_keys);
    pt_free(b->cache_vals.p);
    pt_free(b->sym);
    pt_free(b->heap);
    memset(b, 0, sizeof *b);
}

/* ---- the merge loop ------------------------------------------------------------ */

static inline bool hent_less(hent a, hent b) {
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static void heap_push(hent *h, size_t *n, hent e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hent_less(e, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static hent heap_pop(hent *h, size_t *n) {
    hent top = h[0], last = h[--*n];
    size_t i = 0, cnt = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= cnt) break;
        if (c + 1 < cnt && hent_less(h[c + 1], h[c])) c++;
        if (!hent_less(h[c], last)) break;
        h[i] = h[c];
        i = c;
    }
    if (cnt) h[i] = last;
    return top;
}

/* The merge rule for a pair: rank and merged id, false when there is none. */
static inline bool find_merge(const tk_bpe *b, int32_t l, int32_t r, int32_t *rank, int32_t *new_id) {
    uint64_t v = tk_map64_get(&b->merges, (uint64_t)(uint32_t)l << 32 | (uint32_t)r, UINT64_MAX);
    if (v == UINT64_MAX) return false;
    *rank = (int32_t)(v >> 32);
    *new_id = (int32_t)(uint32_t)v;
    return true;
}

static bool reserve(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = pt_realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

/* Split a word into its initial symbols the way BPE::merge_word does:
 * one per character, else the character's <0xNN> byte tokens (byte
 * fallback), else the unknown token (fused across neighbours when asked). */
static petrel_status initial_symbols(tk_bpe *b, const char *s, size_t n, size_t *count, pt_err *err) {
    sym *y = b->sym;
    size_t ns = 0;
    int32_t unk = -1;
    uint32_t unk_len = 0;
    char tmp[256];
#define ADD(ID, LEN) (y[ns] = (sym){(ID), (int32_t)ns - 1, (int32_t)ns + 1, (LEN)}, ns++)
    for (size_t i = 0; i < n;) {
        size_t adv = tk_utf8_len((unsigned char)s[i]);
        if (adv > n - i) adv = n - i;
        const char *piece = s + i;
        size_t plen = adv;
        bool pre = b->prefix_len && i > 0, suf = b->suffix_len && i + adv == n;
        if (pre || suf) {
            size_t k = 0;
            if (b->prefix_len + adv + b->suffix_len > sizeof tmp)
                return pt_fail(err, PETREL_ERR_UNSUPPORTED, "tokenizer: subword prefix/suffix too long");
            if (pre) memcpy(tmp, b->prefix, b->prefix_len), k = b->prefix_len;
            memcpy(tmp + k, piece, adv), k += adv;
            if (suf) memcpy(tmp + k, b->suffix, b->suffix_len), k += b->suffix_len;
            piece = tmp;
            plen = k;
        }
        int32_t id = tk_bpe_lookup(b, piece, plen);
        if (id >= 0) {
            if (unk >= 0) ADD(unk, unk_len), unk = -1;
            ADD(id, (uint32_t)adv);
            i += adv;
            continue;
        }
        if (b->byte_fallback) {
            bool all = true;
            for (size_t k = 0; k < plen; k++) all = all && b->byte_id[(uint8_t)piece[k]] >= 0;
            if (all) {
                /* (like Hugging Face, a pending unknown token is not flushed first) */
                if (ns + plen + 1 > b->sym_cap && !reserve(&b->sym, &b->sym_cap, ns + plen + 2, sizeof(sym)))
                    return OOM(err);
                y = b->sym;
                for (size_t k = 0; k < plen; k++) ADD(b->byte_id[(uint8_t)piece[k]], 1);
                i += adv;
                continue;
            }
        }
        if (b->unk_token) {
            if (b->unk_id < 0)
                return pt_fail(err, PETREL_ERR_FORMAT,
                               "tokenizer.json: unk_token '%s' is not in the vocabulary", b->unk_token);
            if (unk >= 0 && b->fuse_unk) {
                unk_len += (uint32_t)adv;
            } else {
                if (unk >= 0) ADD(unk, unk_len);
                unk = b->unk_id;
                unk_len = (uint32_t)adv;
            }
        }
        i += adv; /* no unknown token: the character is dropped */
    }
    if (unk >= 0) ADD(unk, unk_len);
#undef ADD
    if (ns) y[ns - 1].next = -1;
    *count = ns;
    return PETREL_OK;
}

static petrel_status merge_word(tk_bpe *b, const char *s, size_t n, tk_ids *out, pt_err *err) {
    /* at most one symbol per byte, plus slack for the byte-fallback path */
    if (!reserve(&b->sym, &b->sym_cap, n + 2, sizeof(sym))) return OOM(err);
    size_t ns = 0;
    PT_TRY(initial_symbols(b, s, n, &ns, err));
    if (!reserve(&b->heap, &b->heap_cap, ns + 1, sizeof(hent))) return OOM(err);
    sym *y = b->sym;
    hent *h = b->heap;
    size_t nh = 0;
    int32_t rank, nid;
    for (size_t i = 0; i + 1 < ns; i++)
        if (find_merge(b, y[i].id, y[i + 1].id, &rank, &nid))
            heap_push(h, &nh, (hent){rank, (int32_t)i, nid});
    while (nh) {
        hent top = heap_pop(h, &nh);
        sym *cur = &y[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        sym *right = &y[cur->next];
        /* stale entry: the pair at this position no longer makes this token */
        if (!find_merge(b, cur->id, right->id, &rank, &nid) || nid != top.new_id) continue;
        cur->id = top.new_id;
        cur->len += right->len;
        cur->next = right->next;
        right->len = 0;
        if (cur->next >= 0) y[cur->next].prev = top.pos;
        /* each merge removes a symbol and pushes at most two pairs, so the
         * heap never outgrows the initial pairs plus twice the symbols */
        if (nh + 2 > b->heap_cap) {
            if (!reserve(&b->heap, &b->heap_cap, nh + 2, sizeof(hent))) return OOM(err);
            h = b->heap;
        }
        if (cur->prev >= 0 && find_merge(b, y[cur->prev].id, cur->id, &rank, &nid))
            heap_push(h, &nh, (hent){rank, cur->prev, nid});
        if (cur->next >= 0 && find_merge(b, cur->id, y[cur->next].id, &rank, &nid))
            heap_push(h, &nh, (hent){rank, top.pos, nid});
    }
    for (size_t i = 0; i < ns; i++)
        if (y[i].len && !tk_ids_push(out, y[i].id)) return OOM(err);
    return PETREL_OK;
}

/* ---- the word cache ------------------------------------------------------------ */

static void cache_flush(tk_bpe *b) {
    memset(b->cache, 0, (b->cache_mask + 1) * sizeof *b->cache);
    b->cache_n = 0;
    b->cache_keys.n = 0;
    b->cache_vals.n = 0;
}

static tk_cache_slot *cache_find(tk_bpe *b, uint64_t h, const char *s, size_t n) {
    for (size_t i = h & b->cache_mask;; i = (i + 1) & b->cache_mask) {
        tk_cache_slot *e = &b->cache[i];
        if (e->hash == 0) return e;
        if (e->hash == h && e->key_len == n && !memcmp(b->cache_keys.p + e->key_off, s, n)) return e;
    }
}

static void cache_put(tk_bpe *b, uint64_t h, const char *s, size_t n, const int32_t *ids, size_t k) {
    if (b->cache_n + 1 > (b->cache_mask + 1) / 2 || b->cache_keys.n + n > CACHE_MAX_BYTES) cache_flush(b);
    tk_cache_slot *e = cache_find(b, h, s, n);
    size_t koff = b->cache_keys.n, voff = b->cache_vals.n;
    /* a failed allocation only means the word is not cached */
    if (!tk_buf_put(&b->cache_keys, s, n)) return;
    if (!tk_ids_append(&b->cache_vals, ids, k)) {
        b->cache_keys.n = koff;
        return;
    }
    *e = (tk_cache_slot){h, (uint32_t)koff, (uint32_t)n, (uint32_t)voff, (uint32_t)k};
    b->cache_n++;
}

/* Append the ids of one pre-tokenized word, using and filling the word
 * cache.  PETREL_ERR_NOMEM; PETREL_ERR_FORMAT when an unknown character
 * needs an unk_token the vocabulary lacks. */
petrel_status tk_bpe_encode(tk_bpe *b, const char *s, size_t n, tk_ids *out, pt_err *err) {
    if (n == 0) return PETREL_OK;
    if (b->ignore_merges) {
        int32_t id = tk_bpe_lookup(b, s, n);
        if (id >= 0) return tk_ids_push(out, id) ? PETREL_OK : OOM(err);
    }
    bool cacheable = n <= CACHE_MAX_WORD && b->cache;
    uint64_t h = 0;
    if (cacheable) {
        h = tk_hash(s, n) | 1; /* 0 marks an empty slot */
        tk_cache_slot *e = cache_find(b, h, s, n);
        if (e->hash) {
            /* a word may encode to no ids at all (every byte unknown and
             * dropped): then there is nothing to append, and no array */
            if (e->val_n == 0) return PETREL_OK;
            return tk_ids_append(out, b->cache_vals.p + e->val_off, e->val_n) ? PETREL_OK : OOM(err);
        }
    }
    size_t start = out->n;
    PT_TRY(merge_word(b, s, n, out, err));
    if (cacheable) cache_put(b, h, s, n, out->n > start ? out->p + start : NULL, out->n - start);
    return PETREL_OK;
}
