/*
** test_core.c -- white-box unit tests of the bottom layers: the op table and
** its schemas, half/bfloat16 conversion, symbolic size expressions, the zip
** reader on malformed input, and the failing-allocator hook.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "core/ops.h"
#include "ir/ir.h"
#include "pt2/zip.h"

#include "check.h"

static void test_op_table(void) {
    for (int i = 0; i < PETREL_OP_COUNT; i++) {
        pt_schema s;
        CHECK(pt_schema_parse(pt_op_table[i].schema, &s), "schema of %s does not parse", pt_op_table[i].target);
        CHECK(pt_op_find(pt_op_table[i].target) == i, "target %s is listed twice", pt_op_table[i].target);
        /* every default must be representable */
        for (int a = 0; a < s.nargs; a++)
            CHECK(s.args[a].name[0] != 0, "%s: unnamed argument %d", pt_op_table[i].target, a);
    }
    pt_schema s;
    CHECK(pt_schema_parse("Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None", &s), "parse");
    CHECK(s.nargs == 4 && s.args[1].type == PT_ST_INT_LIST && s.args[1].optional && s.args[1].list_len == 1,
          "int[1]? parsed wrong");
    CHECK(s.args[2].has_default && !strcmp(s.args[2].defval, "False"), "bool default parsed wrong");
    CHECK(pt_schema_parse("Tensor self, Tensor?[] indices, str mode=\"constant\"", &s) &&
              s.args[1].type == PT_ST_OPT_TENSOR_LIST && !strcmp(s.args[2].defval, "\"constant\""),
          "Tensor?[] / string default parsed wrong");
    CHECK(!pt_schema_parse("Blob x", &s), "unknown type accepted");
    CHECK(pt_op_find("torch.ops.aten.add.Tensor") == PETREL_OP_ADD_TENSOR, "lookup with prefix");
    CHECK(pt_op_find("aten.no_such_op.default") == -1, "unknown op found");
}

static void test_half(void) {
    /* IEEE 754 binary16 bit patterns (from the standard) */
    struct { float f; uint16_t h; } cases[] = {
        {1.0f, 0x3c00}, {-2.0f, 0xc000}, {65504.0f, 0x7bff}, {0.5f, 0x3800},
        {5.9604644775390625e-8f, 0x0001}, {6.103515625e-05f, 0x0400}, {0.0f, 0x0000},
        {1e6f, 0x7c00}, {-INFINITY, 0xfc00}, {0.333251953125f, 0x3555},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(pt_f32_to_f16(cases[i].f) == cases[i].h, "f16(%g) = 0x%04x, want 0x%04x", cases[i].f,
              pt_f32_to_f16(cases[i].f), cases[i].h);
        if (cases[i].h != 0x7c00 || isinf(cases[i].f))
            CHECK(pt_f16_to_f32(cases[i].h) == cases[i].f || cases[i].f == 1e6f, "f16 0x%04x decodes to %g",
                  cases[i].h, pt_f16_to_f32(cases[i].h));
    }
    /* round half to even: 1 + 2^-11 lies between 1 and 1+2^-10 -> 1.0 */
    CHECK(pt_f32_to_f16(1.0f + 0.00048828125f) == 0x3c00, "f16 ties-to-even");
    CHECK(isnan(pt_f16_to_f32(pt_f32_to_f16(NAN))), "f16 NaN");
    /* bfloat16: upper half of the f32 pattern, rounded to nearest even */
    CHECK(pt_f32_to_bf16(1.0f) == 0x3f80, "bf16(1)");
    CHECK(pt_f32_to_bf16(1.00390625f) == 0x3f80, "bf16 tie to even (down)");
    CHECK(pt_f32_to_bf16(1.01171875f) == 0x3f82, "bf16 tie to even (up)");
    CHECK(pt_bf16_to_f32(0xc040) == -3.0f, "bf16 decode");
    /* every f16 value survives f16 -> f32 -> f16 */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* NaNs */
        uint16_t back = pt_f32_to_f16(pt_f16_to_f32((uint16_t)h));
        if (back != h) {
            CHECK(false, "f16 0x%04x round-trips to 0x%04x", h, back);
            break;
        }
    }
}

