/*
** import.c -- models/model.json (+ weight/constant configs) -> pt_graph.
**
** The JSON is the dataclass tree of torch/_export/serde/schema.py: unions
** are one-key objects, optional fields are explicit nulls, ints are int64.
** Every field read here is type-checked; a failure names the file and the
** JSON path ("model.json: graph.nodes[12].inputs[1]: ...").
*/
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pt2.h"

/* ---- name -> value id table (open addressing) --------------------------- */

typedef struct name_map {
    uint32_t cap;
    int32_t *slots; /* vid or -1 */
    const pt_graph *g;
} name_map;

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static int32_t map_get(const name_map *m, const char *name) {
    if (m->cap == 0) return -1;
    for (uint32_t i = hash_str(name) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        int32_t v = m->slots[i];
        if (v < 0) return -1;
        if (!strcmp(m->g->values[v].name, name)) return v;
    }
}

static void map_insert(name_map *m, int32_t vid) {
    uint32_t i = hash_str(m->g->values[vid].name) & (m->cap - 1);
    while (m->slots[i] >= 0) i = (i + 1) & (m->cap - 1);
    m->slots[i] = vid;
}

/* Insert, doubling the table when it gets half full.  False on OOM. */
static bool map_put(name_map *m, int32_t vid, int32_t nvalues) {
    if ((uint32_t)nvalues * 2 >= m->cap) {
        uint32_t cap = m->cap ? m->cap * 2 : 64;
        while ((uint32_t)nvalues * 2 >= cap) cap *= 2;
        int32_t *ns = pt_malloc(cap * sizeof *ns);
        if (!ns) return false;
        memset(ns, 0xff, cap * sizeof *ns);
        pt_free(m->slots);
        m->slots = ns;
        m->cap = cap;
        for (int32_t v = 0; v < nvalues; v++)
            if (v != vid) map_insert(m, v);
    }
    map_insert(m, vid);
    return true;
}

/* ---- import context ----------------------------------------------------- */

typedef struct ctx {
    pt_graph *g;
    const pz_archive *z;
    pt_err *err;
    char root[256];
    name_map names;
    json_t *wcfg, *ccfg; /* "config" objects of the payload configs (may be NULL) */
    int32_t *defined_at; /* per value: node index that defines it; -1 = graph input; INT32_MAX = undefined */
    int32_t cap_nodes;
    /* While inlining a higher-order op's subgraph: names are looked up as
     * "<prefix>/<name>", except the subgraph's inputs, which alias the
     * operands of the outer node. */
    const char *prefix;
    int32_t nalias;
    const char **alias_name;
    const int32_t *alias_vid;
} ctx;

#define FAIL(c, st, ...) pt_fail((c)->err, (st), __VA_ARGS__)

const char *pt2_extra_name(const pz_entry *e) {
    const char *slash = strchr(e->name, '/');
    if (!slash || strncmp(slash + 1, "extra/", 6) != 0 || !slash[7]) return NULL;
    return slash + 7;
}

int pt2_dtype_from_schema(int64_t v) {
    switch (v) {
    case 1: return PETREL_DTYPE_U8;
    case 2: return PETREL_DTYPE_I8;
    case 3: return PETREL_DTYPE_I16;
    case 4: return PETREL_DTYPE_I32;
    case 5: return PETREL_DTYPE_I64;
    case 6: return PETREL_DTYPE_F16;
    case 7: return PETREL_DTYPE_F32;
    case 8: return PETREL_DTYPE_F64;
    case 12: return PETREL_DTYPE_BOOL;
    case 13: return PETREL_DTYPE_BF16;
    default: return -1;
    }
}

static const char *dtype_schema_name(int64_t v) {
    switch (v) {
    case 9: return "complex32";
    case 10: return "complex64";
    case 11: return "complex128";
    case 28: return "uint16";
    case 29: return "float8_e4m3fn";
    case 30: return "float8_e5m2";
    case 31: return "float8_e4m3fnuz";
    case 32: return "float8_e5m2fnuz";
    default: return "unknown";
    }
}

/* The single key of a union object, or NULL. */
static const char *union_tag(json_t *u, json_t **payload) {
    *payload = NULL;
    if (!json_is_object(u) || json_object_size(u) != 1) return NULL;
    void *it = json_object_iter(u);
    *payload = json_object_iter_value(it);
    return json_object_iter_key(it);
}

static json_t *entry_json(ctx *c, const char *rel, bool required, petrel_status *st) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", c->root, rel);
    const pz_entry *e = pz_find(c->z, path);
    *st = PETREL_OK;
    if (!e) {
        if (required) *st = FAIL(c, PETREL_ERR_FORMAT, "not a .pt2 archive: missing '%s'", path);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb((const char *)e->data, (size_t)e->size, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        *st = FAIL(c, PETREL_ERR_FORMAT, "%s: invalid JSON at line %d: %s", rel, je.line, je.text);
        return NULL;
    }
    return j;
}

/* ---- values ------------------------------------------------------------- */

static petrel_status add_value(ctx *c, const char *name, pt_vkind kind, int32_t *vid) {
    pt_graph *g = c->g;
    char scoped[512];
    if (c->prefix) {
        snprintf(scoped, sizeof scoped, "%s/%s", c->prefix, name);
        name = scoped;
    }
    if (map_get(&c->names, name) >= 0)
        return FAIL(c, PETREL_ERR_FORMAT, "model.json: value '%s' is declared twice", name);
    if (g->nvalues == g->cap_values) {
        if (g->cap_values > (1 << 24)) return FAIL(c, PETREL_ERR_UNSUPPORTED, "model.json: too many values");
        int32_t cap = g->cap_values ? g->cap_values * 2 : 256;
        pt_value *nv = pt_realloc(g->values, (size_t)cap * sizeof *nv);
        if (!nv) return FAIL(c, PETREL_ERR_NOMEM, "out of memory");
        g->values = nv;
        int32_t *nd = pt_realloc(c->defined_at, (size_t)cap * sizeof *nd);
        if (!nd) return FAIL(c, PETREL_ERR_NOMEM, "out of memory");
        c->defined_at = nd;
        g->cap_values = cap;
    }
    pt_value *v = &g->values[g->nvalues];
    memset(v, 0, sizeof *v);
    v->name = pt_strdup(name);
    if (!v->name) return FAIL(c, PETREL_ERR_NOMEM, "out of memory");
    v->kind = kind;
    v->src = PT_SRC_NODE;
    c->defined_at[g->nvalues] = INT32_MAX;
    *vid = g->nvalues++;
    if (!map_put(&c->names, *vid, g->nvalues)) return FAIL(c, PETREL_ERR_NOMEM, "out of memory");
    return PETREL_OK;
}

