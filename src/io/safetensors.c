/*
** safetensors.c -- read and write the safetensors format (8-byte header
** length, JSON header, raw little-endian data), used for program inputs and
** outputs by the CLI and tests.  Reads validate every offset and size;
** writes go to a temporary file renamed into place, so a failure never
** leaves a partial file.  Layer: io -> core.
*/
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/core.h"

typedef struct st_tensor {
    char *name;
    petrel_tensor_desc desc; /* data points into `blob` or an owned copy */
    void *owned;
} st_tensor;

struct petrel_tensor_file {
    int32_t n, cap;
    st_tensor *t;
    uint8_t *blob; /* whole file when read */
};

static const struct { const char *name; petrel_dtype dt; } st_dtypes[] = {
    {"F32", PETREL_DTYPE_F32}, {"F16", PETREL_DTYPE_F16}, {"BF16", PETREL_DTYPE_BF16},
    {"F64", PETREL_DTYPE_F64}, {"I64", PETREL_DTYPE_I64}, {"I32", PETREL_DTYPE_I32},
    {"I16", PETREL_DTYPE_I16}, {"I8", PETREL_DTYPE_I8},   {"U8", PETREL_DTYPE_U8},
    {"BOOL", PETREL_DTYPE_BOOL},
};

static int st_dtype_from_name(const char *s) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (!strcmp(st_dtypes[i].name, s)) return st_dtypes[i].dt;
    return -1;
}

static const char *st_dtype_name(petrel_dtype dt) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].dt == dt) return st_dtypes[i].name;
    return NULL;
}

petrel_status petrel_tensor_file_new(petrel_tensor_file_t **out) {
    if (!out) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_tensor_file_new: NULL argument");
    *out = pt_calloc(1, sizeof **out);
    return *out ? PETREL_OK : pt_fail(NULL, PETREL_ERR_NOMEM, "out of memory");
}

void petrel_tensor_file_free(petrel_tensor_file_t *f) {
    if (!f) return;
    for (int32_t i = 0; i < f->n; i++) {
        pt_free(f->t[i].name);
        pt_free(f->t[i].owned);
    }
    pt_free(f->t);
    pt_free(f->blob);
    pt_free(f);
}

static petrel_status push(petrel_tensor_file_t *f, const char *name, st_tensor **slot) {
    for (int32_t i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "duplicate tensor name '%s'", name);
    if (f->n == f->cap) {
        int32_t cap = f->cap ? f->cap * 2 : 8;
        st_tensor *nt = pt_realloc(f->t, (size_t)cap * sizeof *nt);
        if (!nt) return pt_fail(NULL, PETREL_ERR_NOMEM, "out of memory");
        f->t = nt;
        f->cap = cap;
    }
    st_tensor *t = &f->t[f->n];
    memset(t, 0, sizeof *t);
    t->name = pt_strdup(name);
    if (!t->name) return pt_fail(NULL, PETREL_ERR_NOMEM, "out of memory");
    f->n++;
    *slot = t;
    return PETREL_OK;
}

static petrel_status parse_file(petrel_tensor_file_t *f, const char *path, uint64_t size) {
    if (size < 8) return pt_fail(NULL, PETREL_ERR_FORMAT, "%s: not a safetensors file (too short)", path);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->blob[i];
    if (hlen > size - 8 || hlen > (100u << 20))
        return pt_fail(NULL, PETREL_ERR_FORMAT, "%s: not a safetensors file (header length %llu)", path,
                       (unsigned long long)hlen);
    json_error_t je;
    json_t *h = json_loadb((const char *)f->blob + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!h || !json_is_object(h)) {
        json_decref(h);
        return pt_fail(NULL, PETREL_ERR_FORMAT, "%s: bad safetensors header: %s", path, h ? "not an object" : je.text);
    }
    const uint8_t *data = f->blob + 8 + hlen;
    uint64_t dsize = size - 8 - hlen;
    const char *key;
    json_t *v;
    petrel_status st = PETREL_OK;
    json_object_foreach(h, key, v) {
        if (!strcmp(key, "__metadata__")) continue;
        json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape");
        json_t *offs = json_object_get(v, "data_offsets");
        int d = json_is_string(dt) ? st_dtype_from_name(json_string_value(dt)) : -1;
        if (d < 0) { st = pt_fail(NULL, PETREL_ERR_UNSUPPORTED, "%s: tensor '%s': unsupported or missing dtype", path, key); break; }
        if (!json_is_array(shape) || json_array_size(shape) > PETREL_MAX_RANK || !json_is_array(offs) ||
            json_array_size(offs) != 2) {
            st = pt_fail(NULL, PETREL_ERR_FORMAT, "%s: tensor '%s': bad shape or data_offsets", path, key);
            break;
        }
        st_tensor *t;
        if ((st = push(f, key, &t)) != PETREL_OK) break;
        t->desc.dtype = (petrel_dtype)d;
        t->desc.rank = (int32_t)json_array_size(shape);
        int64_t numel = 1;
        bool ok = true;
        for (int i = 0; i < t->desc.rank; i++) {
            json_t *e = json_array_get(shape, (size_t)i);
            if (!json_is_integer(e) || json_integer_value(e) < 0 || !pt_mul_ok(numel, json_integer_value(e), &numel)) ok = false;
            else t->desc.shape[i] = json_integer_value(e);
        }
        json_t *b = json_array_get(offs, 0), *e = json_array_get(offs, 1);
        int64_t nbytes;
        if (!ok || !json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
            json_integer_value(e) < json_integer_value(b) || (uint64_t)json_integer_value(e) > dsize ||
            !pt_mul_ok(numel, (int64_t)petrel_dtype_size((petrel_dtype)d), &nbytes) ||
            nbytes != json_integer_value(e) - json_integer_value(b)) {
            st = pt_fail(NULL, PETREL_ERR_FORMAT, "%s: tensor '%s': shape, dtype and data_offsets disagree or run past the end", path, key);
            break;
        }
        t->desc.data = (void *)(data + json_integer_value(b));
    }
    json_decref(h);
    return st;
}

