#!/usr/bin/env bash
# CLI contract on bad input: every case must exit 1 with a one-line
# "petrel: ..." message on stderr, never a signal, never an output file.
set -u
petrel=$1
fixtures=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
model=$(ls -d "$fixtures"/*/ 2>/dev/null | head -1)
model=${model%/}

expect_fail() {
    local what=$1; shift
    rm -f "$tmp/out.safetensors"
    "$@" >"$tmp/stdout" 2>"$tmp/stderr"
    local rc=$?
    local lines
    lines=$(wc -l <"$tmp/stderr")
    if [ $rc -ne 1 ] || [ "$lines" -ne 1 ] || ! grep -q '^petrel: ' "$tmp/stderr" || [ -e "$tmp/out.safetensors" ]; then
        echo "FAIL $what: rc=$rc, stderr:"; cat "$tmp/stderr"; fail=1
    else
        echo "ok   $what: $(cat "$tmp/stderr")"
    fi
}

expect_fail "no command" "$petrel" bogus
expect_fail "run without program" "$petrel" run
expect_fail "unknown flag" "$petrel" run x.pt2 --frobnicate
expect_fail "flag without value" "$petrel" run x.pt2 --inputs
expect_fail "unpaired inputs" "$petrel" run x.pt2 --inputs a.safetensors
expect_fail "missing program" "$petrel" run "$tmp/nope.pt2" --inputs a --outputs "$tmp/out.safetensors"
expect_fail "bad backend" "$petrel" run "$model/model.pt2" --backend tpu --inputs a --outputs "$tmp/out.safetensors"
echo "not a zip" >"$tmp/text.pt2"
expect_fail "not a zip" "$petrel" run "$tmp/text.pt2" --inputs "$model/step0.in.safetensors" --outputs "$tmp/out.safetensors"
if [ -n "$model" ]; then
    size=$(stat -c %s "$model/model.pt2")
    head -c $((size / 2)) "$model/model.pt2" >"$tmp/trunc.pt2"
    expect_fail "truncated pt2" "$petrel" run "$tmp/trunc.pt2" --inputs "$model/step0.in.safetensors" --outputs "$tmp/out.safetensors"
    expect_fail "missing inputs file" "$petrel" run "$model/model.pt2" --inputs "$tmp/none.safetensors" --outputs "$tmp/out.safetensors"
    expect_fail "inputs not safetensors" "$petrel" run "$model/model.pt2" --inputs "$tmp/text.pt2" --outputs "$tmp/out.safetensors"
    expect_fail "inputs of another model" "$petrel" run "$model/model.pt2" --inputs "$fixtures/llama_export/step0.in.safetensors" \
        --outputs "$tmp/out.safetensors"
    grep -q "step0.in.safetensors: missing input '" "$tmp/stderr" || { echo "FAIL inputs of another model: $(cat "$tmp/stderr")"; fail=1; }
    expect_fail "inspect truncated" "$petrel" inspect "$tmp/trunc.pt2"
    expect_fail "compile without -o" "$petrel" compile "$model/model.pt2"
    expect_fail "compile truncated" "$petrel" compile "$tmp/trunc.pt2" -o "$tmp/out.safetensors"
    expect_fail "compile bad backend" "$petrel" compile "$model/model.pt2" -o "$tmp/out.safetensors" --backend tpu
    llm=$fixtures/llama_export/model.pt2
    for q in int5 int4:gs=48 int4:asym nvfp4:sym int4: "" int4:sym:sym int4:gs=64:gs=32; do
        expect_fail "compile --quant '$q'" "$petrel" compile "$llm" -o "$tmp/out.safetensors" --quant "$q"
        grep -q "quantization scheme '$q'" "$tmp/stderr" || { echo "FAIL --quant '$q': $(cat "$tmp/stderr")"; fail=1; }
    done
    expect_fail "compile --dtype int4" "$petrel" compile "$llm" -o "$tmp/out.safetensors" --dtype int4
    grep -q -- "--dtype 'int4': expected fp32, fp16 or bf16" "$tmp/stderr" || { echo "FAIL --dtype int4: $(cat "$tmp/stderr")"; fail=1; }
    expect_fail "compile --dtype without a value" "$petrel" compile "$llm" -o "$tmp/out.safetensors" --dtype
    expect_fail "compile --dtype of a program mixing bf16 and fp16" "$petrel" compile "$fixtures/bf16_to_half_export/model.pt2" -o "$tmp/out.safetensors" --dtype fp16
    expect_fail "compile --quant without a value" "$petrel" compile "$llm" -o "$tmp/out.safetensors" --quant
    expect_fail "compile --quant-skip without a value" "$petrel" compile "$llm" -o "$tmp/out.safetensors" --quant int4 --quant-skip
    expect_fail "compile --quant-embedding without --quant" "$petrel" compile "$llm" -o "$tmp/out.safetensors" --quant-embedding
    expect_fail "compile --quant-skip without --quant" "$petrel" compile "$llm" -o "$tmp/out.safetensors" --quant-skip '*'
    "$petrel" compile "$llm" -o "$tmp/q.petrel" --quant int4:gs=64 --quant-skip '*lm_head*' >"$tmp/stdout" 2>&1 || { echo "FAIL compile --quant"; fail=1; }
    grep -q "quantized (int4:gs=64): 2 weights" "$tmp/stdout" && grep -q "kept float: 13 weights" "$tmp/stdout" ||
        { echo "FAIL compile --quant summary:"; cat "$tmp/stdout"; fail=1; }
    "$petrel" inspect "$tmp/q.petrel" | grep -q "int4  g64 .*model.model.layers.1.mlp.down_proj.weight" ||
        { echo "FAIL inspect of a quantized program"; fail=1; }
    "$petrel" compile "$model/model.pt2" -o "$tmp/m.petrel" >/dev/null 2>&1 || { echo "FAIL compile"; fail=1; }
    psize=$(stat -c %s "$tmp/m.petrel")
    head -c $((psize - 100)) "$tmp/m.petrel" >"$tmp/trunc.petrel"
    expect_fail "truncated program" "$petrel" run "$tmp/trunc.petrel" --inputs "$model/step0.in.safetensors" --outputs "$tmp/out.safetensors"
    cp "$tmp/m.petrel" "$tmp/flip.petrel"
    printf '\x55' | dd of="$tmp/flip.petrel" bs=1 seek=200 conv=notrunc status=none
    expect_fail "corrupted program" "$petrel" run "$tmp/flip.petrel" --inputs "$model/step0.in.safetensors" --outputs "$tmp/out.safetensors"
    expect_fail "tokenize without tokenizer" "$petrel" tokenize
    expect_fail "tokenize missing file" "$petrel" tokenize --tokenizer "$tmp/none.json"
    # flipped bytes at many positions: each must fail cleanly or succeed, never crash
    for off in 0 10 30 100 $((size - 22)) $((size - 10)) $((size - 60)) $((size / 3)); do
        cp "$model/model.pt2" "$tmp/flip.pt2"
        printf '\xff' | dd of="$tmp/flip.pt2" bs=1 seek="$off" conv=notrunc status=none
        "$petrel" inspect "$tmp/flip.pt2" >/dev/null 2>"$tmp/stderr"
        rc=$?
        if [ $rc -ne 0 ] && [ $rc -ne 1 ]; then echo "FAIL flipped byte at $off: rc=$rc"; fail=1; fi
    done
fi
exit $fail