/* Parse a SymInt ({"as_int": n} | {"as_expr": {...}}) into a dim. */
static petrel_status parse_symint(ctx *c, json_t *j, pt_dim *d, const char *where) {
    json_t *p;
    const char *tag = union_tag(j, &p);
    if (tag && !strcmp(tag, "as_int") && json_is_integer(p)) {
        d->lit = json_integer_value(p);
        d->expr = NULL;
        return PETREL_OK;
    }
    if (tag && !strcmp(tag, "as_expr") && json_is_object(p)) {
        json_t *s = json_object_get(p, "expr_str");
        if (!json_is_string(s)) return FAIL(c, PETREL_ERR_FORMAT, "%s: as_expr without expr_str", where);
        d->expr = pt_expr_parse(c->g, json_string_value(s), c->err);
        if (!d->expr) {
            char m[sizeof c->err->msg];
            snprintf(m, sizeof m, "%s", c->err->msg);
            if (strstr(m, "out of memory")) return FAIL(c, PETREL_ERR_NOMEM, "%s: %s", where, m);
            /* A size form we cannot evaluate only costs the shape check:
             * kernels compute sizes from their inputs anyway. */
            d->expr = pt_expr_unknown(c->g);
            if (!d->expr) return FAIL(c, PETREL_ERR_NOMEM, "out of memory");
        }
        d->lit = -1;
        json_t *h = json_object_get(p, "hint"), *hp;
        const char *ht = union_tag(h, &hp);
        if (ht && !strcmp(ht, "as_int") && json_is_integer(hp)) d->lit = json_integer_value(hp);
        if (d->expr->kind == PT_EXPR_INT) {
            d->lit = d->expr->v;
            d->expr = NULL;
        }
        return PETREL_OK;
    }
    return FAIL(c, PETREL_ERR_FORMAT, "%s: expected a SymInt", where);
}

/* Fill dtype/rank/shape of a value from a TensorMeta object. */
static petrel_status parse_tensor_meta(ctx *c, json_t *m, pt_value *v, const char *where) {
    if (!json_is_object(m)) return FAIL(c, PETREL_ERR_FORMAT, "%s: tensor meta is not an object", where);
    json_t *dt = json_object_get(m, "dtype");
    if (!json_is_integer(dt)) return FAIL(c, PETREL_ERR_FORMAT, "%s: tensor meta without integer dtype", where);
    int pd = pt2_dtype_from_schema(json_integer_value(dt));
    if (pd < 0)
        return FAIL(c, PETREL_ERR_UNSUPPORTED, "%s: dtype %s (schema value %lld) is not supported", where,
                    dtype_schema_name(json_integer_value(dt)), (long long)json_integer_value(dt));
    v->dtype = (petrel_dtype)pd;
    json_t *layout = json_object_get(m, "layout");
    if (json_is_integer(layout) && json_integer_value(layout) != 7)
        return FAIL(c, PETREL_ERR_UNSUPPORTED, "%s: only strided (dense) tensors are supported (layout %lld)",
                    where, (long long)json_integer_value(layout));
    json_t *sizes = json_object_get(m, "sizes");
    if (!json_is_array(sizes)) return FAIL(c, PETREL_ERR_FORMAT, "%s: tensor meta without sizes", where);
    if (json_array_size(sizes) > PETREL_MAX_RANK)
        return FAIL(c, PETREL_ERR_UNSUPPORTED, "%s: rank %zu exceeds petrel's maximum of %d", where,
                    json_array_size(sizes), PETREL_MAX_RANK);
    v->rank = (int32_t)json_array_size(sizes);
    for (int i = 0; i < v->rank; i++) {
        char w[300];
        snprintf(w, sizeof w, "%s.sizes[%d]", where, i);
        PT_TRY(parse_symint(c, json_array_get(sizes, (size_t)i), &v->shape[i], w));
        if (!v->shape[i].expr && v->shape[i].lit < 0)
            return FAIL(c, PETREL_ERR_FORMAT, "%s: negative size %lld", w, (long long)v->shape[i].lit);
    }
    return PETREL_OK;
}

static petrel_status declare_values(ctx *c, json_t *graph) {
    json_t *tv = json_object_get(graph, "tensor_values");
    json_t *si = json_object_get(graph, "sym_int_values");
    json_t *sf = json_object_get(graph, "sym_float_values");
    json_t *sb = json_object_get(graph, "sym_bool_values");
    if (!json_is_object(tv)) return FAIL(c, PETREL_ERR_FORMAT, "model.json: graph.tensor_values missing");
    const char *key;
    json_t *val;
    json_object_foreach(tv, key, val) {
        int32_t vid;
        PT_TRY(add_value(c, key, PT_V_TENSOR, &vid));
        char w[300];
        snprintf(w, sizeof w, "model.json: graph.tensor_values['%s']", key);
        PT_TRY(parse_tensor_meta(c, val, &c->g->values[vid], w));
    }
    json_t *tabs[3] = {si, sf, sb};
    pt_vkind kinds[3] = {PT_V_INT, PT_V_FLOAT, PT_V_BOOL};
    for (int t = 0; t < 3; t++) {
        if (!json_is_object(tabs[t])) continue;
        json_object_foreach(tabs[t], key, val) {
            int32_t vid;
            PT_TRY(add_value(c, key, kinds[t], &vid));
        }
    }
    return PETREL_OK;
}

/* ---- weights ------------------------------------------------------------ */