static void test_expr(void) {
    pt_graph g;
    memset(&g, 0, sizeof g);
    pt_err err;
    pt_expr *e = pt_expr_parse(&g, "Mul(Integer(2), Symbol('s27', positive=True, integer=True))", &err);
    CHECK(e != NULL, "parse Mul: %s", err.msg);
    CHECK(g.nsyms == 1 && !strcmp(g.syms[0].name, "s27"), "symbol recorded");
    int64_t sv[4] = {5, INT64_MIN, INT64_MIN, INT64_MIN}, out = 0;
    CHECK(e && pt_expr_eval(e, sv, &out) && out == 10, "2*s27 with s27=5 gave %lld", (long long)out);
    e = pt_expr_parse(&g, "FloorDiv(Add(Symbol('s27'), Integer(-1)), Integer(2))", &err);
    CHECK(e && pt_expr_eval(e, sv, &out) && out == 2, "(s27-1)//2 gave %lld", (long long)out);
    e = pt_expr_parse(&g, "CeilToInt(IntTrueDiv(Symbol('s27'), Integer(2)))", &err);
    CHECK(e && pt_expr_eval(e, sv, &out) && out == 3, "ceil(s27/2) gave %lld", (long long)out);
    e = pt_expr_parse(&g, "Mod(Symbol('s27'), Integer(3))", &err);
    CHECK(e && pt_expr_eval(e, sv, &out) && out == 2, "s27 %% 3 gave %lld", (long long)out);
    e = pt_expr_parse(&g, "Mul(Rational(1, 2), Symbol('s27'), Integer(4))", &err);
    CHECK(e && pt_expr_eval(e, sv, &out) && out == 10, "s27*4/2 gave %lld", (long long)out);
    e = pt_expr_parse(&g, "Max(Integer(1), Symbol('u0'))", &err);
    CHECK(e && !pt_expr_eval(e, sv, &out), "unknown symbol must not evaluate");
    CHECK(pt_expr_parse(&g, "Sin(Symbol('s27'))", &err) == NULL, "unsupported function accepted");
    CHECK(pt_expr_parse(&g, "Mul(Integer(2), ", &err) == NULL, "truncated expression accepted");
    CHECK(pt_expr_parse(&g, "Integer(3) junk", &err) == NULL, "trailing junk accepted");
    pt_graph_free(&g);
}

static void test_zip_garbage(void) {
    uint8_t buf[256];
    pz_archive z;
    pt_err err;
    memset(buf, 0, sizeof buf);
    CHECK(pz_open_memory(&z, buf, sizeof buf, &err) != PETREL_OK, "zeros accepted as zip");
    pz_close(&z);
    /* an EOCD claiming a directory past the end */
    memset(buf, 0, sizeof buf);
    uint8_t *e = buf + sizeof buf - 22;
    e[0] = 0x50; e[1] = 0x4b; e[2] = 0x05; e[3] = 0x06;
    e[10] = 1;             /* one entry */
    e[12] = 46;            /* directory size */
    e[16] = 0xf0; e[17] = 0xff; /* offset 65520 */
    CHECK(pz_open_memory(&z, buf, sizeof buf, &err) == PETREL_ERR_FORMAT, "bad directory offset accepted");
    pz_close(&z);
    CHECK(pz_crc32((const uint8_t *)"123456789", 9) == 0xCBF43926u, "crc32 check value");
}

static void test_failing_alloc(void) {
    pt_alloc_fail_at(1);
    void *p = pt_malloc(16);
    CHECK(p == NULL, "first allocation should fail");
    void *q = pt_malloc(16);
    CHECK(q != NULL, "second allocation should succeed");
    pt_free(q);
    pt_alloc_fail_at(0);
}

int main(void) {
    test_op_table();
    test_half();
    test_expr();
    test_zip_garbage();
    test_failing_alloc();
    printf("test_core: %s (%d failures)\n", failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
