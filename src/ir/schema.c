/*
** schema.c -- parse the argument lists of ops.def ("Tensor self, int[1]?
** dim=None, *, ScalarType? dtype=None") into typed descriptors the importer
** uses to match export arguments by name and fill defaults.
*/
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static void trim(char *s) {
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    size_t i = 0;
    while (s[i] && isspace((unsigned char)s[i])) i++;
    memmove(s, s + i, strlen(s + i) + 1);
}

/* Parse one "TYPE NAME[=DEFAULT]" item. */
static bool parse_item(char *item, pt_schema_arg *a) {
    memset(a, 0, sizeof *a);
    char *eq = strchr(item, '=');
    if (eq) {
        *eq = 0;
        char def[64];
        snprintf(def, sizeof def, "%s", eq + 1);
        trim(def);
        if (strlen(def) >= sizeof a->defval) return false;
        strcpy(a->defval, def);
        a->has_default = true;
    }
    trim(item);
    char *sp = strrchr(item, ' ');
    if (!sp) return false;
    *sp = 0;
    char *name = sp + 1;
    if (strlen(name) >= sizeof a->name || !*name) return false;
    strcpy(a->name, name);
    /* type: strip alias annotations like "(a!)" */
    char type[64];
    size_t t = 0;
    for (char *p = item; *p && t + 1 < sizeof type; p++) {
        if (*p == '(') {
            while (*p && *p != ')') a->writes |= *p++ == '!';
            if (!*p) return false;
            continue;
        }
        if (!isspace((unsigned char)*p)) type[t++] = *p;
    }
    type[t] = 0;
    bool list = false, opt_elem = false;
    size_t len = strlen(type);
    if (len && type[len - 1] == '?') {
        a->optional = true;
        type[--len] = 0;
    }
    char *br = strchr(type, '[');
    if (br) {
        list = true;
        a->list_len = (int32_t)strtol(br + 1, NULL, 10);
        *br = 0;
        len = strlen(type);
        if (len && type[len - 1] == '?') {
            opt_elem = true;
            type[--len] = 0;
        }
    }
    if (!strcmp(type, "Tensor")) a->type = list ? (opt_elem ? PT_ST_OPT_TENSOR_LIST : PT_ST_TENSOR_LIST) : PT_ST_TENSOR;
    else if (!strcmp(type, "int") || !strcmp(type, "SymInt")) a->type = list ? PT_ST_INT_LIST : PT_ST_INT;
    else if (!strcmp(type, "float")) a->type = list ? PT_ST_FLOAT_LIST : PT_ST_FLOAT;
    else if (!strcmp(type, "bool")) a->type = list ? PT_ST_BOOL_LIST : PT_ST_BOOL;
    else if (!strcmp(type, "Scalar") && !list) a->type = PT_ST_SCALAR;
    else if (!strcmp(type, "str") && !list) a->type = PT_ST_STR;
    else if (!strcmp(type, "ScalarType") && !list) a->type = PT_ST_DTYPE;
    else if ((!strcmp(type, "Layout") || !strcmp(type, "Device") || !strcmp(type, "MemoryFormat")) && !list)
        a->type = PT_ST_OTHER;
    else return false;
    return true;
}

bool pt_schema_parse(const char *s, pt_schema *out) {
    memset(out, 0, sizeof *out);
    char buf[1024];
    if (strlen(s) >= sizeof buf) return false;
    strcpy(buf, s);
    char *p = buf;
    while (*p) {
        /* find the end of this item: a comma outside brackets and quotes */
        char *q = p;
        int depth = 0;
        char quote = 0;
        for (; *q; q++) {
            if (quote) { if (*q == quote) quote = 0; continue; }
            if (*q == '"' || *q == '\'') quote = *q;
            else if (*q == '[' || *q == '(') depth++;
            else if (*q == ']' || *q == ')') depth--;
            else if (*q == ',' && depth == 0) break;
        }
        bool last = *q == 0;
        *q = 0;
        trim(p);
        if (strcmp(p, "*") != 0 && *p) {
            if (out->nargs >= PT_MAX_SCHEMA_ARGS) return false;
            if (!parse_item(p, &out->args[out->nargs])) return false;
            out->nargs++;
        }
        if (last) break;
        p = q + 1;
    }
    return true;
}