/* Bind a PARAM/BUFFER/CONST value to its payload in the archive. */
static petrel_status bind_payload(ctx *c, pt_value *v, const char *fqn, bool constants) {
    json_t *cfg = constants ? c->ccfg : c->wcfg;
    const char *file = constants ? "data/constants/model_constants_config.json"
                                 : "data/weights/model_weights_config.json";
    json_t *pm = cfg ? json_object_get(cfg, fqn) : NULL;
    if (!json_is_object(pm))
        return FAIL(c, PETREL_ERR_FORMAT, "%s: no entry for '%s' (needed by graph input '%s')", file, fqn, v->name);
    json_t *pk = json_object_get(pm, "use_pickle");
    if (json_is_true(pk))
        return FAIL(c, PETREL_ERR_UNSUPPORTED,
                    "%s: '%s' is a pickled tensor subclass; only plain tensors are supported", file, fqn);
    json_t *pn = json_object_get(pm, "path_name");
    if (!json_is_string(pn)) return FAIL(c, PETREL_ERR_FORMAT, "%s: '%s'.path_name missing", file, fqn);
    char path[768];
    snprintf(path, sizeof path, "%s/data/%s/%s", c->root, constants ? "constants" : "weights",
             json_string_value(pn));
    const pz_entry *e = pz_find(c->z, path);
    if (!e) return FAIL(c, PETREL_ERR_FORMAT, "%s: '%s' refers to missing file '%s'", file, fqn, path);
    json_t *tm = json_object_get(pm, "tensor_meta");
    pt_value meta = {0};
    char w[600];
    snprintf(w, sizeof w, "%s: '%s'.tensor_meta", file, fqn);
    PT_TRY(parse_tensor_meta(c, tm, &meta, w));
    if (meta.dtype != v->dtype || meta.rank != v->rank)
        return FAIL(c, PETREL_ERR_FORMAT, "%s: '%s' is %s rank %d but the graph expects %s rank %d", file, fqn,
                    petrel_dtype_name(meta.dtype), meta.rank, petrel_dtype_name(v->dtype), v->rank);
    json_t *strides = json_object_get(tm, "strides");
    if (!json_is_array(strides) || (int)json_array_size(strides) != meta.rank)
        return FAIL(c, PETREL_ERR_FORMAT, "%s: strides missing or of the wrong rank", w);
    json_t *so = json_object_get(tm, "storage_offset"), *sop;
    const char *st = union_tag(so, &sop);
    if (!st || strcmp(st, "as_int") || !json_is_integer(sop) || json_integer_value(sop) < 0)
        return FAIL(c, PETREL_ERR_FORMAT, "%s: storage_offset must be a non-negative int", w);
    v->storage_offset = json_integer_value(sop);
    /* Highest element offset touched, checked against the file size. */
    int64_t numel = 1, last = v->storage_offset;
    for (int i = 0; i < meta.rank; i++) {
        if (meta.shape[i].expr) return FAIL(c, PETREL_ERR_FORMAT, "%s: symbolic size in a weight", w);
        if (v->shape[i].expr == NULL && v->shape[i].lit != meta.shape[i].lit)
            return FAIL(c, PETREL_ERR_FORMAT, "%s: size %d is %lld but the graph expects %lld", w, i,
                        (long long)meta.shape[i].lit, (long long)v->shape[i].lit);
        pt_dim sd;
        char ws[700];
        snprintf(ws, sizeof ws, "%s.strides[%d]", w, i);
        PT_TRY(parse_symint(c, json_array_get(strides, (size_t)i), &sd, ws));
        if (sd.expr || sd.lit < 0) return FAIL(c, PETREL_ERR_FORMAT, "%s: stride must be a non-negative int", ws);
        v->strides[i] = sd.lit;
        int64_t ext;
        if (!pt_mul_ok(numel, meta.shape[i].lit, &numel) ||
            (meta.shape[i].lit > 0 && (!pt_mul_ok(meta.shape[i].lit - 1, sd.lit, &ext) || !pt_add_ok(last, ext, &last))))
            return FAIL(c, PETREL_ERR_FORMAT, "%s: sizes/strides overflow", w);
    }
    int64_t need = 0;
    size_t es = petrel_dtype_size(v->dtype);
    if (numel > 0 && (!pt_add_ok(last, 1, &need) || !pt_mul_ok(need, (int64_t)es, &need)))
        return FAIL(c, PETREL_ERR_FORMAT, "%s: byte size overflows", w);
    if (numel > 0 && e->size == 0) {
        /* torch writes fake/empty storages as 0-byte files and loads zeros */
        v->data = NULL;
    } else if ((uint64_t)need > e->size) {
        return FAIL(c, PETREL_ERR_FORMAT, "%s: '%s' needs %lld bytes but '%s' holds %llu", file, fqn,
                    (long long)need, path, (unsigned long long)e->size);
    } else {
        v->data = e->data;
    }
    v->data_bytes = (int64_t)e->size;
    v->fqn = pt_strdup(fqn);
    if (!v->fqn) return FAIL(c, PETREL_ERR_NOMEM, "out of memory");
    return PETREL_OK;
}

/* ---- signature ---------------------------------------------------------- */

static int32_t lookup(ctx *c, json_t *name) {
    if (!json_is_string(name)) return -1;
    const char *nm = json_string_value(name);
    if (!c->prefix) return map_get(&c->names, nm);
    for (int32_t i = 0; i < c->nalias; i++)
        if (!strcmp(c->alias_name[i], nm)) return c->alias_vid[i];
    char scoped[512];
    snprintf(scoped, sizeof scoped, "%s/%s", c->prefix, nm);
    return map_get(&c->names, scoped);
}

static petrel_status parse_inputs(ctx *c, json_t *sig) {
    json_t *specs = json_object_get(sig, "input_specs");
    if (!json_is_array(specs)) return FAIL(c, PETREL_ERR_FORMAT, "model.json: signature.input_specs missing");
    size_t n = json_array_size(specs);
    c->g->inputs = pt_calloc(n ? n : 1, sizeof(int32_t));
    if (!c->g->inputs) return FAIL(c, PETREL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *p;
        const char *tag = union_tag(json_array_get(specs, i), &p);
        if (!tag || !json_is_object(p))
            return FAIL(c, PETREL_ERR_FORMAT, "model.json: signature.input_specs[%zu] is not a union", i);
        json_t *arg = json_object_get(p, "arg");
        if (!strcmp(tag, "parameter") || !strcmp(tag, "buffer") || !strcmp(tag, "tensor_constant")) {
            int32_t vid = lookup(c, json_object_get(arg, "name"));
            const char *fk = !strcmp(tag, "parameter") ? "parameter_name"
                             : !strcmp(tag, "buffer")  ? "buffer_name"
                                                       : "tensor_constant_name";
            json_t *fqn = json_object_get(p, fk);
            if (vid < 0 || !json_is_string(fqn) || c->g->values[vid].kind != PT_V_TENSOR)
                return FAIL(c, PETREL_ERR_FORMAT, "model.json: signature.input_specs[%zu] (%s) names no tensor value", i, tag);
            pt_value *v = &c->g->values[vid];
            if (c->defined_at[vid] != INT32_MAX)
                return FAIL(c, PETREL_ERR_FORMAT, "model.json: signature.input_specs[%zu]: '%s' is bound twice", i, v->name);
            bool constants = !strcmp(tag, "tensor_constant");
            if (!strcmp(tag, "buffer")) {
                json_t *pers = json_object_get(p, "persistent");
                constants = json_is_false(pers);
                v->src = PT_SRC_BUFFER;
            } else {
                v->src = !strcmp(tag, "parameter") ? PT_SRC_PARAM : PT_SRC_CONST;
            }
            c->defined_at[vid] = -1;
            PT_TRY(bind_payload(c, v, json_string_value(fqn), constants));
        } else if (!strcmp(tag, "user_input")) {
            json_t *ap;
            const char *at = union_tag(arg, &ap);
            int32_t vid = -1;
            if (at && !strcmp(at, "as_tensor")) vid = lookup(c, json_object_get(ap, "name"));
            else if (at && (!strcmp(at, "as_sym_int") || !strcmp(at, "as_sym_float") || !strcmp(at, "as_sym_bool")))
                vid = lookup(c, json_object_get(ap, "as_name"));
            if (vid < 0)
                return FAIL(c, PETREL_ERR_UNSUPPORTED, "model.json: signature.input_specs[%zu]: user input of kind '%s' is not supported",
                            i, at ? at : "?");
            if (c->defined_at[vid] != INT32_MAX)
                return FAIL(c, PETREL_ERR_FORMAT, "model.json: signature.input_specs[%zu]: '%s' is bound twice", i,
                            c->g->values[vid].name);
            c->g->values[vid].src = PT_SRC_USER_INPUT;
            c->defined_at[vid] = -1;
            c->g->inputs[c->g->ninputs++] = vid;
        } else if (!strcmp(tag, "constant_input")) {
            /* specialized away by export: the graph never reads it */
            continue;
        } else {
            return FAIL(c, PETREL_ERR_UNSUPPORTED, "model.json: signature.input_specs[%zu]: '%s' inputs are not supported", i, tag);
        }
    }
    return PETREL_OK;
}

