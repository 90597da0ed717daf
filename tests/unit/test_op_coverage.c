/*
** test_op_coverage.c -- coverage gate: every op in ops.def must appear in
** at least one fixture graph (so it is checked against torch), or be listed
** with a reason in tests/fixtures/uncovered.txt.  Adding an op without a
** test case fails here.  The fused ops ("petrel." targets) never occur in
** an export: the compiler makes them, test_fusion checks it does, and the
** compiled LLM fixtures check their kernels against torch.
*/
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "core/ops.h"
#include "pt2/zip.h"

static bool seen[PETREL_OP_COUNT];

static void walk_graph(json_t *graph) {
    size_t i, k;
    json_t *node, *in;
    json_array_foreach(json_object_get(graph, "nodes"), i, node) {
        const char *t = json_string_value(json_object_get(node, "target"));
        int op = t ? pt_op_find(t) : -1;
        if (op >= 0) seen[op] = true;
        json_array_foreach(json_object_get(node, "inputs"), k, in) {
            json_t *g = json_object_get(json_object_get(in, "arg"), "as_graph");
            if (g) walk_graph(json_object_get(g, "graph"));
        }
    }
}

static int scan_fixture(const char *path) {
    pz_archive z;
    pt_err err;
    if (pz_open(&z, path, &err) != PETREL_OK) {
        printf("%s: %s\n", path, err.msg);
        return 1;
    }
    int rc = 1;
    for (int32_t i = 0; i < z.n; i++) {
        const char *nm = z.entries[i].name;
        size_t n = strlen(nm);
        if (n < 17 || strcmp(nm + n - 17, "models/model.json") != 0) continue;
        json_t *j = json_loadb((const char *)z.entries[i].data, (size_t)z.entries[i].size, 0, NULL);
        if (j) {
            walk_graph(json_object_get(json_object_get(j, "graph_module"), "graph"));
            json_decref(j);
            rc = 0;
        }
    }
    pz_close(&z);
    return rc;
}

int main(void) {
    const char *dir = "tests/fixtures";
    DIR *d = opendir(dir);
    if (!d) {
        printf("cannot open %s\n", dir);
        return 1;
    }
    int bad = 0, n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s/model.pt2", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        fclose(f);
        bad += scan_fixture(path);
        n++;
    }
    closedir(d);
    /* ops exempted with a reason, one "<target>  # reason" per line */
    bool exempt[PETREL_OP_COUNT] = {0};
    FILE *u = fopen("tests/fixtures/uncovered.txt", "r");
    char line[512];
    while (u && fgets(line, sizeof line, u)) {
        char t[256];
        if (line[0] == '#' || sscanf(line, "%255s", t) != 1) continue;
        int op = pt_op_find(t);
        if (op >= 0) exempt[op] = true;
        else if (strchr(t, '.')) printf("uncovered.txt lists '%s', which is not in ops.def\n", t), bad++;
    }
    if (u) fclose(u);
    int missing = 0;
    for (int i = 0; i < PETREL_OP_COUNT; i++) {
        if (seen[i] || exempt[i] || !strncmp(pt_op_table[i].target, "petrel.", 7)) continue;
        printf("op %s has no fixture (add a case to tools/fixtures/make_fixtures.py)\n", pt_op_table[i].target);
        missing++;
    }
    printf("test_op_coverage: %d fixtures, %d ops, %d without a test: %s\n", n, PETREL_OP_COUNT, missing,
           missing || bad ? "FAIL" : "ok");
    return missing || bad ? 1 : 0;
}