/* ---- default arguments -------------------------------------------------- */

static pt_item lit_i(int64_t i) { return (pt_item){-1, i, (double)i}; }
static pt_item lit_f(double f) { return (pt_item){-1, 0, f}; }

static petrel_status set_items(pt_arg *a, pt_arg_kind k, int32_t n, pt_err *err) {
    a->kind = k;
    a->n = n;
    a->items = pt_calloc(n ? (size_t)n : 1, sizeof *a->items);
    return a->items ? PETREL_OK : pt_fail(err, PETREL_ERR_NOMEM, "out of memory");
}

/* Build an argument from a schema default ("None", "1", "[0,1]", "'none'"). */
petrel_status pt_arg_default(const pt_schema_arg *sa, pt_arg *a, const char *where, pt_err *err) {
    const char *d = sa->defval;
    if (!strcmp(d, "None")) { a->kind = PT_ARG_NONE; return PETREL_OK; }
    switch (sa->type) {
    case PT_ST_INT:
    case PT_ST_INT_LIST:
    case PT_ST_FLOAT:
    case PT_ST_SCALAR:
    case PT_ST_BOOL: {
        if (!strcmp(d, "True") || !strcmp(d, "False")) {
            PT_TRY(set_items(a, PT_ARG_BOOL, 1, err));
            a->items[0] = lit_i(!strcmp(d, "True"));
            return PETREL_OK;
        }
        if (d[0] == '[') {
            int64_t vals[PETREL_MAX_RANK];
            int n = 0;
            const char *s = d + 1;
            while (*s && *s != ']') {
                char *end;
                long long x = strtoll(s, &end, 10);
                if (end == s || n == PETREL_MAX_RANK) return pt_fail(err, PETREL_ERR_FORMAT, "%s: bad default '%s'", where, d);
                vals[n++] = x;
                s = end;
                while (*s == ',' || *s == ' ') s++;
            }
            PT_TRY(set_items(a, PT_ARG_INTS, n, err));
            for (int i = 0; i < n; i++) a->items[i] = lit_i(vals[i]);
            return PETREL_OK;
        }
        char *end;
        bool is_int = !strpbrk(d, ".eE") && sa->type != PT_ST_FLOAT;
        if (is_int) {
            long long x = strtoll(d, &end, 10);
            if (*end) return pt_fail(err, PETREL_ERR_FORMAT, "%s: bad default '%s'", where, d);
            PT_TRY(set_items(a, sa->type == PT_ST_INT_LIST ? PT_ARG_INTS : PT_ARG_INT, 1, err));
            a->items[0] = lit_i(x);
        } else {
            double x = strtod(d, &end);
            if (*end) return pt_fail(err, PETREL_ERR_FORMAT, "%s: bad default '%s'", where, d);
            PT_TRY(set_items(a, PT_ARG_FLOAT, 1, err));
            a->items[0] = lit_f(x);
        }
        return PETREL_OK;
    }
    case PT_ST_STR: {
        size_t n = strlen(d);
        if (n < 2) return pt_fail(err, PETREL_ERR_FORMAT, "%s: bad default '%s'", where, d);
        a->kind = PT_ARG_STRING;
        a->str = pt_malloc(n - 1);
        if (!a->str) return pt_fail(err, PETREL_ERR_NOMEM, "out of memory");
        memcpy(a->str, d + 1, n - 2);
        a->str[n - 2] = 0;
        return PETREL_OK;
    }
    case PT_ST_OTHER: a->kind = PT_ARG_OTHER; return PETREL_OK;
    case PT_ST_TENSOR_LIST:
    case PT_ST_OPT_TENSOR_LIST:
    case PT_ST_FLOAT_LIST:
    case PT_ST_BOOL_LIST:
        if (!strcmp(d, "[]")) return set_items(a, sa->type == PT_ST_FLOAT_LIST ? PT_ARG_FLOATS : sa->type == PT_ST_BOOL_LIST ? PT_ARG_BOOLS : PT_ARG_TENSORS, 0, err);
        break;
    default: break;
    }
    return pt_fail(err, PETREL_ERR_FORMAT, "%s: unsupported default '%s'", where, d);
}