static petrel_status parse_outputs(ctx *c, json_t *sig) {
    json_t *specs = json_object_get(sig, "output_specs");
    if (!json_is_array(specs)) return FAIL(c, PETREL_ERR_FORMAT, "model.json: signature.output_specs missing");
    size_t n = json_array_size(specs);
    c->g->outputs = pt_calloc(n ? n : 1, sizeof *c->g->outputs);
    c->g->muts = pt_calloc(n ? n : 1, sizeof *c->g->muts);
    if (!c->g->outputs || !c->g->muts) return FAIL(c, PETREL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *p;
        const char *tag = union_tag(json_array_get(specs, i), &p);
        if (!tag || !json_is_object(p))
            return FAIL(c, PETREL_ERR_FORMAT, "model.json: signature.output_specs[%zu] is not a union", i);
        json_t *arg = json_object_get(p, "arg");
        if (!strcmp(tag, "buffer_mutation")) {
            int32_t vid = lookup(c, json_object_get(arg, "name"));
            json_t *bn = json_object_get(p, "buffer_name");
            int32_t buf = -1;
            for (int32_t k = 0; json_is_string(bn) && k < c->g->nvalues; k++)
                if (c->g->values[k].src == PT_SRC_BUFFER && c->g->values[k].fqn &&
                    !strcmp(c->g->values[k].fqn, json_string_value(bn)))
                    buf = k;
            if (vid < 0 || buf < 0 || c->g->values[vid].kind != PT_V_TENSOR)
                return FAIL(c, PETREL_ERR_FORMAT, "model.json: signature.output_specs[%zu]: bad buffer_mutation", i);
            c->g->muts[c->g->nmuts++] = (pt_mutation){buf, vid};
        } else if (!strcmp(tag, "user_output")) {
            json_t *ap;
            const char *at = union_tag(arg, &ap);
            pt_user_output *o = &c->g->outputs[c->g->noutputs++];
            o->item.vid = -1;
            if (!at) return FAIL(c, PETREL_ERR_FORMAT, "model.json: signature.output_specs[%zu]: bad argument", i);
            if (!strcmp(at, "as_tensor")) {
                o->item.vid = lookup(c, json_object_get(ap, "name"));
                o->kind = PT_V_TENSOR;
            } else if (!strcmp(at, "as_sym_int") || !strcmp(at, "as_sym_float") || !strcmp(at, "as_sym_bool")) {
                json_t *ip;
                const char *it = union_tag(ap, &ip);
                if (it && !strcmp(it, "as_name")) {
                    o->item.vid = lookup(c, ip);
                    if (o->item.vid >= 0) o->kind = c->g->values[o->item.vid].kind;
                } else if (it && !strcmp(it, "as_int") && json_is_integer(ip)) {
                    o->kind = PT_V_INT;
                    o->item.i = json_integer_value(ip);
                    continue;
                } else if (it && !strcmp(it, "as_float") && json_is_number(ip)) {
                    o->kind = PT_V_FLOAT;
                    o->item.f = json_number_value(ip);
                    continue;
                } else if (it && !strcmp(it, "as_bool") && json_is_boolean(ip)) {
                    o->kind = PT_V_BOOL;
                    o->item.i = json_is_true(ip);
                    continue;
                }
            } else if (!strcmp(at, "as_int") && json_is_integer(ap)) {
                o->kind = PT_V_INT;
                o->item.i = json_integer_value(ap);
                continue;
            } else if (!strcmp(at, "as_float") && json_is_number(ap)) {
                o->kind = PT_V_FLOAT;
                o->item.f = json_number_value(ap);
                continue;
            } else if (!strcmp(at, "as_bool") && json_is_boolean(ap)) {
                o->kind = PT_V_BOOL;
                o->item.i = json_is_true(ap);
                continue;
            } else if (!strcmp(at, "as_none")) {
                o->kind = PT_V_NONE;
                continue;
            }
            if (o->item.vid < 0)
                return FAIL(c, PETREL_ERR_UNSUPPORTED, "model.json: signature.output_specs[%zu]: output of kind '%s' is not supported", i, at);
        } else if (!strcmp(tag, "user_input_mutation")) {
            continue; /* inputs are copied in; the caller's data is not written */
        } else {
            return FAIL(c, PETREL_ERR_UNSUPPORTED, "model.json: signature.output_specs[%zu]: '%s' outputs are not supported", i, tag);
        }
    }
    return PETREL_OK;
}

/* ---- node arguments ----------------------------------------------------- */

static pt_item lit_i(int64_t i) { return (pt_item){-1, i, (double)i}; }

static petrel_status set_items(ctx *c, pt_arg *a, pt_arg_kind k, int32_t n) {
    a->kind = k;
    a->n = n;
    a->items = pt_calloc(n ? (size_t)n : 1, sizeof *a->items);
    if (!a->items) return FAIL(c, PETREL_ERR_NOMEM, "out of memory");
    return PETREL_OK;
}

static bool parse_float_json(json_t *j, double *f) {
    if (json_is_number(j)) { *f = json_number_value(j); return true; }
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        if (!strcmp(s, "Infinity")) { *f = INFINITY; return true; }
        if (!strcmp(s, "-Infinity")) { *f = -INFINITY; return true; }
        if (!strcmp(s, "NaN")) { *f = NAN; return true; }
    }
    return false;
}

/* A value referenced by a node must be defined before node `ni`. */
static petrel_status use_value(ctx *c, json_t *name, int ni, pt_vkind want, int32_t *vid, const char *where) {
    *vid = lookup(c, name);
    if (*vid < 0)
        return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s: unknown value '%s'", where,
                    json_is_string(name) ? json_string_value(name) : "?");
    if (c->defined_at[*vid] >= ni)
        return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s: value '%s' is used before it is defined", where,
                    c->g->values[*vid].name);
    if (want != PT_V_KIND_COUNT && c->g->values[*vid].kind != want)
        return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s: value '%s' has the wrong kind", where, c->g->values[*vid].name);
    return PETREL_OK;
}