petrel_status petrel_tensor_file_read(petrel_tensor_file_t **out, const char *path) {
    if (!out || !path) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_tensor_file_read: NULL argument");
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return pt_fail(NULL, PETREL_ERR_IO, "cannot open '%s': %m", path);
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(fp);
        return pt_fail(NULL, PETREL_ERR_IO, "'%s' is not a regular file", path);
    }
    petrel_tensor_file_t *f;
    petrel_status st = petrel_tensor_file_new(&f);
    if (st != PETREL_OK) { fclose(fp); return st; }
    long size = -1;
    if (fseek(fp, 0, SEEK_END) == 0) size = ftell(fp);
    if (size < 0 || fseek(fp, 0, SEEK_SET) != 0) st = pt_fail(NULL, PETREL_ERR_IO, "cannot read '%s'", path);
    if (st == PETREL_OK && !(f->blob = pt_malloc((size_t)size)))
        st = pt_fail(NULL, PETREL_ERR_NOMEM, "out of memory reading '%s'", path);
    if (st == PETREL_OK && size > 0 && fread(f->blob, 1, (size_t)size, fp) != (size_t)size)
        st = pt_fail(NULL, PETREL_ERR_IO, "cannot read '%s'", path);
    fclose(fp);
    if (st == PETREL_OK) st = parse_file(f, path, (uint64_t)size);
    if (st != PETREL_OK) {
        petrel_tensor_file_free(f);
        return st;
    }
    *out = f;
    return PETREL_OK;
}

int petrel_tensor_file_count(const petrel_tensor_file_t *f) { return f ? f->n : 0; }

const char *petrel_tensor_file_name(const petrel_tensor_file_t *f, int i) {
    return f && i >= 0 && i < f->n ? f->t[i].name : NULL;
}

petrel_status petrel_tensor_file_get(petrel_tensor_desc *out, const petrel_tensor_file_t *f, const char *name) {
    if (!out || !f || !name) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_tensor_file_get: NULL argument");
    for (int32_t i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) {
            *out = f->t[i].desc;
            return PETREL_OK;
        }
    return pt_fail(NULL, PETREL_ERR_NOT_FOUND, "no tensor named '%s'", name);
}

petrel_status petrel_tensor_file_add(petrel_tensor_file_t *f, const char *name, const petrel_tensor_desc *t) {
    if (!f || !name || !t || !pt_dtype_valid((int)t->dtype) || t->rank < 0 || t->rank > PETREL_MAX_RANK)
        return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_tensor_file_add: bad argument");
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        if (t->shape[i] < 0 || !pt_mul_ok(n, t->shape[i], &n))
            return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "tensor '%s': bad shape", name);
    size_t bytes = (size_t)n * petrel_dtype_size(t->dtype);
    void *copy = pt_malloc(bytes);
    if (!copy) return pt_fail(NULL, PETREL_ERR_NOMEM, "out of memory");
    if (bytes) memcpy(copy, t->data, bytes);
    st_tensor *s;
    petrel_status st = push(f, name, &s);
    if (st != PETREL_OK) {
        pt_free(copy);
        return st;
    }
    s->desc = *t;
    s->desc.data = copy;
    s->owned = copy;
    return PETREL_OK;
}

petrel_status petrel_tensor_file_write(const petrel_tensor_file_t *f, const char *path) {
    if (!f || !path) return pt_fail(NULL, PETREL_ERR_INVALID_ARG, "petrel_tensor_file_write: NULL argument");
    json_t *h = json_object();
    if (!h) return pt_fail(NULL, PETREL_ERR_NOMEM, "out of memory");
    int64_t off = 0;
    for (int32_t i = 0; i < f->n; i++) {
        const petrel_tensor_desc *d = &f->t[i].desc;
        int64_t bytes = petrel_tensor_numel(d) * (int64_t)petrel_dtype_size(d->dtype);
        json_t *shape = json_array();
        for (int k = 0; k < d->rank; k++) json_array_append_new(shape, json_integer(d->shape[k]));
        json_t *e = json_pack("{s:s, s:o, s:[I,I]}", "dtype", st_dtype_name(d->dtype), "shape", shape,
                              "data_offsets", (json_int_t)off, (json_int_t)(off + bytes));
        if (!e || json_object_set_new(h, f->t[i].name, e) != 0) {
            json_decref(h);
            return pt_fail(NULL, PETREL_ERR_NOMEM, "out of memory");
        }
        off += bytes;
    }
    char *hs = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    if (!hs) return pt_fail(NULL, PETREL_ERR_NOMEM, "out of memory");
    size_t hl = strlen(hs), padded = (hl + 7) & ~(size_t)7;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        free(hs);
        return pt_fail(NULL, PETREL_ERR_IO, "cannot write '%s': %m", path);
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    bool ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(hs, 1, hl, fp) == hl;
    for (size_t i = hl; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
    free(hs);
    for (int32_t i = 0; ok && i < f->n; i++) {
        const petrel_tensor_desc *d = &f->t[i].desc;
        size_t bytes = (size_t)petrel_tensor_numel(d) * petrel_dtype_size(d->dtype);
        ok = bytes == 0 || fwrite(d->data, 1, bytes, fp) == bytes;
    }
    if (fclose(fp) != 0) ok = false;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return pt_fail(NULL, PETREL_ERR_IO, "cannot write '%s'", path);
    }
    return PETREL_OK;
}
