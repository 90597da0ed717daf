/*
** match.c -- the def-use index and the match checks and rewrite the
** graph rewrites share (see match.h).  Layer: compiler.
*/
#include "match.h"

void pc_fz_free(fz *f) {
    pt_free(f->def);
    pt_free(f->ustart);
    pt_free(f->users);
    pt_free(f->result);
    pt_free(f->nmut);
    memset(f, 0, sizeof *f);
}

bool pc_fz_build(fz *f, pt_graph *g) {
    memset(f, 0, sizeof *f);
    f->g = g;
    size_t nv = (size_t)(g->nvalues ? g->nvalues : 1);
    f->def = pt_malloc(nv * sizeof *f->def);
    f->ustart = pt_calloc(nv + 1, sizeof *f->ustart);
    f->result = pt_calloc(nv, sizeof *f->result);
    f->nmut = pt_calloc(nv, sizeof *f->nmut);
    if (!f->def || !f->ustart || !f->result || !f->nmut) goto fail;
    for (int32_t v = 0; v < g->nvalues; v++) f->def[v] = -1;
    int32_t total = 0;
    for (int32_t i = 0; i < g->nnodes; i++) {
        const pt_node *n = &g->nodes[i];
        for (int k = 0; k < n->nout; k++)
            if (n->outs[k] >= 0) f->def[n->outs[k]] = i;
        for (int a = 0; a < n->nargs; a++)
            for (int k = 0; k < n->args[a].n; k++)
                if (n->args[a].items[k].vid >= 0) f->ustart[n->args[a].items[k].vid + 1]++, total++;
    }
    for (int32_t v = 0; v < g->nvalues; v++) f->ustart[v + 1] += f->ustart[v];
    f->users = pt_malloc((size_t)(total ? total : 1) * sizeof *f->users);
    int32_t *fill = pt_malloc(nv * sizeof *fill);
    if (!f->users || !fill) {
        pt_free(fill);
        goto fail;
    }
    memcpy(fill, f->ustart, (size_t)g->nvalues * sizeof *fill);
    for (int32_t i = 0; i < g->nnodes; i++) {
        const pt_node *n = &g->nodes[i];
        for (int a = 0; a < n->nargs; a++)
            for (int k = 0; k < n->args[a].n; k++)
                if (n->args[a].items[k].vid >= 0) f->users[fill[n->args[a].items[k].vid]++] = i;
    }
    pt_free(fill);
    for (int32_t i = 0; i < g->noutputs; i++)
        if (g->outputs[i].item.vid >= 0) f->result[g->outputs[i].item.vid] = true;
    for (int32_t i = 0; i < g->nmuts; i++) f->nmut[g->muts[i].value_vid]++;
    return true;
fail:
    pc_fz_free(f);
    return false;
}

/* Is v one of the fused node's own results (m->outs)? */
static bool match_out(const fz_match *m, int32_t v) {
    for (int k = 0; k < m->nouts; k++)
        if (m->outs[k] == v) return true;
    return false;
}

/* Every value a matched node (other than the final one) produces is read
 * only by matched nodes and is no graph result (except the mutations the
 * fused op takes over, and its own results `outs`, made no earlier than
 * the final node), and no unmatched node between the first and the final
 * one writes memory (the fused node reads its inputs later than the
 * matched nodes did); for a fold or a match with `late` inputs, none
 * writes the memory of those values. */