/* {"as_name": n} | {"as_int": i} | {"as_float": f} | {"as_bool": b} */
static petrel_status parse_sym_item(ctx *c, json_t *j, int ni, pt_item *it, const char *where) {
    json_t *p;
    const char *tag = union_tag(j, &p);
    if (tag && !strcmp(tag, "as_name")) return use_value(c, p, ni, PT_V_KIND_COUNT, &it->vid, where);
    if (tag && !strcmp(tag, "as_int") && json_is_integer(p)) { *it = lit_i(json_integer_value(p)); return PETREL_OK; }
    if (tag && !strcmp(tag, "as_float") && parse_float_json(p, &it->f)) { it->vid = -1; return PETREL_OK; }
    if (tag && !strcmp(tag, "as_bool") && json_is_boolean(p)) { *it = lit_i(json_is_true(p)); return PETREL_OK; }
    return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s: bad symbolic value", where);
}

static petrel_status parse_arg(ctx *c, json_t *j, const pt_schema_arg *sa, int ni, pt_arg *a, const char *where) {
    json_t *p;
    const char *tag = union_tag(j, &p);
    if (!tag) return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s: argument is not a union", where);
    if (!strcmp(tag, "as_none")) { a->kind = PT_ARG_NONE; return PETREL_OK; }
    if (!strcmp(tag, "as_tensor") || !strcmp(tag, "as_optional_tensor")) {
        if (!strcmp(tag, "as_optional_tensor")) {
            json_t *q;
            const char *t2 = union_tag(p, &q);
            if (t2 && !strcmp(t2, "as_none")) { a->kind = PT_ARG_NONE; return PETREL_OK; }
            p = q;
        }
        PT_TRY(set_items(c, a, PT_ARG_TENSOR, 1));
        return use_value(c, json_object_get(p, "name"), ni, PT_V_TENSOR, &a->items[0].vid, where);
    }
    if (!strcmp(tag, "as_tensors") || !strcmp(tag, "as_optional_tensors")) {
        if (!json_is_array(p)) return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s: expected a list", where);
        PT_TRY(set_items(c, a, PT_ARG_TENSORS, (int32_t)json_array_size(p)));
        for (int i = 0; i < a->n; i++) {
            json_t *e = json_array_get(p, (size_t)i), *q = e;
            if (!strcmp(tag, "as_optional_tensors")) {
                const char *t2 = union_tag(e, &q);
                if (t2 && !strcmp(t2, "as_none")) { a->items[i].vid = -1; continue; }
                if (!t2 || strcmp(t2, "as_tensor")) return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s: bad optional tensor", where);
            }
            PT_TRY(use_value(c, json_object_get(q, "name"), ni, PT_V_TENSOR, &a->items[i].vid, where));
        }
        return PETREL_OK;
    }
    if (!strcmp(tag, "as_int") && json_is_integer(p)) {
        PT_TRY(set_items(c, a, sa->type == PT_ST_BOOL ? PT_ARG_BOOL : PT_ARG_INT, 1));
        a->items[0] = lit_i(json_integer_value(p));
        return PETREL_OK;
    }
    if (!strcmp(tag, "as_bool") && json_is_boolean(p)) {
        PT_TRY(set_items(c, a, PT_ARG_BOOL, 1));
        a->items[0] = lit_i(json_is_true(p));
        return PETREL_OK;
    }
    if (!strcmp(tag, "as_float")) {
        PT_TRY(set_items(c, a, PT_ARG_FLOAT, 1));
        a->items[0].vid = -1;
        if (!parse_float_json(p, &a->items[0].f)) return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s: bad float", where);
        return PETREL_OK;
    }
    if (!strcmp(tag, "as_ints") || !strcmp(tag, "as_sym_ints") || !strcmp(tag, "as_floats") ||
        !strcmp(tag, "as_bools") || !strcmp(tag, "as_sym_floats") || !strcmp(tag, "as_sym_bools")) {
        if (!json_is_array(p)) return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s: expected a list", where);
        pt_arg_kind k = strstr(tag, "float") ? PT_ARG_FLOATS : strstr(tag, "bool") ? PT_ARG_BOOLS : PT_ARG_INTS;
        PT_TRY(set_items(c, a, k, (int32_t)json_array_size(p)));
        for (int i = 0; i < a->n; i++) {
            json_t *e = json_array_get(p, (size_t)i);
            if (!strncmp(tag, "as_sym_", 7)) PT_TRY(parse_sym_item(c, e, ni, &a->items[i], where));
            else if (json_is_integer(e)) a->items[i] = lit_i(json_integer_value(e));
            else if (json_is_boolean(e)) a->items[i] = lit_i(json_is_true(e));
            else if (parse_float_json(e, &a->items[i].f)) a->items[i].vid = -1;
            else return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s: bad list element", where);
        }
        return PETREL_OK;
    }
    if (!strcmp(tag, "as_sym_int") || !strcmp(tag, "as_sym_float") || !strcmp(tag, "as_sym_bool")) {
        pt_arg_kind k = !strcmp(tag, "as_sym_int") ? PT_ARG_INT : !strcmp(tag, "as_sym_float") ? PT_ARG_FLOAT : PT_ARG_BOOL;
        PT_TRY(set_items(c, a, k, 1));
        return parse_sym_item(c, p, ni, &a->items[0], where);
    }
    if (!strcmp(tag, "as_string") && json_is_string(p)) {
        a->kind = PT_ARG_STRING;
        a->str = pt_strdup(json_string_value(p));
        return a->str ? PETREL_OK : FAIL(c, PETREL_ERR_NOMEM, "out of memory");
    }
    if (!strcmp(tag, "as_scalar_type") && json_is_integer(p)) {
        int d = pt2_dtype_from_schema(json_integer_value(p));
        if (d < 0)
            return FAIL(c, PETREL_ERR_UNSUPPORTED, "model.json: %s: dtype %s is not supported", where,
                        dtype_schema_name(json_integer_value(p)));
        PT_TRY(set_items(c, a, PT_ARG_DTYPE, 1));
        a->items[0] = lit_i(d);
        return PETREL_OK;
    }
    if (!strcmp(tag, "as_memory_format") || !strcmp(tag, "as_layout") || !strcmp(tag, "as_device")) {
        a->kind = PT_ARG_OTHER;
        return PETREL_OK;
    }
    return FAIL(c, PETREL_ERR_UNSUPPORTED, "model.json: %s: argument kind '%s' is not supported", where, tag);
}


/* Append an empty node; *ni is its index (also its execution order). */
static petrel_status new_node(ctx *c, pt_node **out, int *ni) {
    pt_graph *g = c->g;
    if (g->nnodes == c->cap_nodes) {
        if (c->cap_nodes > (1 << 24)) return FAIL(c, PETREL_ERR_UNSUPPORTED, "model.json: too many nodes");
        int32_t cap = c->cap_nodes ? c->cap_nodes * 2 : 256;
        pt_node *nn = pt_realloc(g->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return FAIL(c, PETREL_ERR_NOMEM, "out of memory");
        g->nodes = nn;
        c->cap_nodes = cap;
    }
    *ni = g->nnodes++;
    *out = &g->nodes[*ni];
    memset(*out, 0, sizeof **out);
    return PETREL_OK;
}

static petrel_status parse_node(ctx *c, json_t *jn, int jidx);

/*
** Higher-order ops that only scope their body (grad mode, autocast) are
** inlined: the subgraph's values are declared under "<hop>/<name>", its
** inputs alias the operands that follow the graph argument, its nodes are
** appended in order, and each outer output becomes an alias of the
** matching subgraph output.  For inference these ops are exactly their body.
*/
static petrel_status inline_hop(ctx *c, json_t *jn, int jidx, const char *target) {
    json_t *ins = json_object_get(jn, "inputs"), *outs = json_object_get(jn, "outputs");
    if (!json_is_array(ins) || !json_is_array(outs))
        return FAIL(c, PETREL_ERR_FORMAT, "model.json: graph.nodes[%d] (%s): inputs/outputs missing", jidx, target);
    json_t *sub = NULL, *subname = NULL;
    size_t gi = 0;
    for (; gi < json_array_size(ins); gi++) {
        json_t *p;
        const char *tag = union_tag(json_object_get(json_array_get(ins, gi), "arg"), &p);
        if (tag && !strcmp(tag, "as_graph")) {
            sub = json_object_get(p, "graph");
            subname = json_object_get(p, "name");
            break;
        }
    }
    if (!json_is_object(sub))
        return FAIL(c, PETREL_ERR_FORMAT, "model.json: graph.nodes[%d] (%s): no subgraph", jidx, target);
    json_t *sins = json_object_get(sub, "inputs"), *souts = json_object_get(sub, "outputs");
    json_t *snodes = json_object_get(sub, "nodes");
    size_t nops = json_array_size(ins) - gi - 1;
    if (!json_is_array(sins) || !json_is_array(souts) || !json_is_array(snodes) || json_array_size(sins) != nops ||
        nops > 256)
        return FAIL(c, PETREL_ERR_FORMAT, "model.json: graph.nodes[%d] (%s): subgraph inputs do not match its operands",
                    jidx, target);
    /* operands are resolved in the outer scope */
    const char *anames[256];
    int32_t avids[256];
    for (size_t k = 0; k < nops; k++) {
        json_t *p, *q;
        const char *tag = union_tag(json_object_get(json_array_get(ins, gi + 1 + k), "arg"), &p);
        const char *itag = union_tag(json_array_get(sins, k), &q);
        if (!tag || !itag || strcmp(tag, "as_tensor") || strcmp(itag, "as_tensor"))
            return FAIL(c, PETREL_ERR_UNSUPPORTED, "model.json: graph.nodes[%d] (%s): only tensor operands are supported",
                        jidx, target);
        char where[160];
        snprintf(where, sizeof where, "graph.nodes[%d] (%s) operand %zu", jidx, target, k);
        PT_TRY(use_value(c, json_object_get(p, "name"), c->g->nnodes, PT_V_TENSOR, &avids[k], where));
        anames[k] = json_string_value(json_object_get(q, "name"));
        if (!anames[k]) return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s: unnamed subgraph input", where);
    }
    /* enter the subgraph scope */
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s%s%s", c->prefix ? c->prefix : "", c->prefix ? "/" : "",
             json_is_string(subname) ? json_string_value(subname) : "subgraph");
    ctx saved = *c;
    c->prefix = prefix;
    c->nalias = (int32_t)nops;
    c->alias_name = anames;
    c->alias_vid = avids;
    /* declare the subgraph's own values (not its inputs, which alias) */
    json_t *tabs[4] = {json_object_get(sub, "tensor_values"), json_object_get(sub, "sym_int_values"),
                       json_object_get(sub, "sym_float_values"), json_object_get(sub, "sym_bool_values")};
    pt_vkind kinds[4] = {PT_V_TENSOR, PT_V_INT, PT_V_FLOAT, PT_V_BOOL};
    petrel_status st = PETREL_OK;
    for (int t = 0; t < 4 && st == PETREL_OK; t++) {
        const char *key;
        json_t *val;
        json_object_foreach(tabs[t], key, val) {
            bool is_input = false;
            for (size_t k = 0; k < nops; k++) is_input |= !strcmp(anames[k], key);
            if (is_input) continue;
            int32_t vid;
            if ((st = add_value(c, key, kinds[t], &vid)) != PETREL_OK) break;
            if (t == 0) {
                char w[300];
                snprintf(w, sizeof w, "model.json: %s.tensor_values['%s']", prefix, key);
                if ((st = parse_tensor_meta(c, val, &c->g->values[vid], w)) != PETREL_OK) break;
            }
        }
    }
    for (size_t k = 0; st == PETREL_OK && k < json_array_size(snodes); k++)
        st = parse_node(c, json_array_get(snodes, k), (int)k);
    int32_t sout[256];
    size_t nsout = json_array_size(souts);
    for (size_t k = 0; st == PETREL_OK && k < nsout; k++) {
        json_t *p;
        const char *tag = union_tag(json_array_get(souts, k), &p);
        if (k >= 256 || !tag || strcmp(tag, "as_tensor"))
            st = FAIL(c, PETREL_ERR_UNSUPPORTED, "model.json: %s: only tensor outputs are supported", prefix);
        else if ((sout[k] = lookup(c, json_object_get(p, "name"))) < 0)
            st = FAIL(c, PETREL_ERR_FORMAT, "model.json: %s: output %zu is undefined", prefix, k);
    }
    /* leave the scope (keep what grew) */
    saved.g = c->g;
    saved.defined_at = c->defined_at;
    saved.cap_nodes = c->cap_nodes;
    saved.names = c->names;
    *c = saved;
    if (st != PETREL_OK) return st;
    /* outer outputs alias the subgraph outputs, in order */
    size_t k = 0;
    for (size_t i = 0; i < json_array_size(outs); i++) {
        json_t *p;
        const char *tag = union_tag(json_array_get(outs, i), &p);
        json_t *list = tag && !strcmp(tag, "as_tensors") ? p : NULL;
        size_t m = list ? json_array_size(list) : 1;
        for (size_t j = 0; j < m; j++, k++) {
            json_t *nm = list ? json_object_get(json_array_get(list, j), "name")
                              : (tag && !strcmp(tag, "as_tensor") ? json_object_get(p, "name") : NULL);
            if (!nm) continue; /* None output */
            if (k >= nsout) return FAIL(c, PETREL_ERR_FORMAT, "model.json: graph.nodes[%d] (%s): more outputs than the subgraph returns", jidx, target);
            int32_t vid = lookup(c, nm);
            if (vid < 0 || c->defined_at[vid] != INT32_MAX)
                return FAIL(c, PETREL_ERR_FORMAT, "model.json: graph.nodes[%d] (%s): bad output", jidx, target);
            pt_node *n;
            int ni;
            PT_TRY(new_node(c, &n, &ni));
            n->op = PETREL_OP_ALIAS;
            n->nargs = 1;
            n->args = pt_calloc(1, sizeof *n->args);
            n->outs = pt_calloc(1, sizeof *n->outs);
            n->name = pt_strdup(c->g->values[vid].name);
            if (!n->args || !n->outs || !n->name) return FAIL(c, PETREL_ERR_NOMEM, "out of memory");
            PT_TRY(set_items(c, &n->args[0], PT_ARG_TENSOR, 1));
            n->args[0].items[0].vid = sout[k];
            n->nout = 1;
            n->outs[0] = vid;
            c->defined_at[vid] = ni;
        }
    }
    return PETREL_OK;
}