bool pc_match_closed(const fz *f, const fz_match *m) {
    if (m->overflow || m->final < 0) return false;
    const pt_node *fin = node(f, m->final);
    /* a fold keeps the final node's op and all its outputs (linear_n's) */
    if (fin->nout < 1 || fin->outs[0] < 0 || (fin->nout != 1 && fin->op != m->op)) return false;
    if (m->nouts && !match_out(m, fin->outs[0])) return false;
    int32_t first = m->final;
    for (int k = 0; k < m->n; k++) {
        int32_t i = m->nodes[k];
        if (i < first) first = i;
        if (i == m->final) continue;
        const pt_node *n = &f->g->nodes[i];
        for (int o = 0; o < n->nout; o++) {
            int32_t v = n->outs[o];
            if (v < 0) continue;
            if (match_out(m, v)) {
                if (i < m->final) /* made earlier: no reader may precede the fused node */
                    for (int32_t u = f->ustart[v]; u < f->ustart[v + 1]; u++)
                        if (!taken(m, f->users[u])) return false;
                continue;
            }
            if (f->result[v]) return false;
            if (f->nmut[v]) {
                bool dropped = false;
                for (int d = 0; d < m->ndrop; d++) dropped |= m->drop_muts[d] == v;
                if (!dropped || f->nmut[v] != 1) return false;
            }
            for (int32_t u = f->ustart[v]; u < f->ustart[v + 1]; u++)
                if (!taken(m, f->users[u])) return false;
        }
    }
    for (int32_t i = first + 1; i < m->final; i++) {
        if (taken(m, i)) continue;
        const pt_node *n = &f->g->nodes[i];
        if (!(pt_op_table[n->op].flags & (PT_OPF_INPLACE | PT_OPF_STATE))) continue;
        if (!m->nlate) return false;
        for (int k = 0; k < m->nlate; k++)
            if (may_write(f, n, m->late[k])) return false;
    }
    return true;
}

/* Replace the final node by the fused op, drop the other matched nodes and
 * the buffer mutations the fused op performs itself.  False (graph
 * unchanged) when memory runs out. */
bool pc_match_apply(pt_graph *g, fz_match *m) {
    bool *dead = pt_calloc((size_t)g->nnodes, sizeof *dead);
    pt_arg *args = pt_calloc((size_t)m->nargs, sizeof *args);
    int32_t *outs = m->nouts ? pt_malloc((size_t)m->nouts * sizeof *outs) : NULL;
    if (!dead || !args || (m->nouts && !outs) || m->oom) {
        pt_free(dead);
        pt_free(args);
        pt_free(outs);
        return false;
    }
    pt_node *fin = &g->nodes[m->final];
    if (outs) {
        memcpy(outs, m->outs, (size_t)m->nouts * sizeof *outs);
        pt_free(fin->outs);
        fin->outs = outs;
        fin->nout = m->nouts;
    }
    for (int a = 0; a < fin->nargs; a++) {
        pt_free(fin->args[a].items);
        pt_free(fin->args[a].str);
    }
    pt_free(fin->args);
    memcpy(args, m->args, (size_t)m->nargs * sizeof *args);
    fin->op = m->op;
    fin->args = args;
    fin->nargs = m->nargs;
    m->nargs = 0; /* the node owns the items now */
    int32_t w = 0;
    for (int32_t i = 0; i < g->nmuts; i++) {
        bool drop = false;
        for (int d = 0; d < m->ndrop; d++) drop |= g->muts[i].value_vid == m->drop_muts[d];
        if (!drop) g->muts[w++] = g->muts[i];
    }
    g->nmuts = w;
    for (int k = 0; k < m->n; k++)
        if (m->nodes[k] != m->final) dead[m->nodes[k]] = true;
    pc_remove_nodes(g, dead);
    pt_free(dead);
    return true;
}

/* Apply `match` at every anchor, rescanning after each change; returns the
 * number of matches applied (those made before memory ran out). */
int pc_match_all(pt_graph *g, fz_matcher match) {
    int done = 0;
    fz f;
    if (!pc_fz_build(&f, g)) return 0;
    for (int32_t i = 0; i < g->nnodes; i++) {
        fz_match m;
        memset(&m, 0, sizeof m);
        m.final = -1;
        bool ok = match(&f, i, &m) && pc_match_closed(&f, &m) && pc_match_apply(g, &m);
        match_free(&m);
        if (!ok) continue;
        done++;
        /* nodes moved: index again and rescan */
        pc_fz_free(&f);
        if (!pc_fz_build(&f, g)) return done;
        i = -1;
    }
    pc_fz_free(&f);
    return done;
}