static petrel_status parse_node(ctx *c, json_t *jn, int jidx) {
    json_t *target = json_object_get(jn, "target");
    if (!json_is_string(target)) return FAIL(c, PETREL_ERR_FORMAT, "model.json: graph.nodes[%d].target missing", jidx);
    const char *t = json_string_value(target);
    if (!strcmp(t, "torch.ops.higher_order.wrap_with_set_grad_enabled") ||
        !strcmp(t, "torch.ops.higher_order.wrap_with_autocast"))
        return inline_hop(c, jn, jidx, t + 10);
    pt_node *n;
    int ni;
    PT_TRY(new_node(c, &n, &ni));
    int op = pt_op_find(t);
    if (op < 0) {
        const char *s = !strncmp(t, "torch.ops.", 10) ? t + 10 : t;
        return FAIL(c, PETREL_ERR_UNSUPPORTED_OP, "model.json: graph.nodes[%d]: operator '%s' is not supported", jidx, s);
    }
    n->op = (pt_op)op;
    pt_schema sc;
    if (!pt_schema_parse(pt_op_table[op].schema, &sc))
        return FAIL(c, PETREL_ERR_FORMAT, "internal: bad schema for %s", pt_op_table[op].target);
    char where[200];
    snprintf(where, sizeof where, "graph.nodes[%d] (%s)", jidx, pt_op_table[op].target);
    /* outputs first: their names identify the node in messages */
    json_t *outs = json_object_get(jn, "outputs");
    if (!json_is_array(outs)) return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s: outputs missing", where);
    int32_t nout = 0, cap = 0;
    for (size_t i = 0; i < json_array_size(outs); i++) {
        json_t *p;
        const char *tag = union_tag(json_array_get(outs, i), &p);
        cap += (tag && !strcmp(tag, "as_tensors") && json_is_array(p)) ? (int32_t)json_array_size(p) : 1;
    }
    n->outs = pt_calloc(cap ? (size_t)cap : 1, sizeof(int32_t));
    if (!n->outs) return FAIL(c, PETREL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < json_array_size(outs); i++) {
        json_t *p;
        const char *tag = union_tag(json_array_get(outs, i), &p);
        if (!tag) return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s.outputs[%zu] is not a union", where, i);
        json_t *names[1024];
        size_t nn = 0;
        if (!strcmp(tag, "as_tensor")) names[nn++] = json_object_get(p, "name");
        else if (!strcmp(tag, "as_tensors") && json_is_array(p)) {
            for (size_t k = 0; k < json_array_size(p) && nn < 1024; k++)
                names[nn++] = json_object_get(json_array_get(p, k), "name");
        } else if (!strcmp(tag, "as_sym_int") || !strcmp(tag, "as_sym_float") || !strcmp(tag, "as_sym_bool"))
            names[nn++] = json_object_get(p, "as_name");
        else if (!strcmp(tag, "as_none")) { n->outs[nout++] = -1; continue; }
        else return FAIL(c, PETREL_ERR_UNSUPPORTED, "model.json: %s.outputs[%zu]: '%s' is not supported", where, i, tag);
        for (size_t k = 0; k < nn; k++) {
            int32_t vid = lookup(c, names[k]);
            if (vid < 0) return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s.outputs[%zu]: undeclared value", where, i);
            if (c->defined_at[vid] != INT32_MAX)
                return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s: value '%s' is defined twice", where, c->g->values[vid].name);
            c->defined_at[vid] = ni;
            n->outs[nout++] = vid;
        }
    }
    n->nout = nout;
    n->name = pt_strdup(nout > 0 && n->outs[0] >= 0 ? c->g->values[n->outs[0]].name : pt_op_table[op].target);
    if (!n->name) return FAIL(c, PETREL_ERR_NOMEM, "out of memory");
    snprintf(where, sizeof where, "graph.nodes[%d] '%s' (%s)", jidx, n->name, pt_op_table[op].target);
    /* arguments, matched against the schema by name, else by position */
    n->nargs = sc.nargs;
    n->args = pt_calloc(sc.nargs ? (size_t)sc.nargs : 1, sizeof *n->args);
    if (!n->args) return FAIL(c, PETREL_ERR_NOMEM, "out of memory");
    bool seen[PT_MAX_SCHEMA_ARGS] = {0};
    json_t *ins = json_object_get(jn, "inputs");
    if (!json_is_array(ins)) return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s: inputs missing", where);
    for (size_t i = 0; i < json_array_size(ins); i++) {
        json_t *ji = json_array_get(ins, i);
        json_t *nm = json_object_get(ji, "name");
        int idx = -1;
        if (json_is_string(nm))
            for (int k = 0; k < sc.nargs; k++)
                if (!strcmp(sc.args[k].name, json_string_value(nm))) idx = k;
        if (idx < 0) {
            json_t *kind = json_object_get(ji, "kind");
            if (json_is_integer(kind) && json_integer_value(kind) == 2)
                return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s: unknown keyword argument '%s'", where,
                            json_is_string(nm) ? json_string_value(nm) : "?");
            idx = (int)i;
        }
        if (idx >= sc.nargs)
            return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s: too many arguments", where);
        if (seen[idx]) return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s: argument '%s' given twice", where, sc.args[idx].name);
        seen[idx] = true;
        char w[300];
        snprintf(w, sizeof w, "%s argument '%s'", where, sc.args[idx].name);
        PT_TRY(parse_arg(c, json_object_get(ji, "arg"), &sc.args[idx], ni, &n->args[idx], w));
        n->args[idx].fixed_len = sc.args[idx].list_len;
    }
    for (int k = 0; k < sc.nargs; k++) {
        if (seen[k]) continue;
        if (!sc.args[k].has_default)
            return FAIL(c, PETREL_ERR_FORMAT, "model.json: %s: missing argument '%s'", where, sc.args[k].name);
        char w[300];
        snprintf(w, sizeof w, "%s argument '%s'", where, sc.args[k].name);
        PT_TRY(pt_arg_default(&sc.args[k], &n->args[k], w, c->err));
        n->args[k].fixed_len = sc.args[k].list_len;
    }
    return PETREL_OK;
}

/* ---- top level ---------------------------------------------------------- */

static petrel_status import_model(ctx *c, json_t *model) {
    pt_graph *g = c->g;
    json_t *sv = json_object_get(model, "schema_version");
    json_t *maj = json_object_get(sv, "major"), *min = json_object_get(sv, "minor");
    if (!json_is_integer(maj)) return FAIL(c, PETREL_ERR_FORMAT, "model.json: schema_version.major missing");
    g->schema_major = (int32_t)json_integer_value(maj);
    g->schema_minor = json_is_integer(min) ? (int32_t)json_integer_value(min) : 0;
    if (g->schema_major != 8)
        return FAIL(c, PETREL_ERR_VERSION, "model.json: export schema version %d.%d; petrel reads major version 8",
                    g->schema_major, g->schema_minor);
    json_t *ver = json_object_get(model, "verifiers");
    const char *dialect = "UNKNOWN";
    if (json_is_array(ver) && json_array_size(ver) > 0 && json_is_string(json_array_get(ver, 0)))
        dialect = json_string_value(json_array_get(ver, 0));
    else if (json_is_string(json_object_get(model, "dialect")))
        dialect = json_string_value(json_object_get(model, "dialect"));
    g->dialect = pt_strdup(dialect);
    if (!g->dialect) return FAIL(c, PETREL_ERR_NOMEM, "out of memory");
    json_t *gm = json_object_get(model, "graph_module");
    json_t *graph = json_object_get(gm, "graph");
    json_t *sig = json_object_get(gm, "signature");
    if (!json_is_object(graph) || !json_is_object(sig))
        return FAIL(c, PETREL_ERR_FORMAT, "model.json: graph_module.graph or .signature missing");
    PT_TRY(declare_values(c, graph));
    /* symbol ranges */
    json_t *rc = json_object_get(model, "range_constraints");
    const char *key;
    json_t *val;
    json_object_foreach(rc, key, val) {
        char buf[300];
        snprintf(buf, sizeof buf, "Symbol('%s')", key);
        pt_expr *e = pt_expr_parse(g, buf, c->err);
        if (!e)
            return FAIL(c, strstr(c->err->msg, "out of memory") ? PETREL_ERR_NOMEM : PETREL_ERR_FORMAT,
                        "model.json: range_constraints: bad symbol '%s'", key);
        json_t *lo = json_object_get(val, "min_val"), *hi = json_object_get(val, "max_val");
        g->syms[e->sym].min = json_is_integer(lo) ? json_integer_value(lo) : INT64_MIN;
        g->syms[e->sym].max = json_is_integer(hi) ? json_integer_value(hi) : INT64_MAX;
    }
    PT_TRY(parse_inputs(c, sig));
    json_t *nodes = json_object_get(graph, "nodes");
    if (!json_is_array(nodes)) return FAIL(c, PETREL_ERR_FORMAT, "model.json: graph.nodes missing");
    for (size_t i = 0; i < json_array_size(nodes); i++) PT_TRY(parse_node(c, json_array_get(nodes, i), (int)i));
    PT_TRY(parse_outputs(c, sig));
    /* every output and mutation must be defined somewhere */
    for (int32_t i = 0; i < g->noutputs; i++) {
        int32_t v = g->outputs[i].item.vid;
        if (v >= 0 && c->defined_at[v] == INT32_MAX)
            return FAIL(c, PETREL_ERR_FORMAT, "model.json: output %d reads '%s', which nothing defines", i, g->values[v].name);
    }
    for (int32_t i = 0; i < g->nmuts; i++) {
        int32_t v = g->muts[i].value_vid;
        if (c->defined_at[v] == INT32_MAX)
            return FAIL(c, PETREL_ERR_FORMAT, "model.json: buffer mutation reads '%s', which nothing defines", g->values[v].name);
    }
    return PETREL_OK;
}

petrel_status pt2_import(pt_graph *g, const pz_archive *z, pt_err *err) {
    memset(g, 0, sizeof *g);
    ctx c = {.g = g, .z = z, .err = err};
    c.names.g = g;
    petrel_status st;
    if (z->n == 0) return pt_fail(err, PETREL_ERR_FORMAT, "not a .pt2 archive: the zip is empty");
    const char *first = z->entries[0].name;
    const char *slash = strchr(first, '/');
    if (!slash || (size_t)(slash - first) >= sizeof c.root)
        return pt_fail(err, PETREL_ERR_FORMAT, "not a .pt2 archive: entry '%s' is not under a root folder", first);
    memcpy(c.root, first, (size_t)(slash - first));
    c.root[slash - first] = 0;
    char path[512];
    snprintf(path, sizeof path, "%s/archive_format", c.root);
    const pz_entry *af = pz_find(z, path);
    if (!af || af->size != 3 || memcmp(af->data, "pt2", 3) != 0)
        return pt_fail(err, PETREL_ERR_FORMAT, "not a .pt2 archive: '%s' missing or not \"pt2\"", path);
    json_t *wj = entry_json(&c, "data/weights/model_weights_config.json", false, &st);
    json_t *cj = st == PETREL_OK ? entry_json(&c, "data/constants/model_constants_config.json", false, &st) : NULL;
    json_t *model = st == PETREL_OK ? entry_json(&c, "models/model.json", true, &st) : NULL;
    if (st == PETREL_OK) {
        c.wcfg = json_object_get(wj, "config");
        c.ccfg = json_object_get(cj, "config");
        if ((wj && !json_is_object(c.wcfg)) || (cj && !json_is_object(c.ccfg)))
            st = pt_fail(err, PETREL_ERR_FORMAT, "weights/constants config: 'config' is not an object");
    }
    if (st == PETREL_OK && !json_is_object(model)) st = pt_fail(err, PETREL_ERR_FORMAT, "model.json: not an object");
    if (st == PETREL_OK) st = import_model(&c, model);
    if (st == PETREL_OK) st = pt_graph_verify(g, err);
    json_decref(wj);
    json_decref(cj);
    json_decref(model);
    pt_free(c.names.slots);
    pt_free(c.defined_at);
    if (st != PETREL_OK) pt_graph_free(g);
    return st;
}
