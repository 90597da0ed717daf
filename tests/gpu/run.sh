#!/usr/bin/env bash
# GPU test suite, for a machine with an NVIDIA GPU (sm_90 build; newer GPUs
# run the PTX).  Builds petrel with the CUDA backend and checks, against the
# torch references of the fixture suite (relative L2 within each fixture's
# dtype tolerance: fp32 1e-5, fp16 1e-3, bf16 1e-2; integers exactly):
#   1. every fixture placed with --backend cuda, from the .pt2;
#   2. every fixture compiled with --backend cuda, from the .petrel;
#   3. the tiny LLM fixtures: greedy ids equal Hugging Face's, on CUDA;
#      the output top-k of sampling on CUDA equals a sort of the logits;
#      greedy ids across the executor's ranges of positions (a tiny
#      random Llama past position 512) equal the CPU's (needs torch:
#      PYTHON, default the pinned environment of scripts/setup_venv.sh);
#   4. the partition of the LLM fixtures (no CPU fallback expected);
#   5. `petrel bench --profile` on the tiny Llama (profiling on the device);
#   6. tests/gpu/bench_kernels.cu: the decode kernels (norm, rope, cached
#      attention, head dims up to 256) and the prefill attention (the
#      tensor-core and the general kernel) against an fp64 host reference,
#      and the output top-k of
#      sampling against a host sort, with their timings; tests/gpu/
#      bench_gemv.cu: the bf16 decode GEMVs at Llama-3.2-1B's,
#      Qwen3-1.7B's and Qwen3-0.6B's shapes against a host reference,
#      their timings and share of the copy bandwidth;
#   7. quantized weights: the LLM export fixtures (and Whisper's, whose
#      encoder-length products take the prefill path and whose linears
#      have biases) compiled with each scheme for CUDA, run there and on
#      the CPU, outputs compared (the CPU kernels are the oracle; relative
#      L2 within the fixture's tolerance, at least 1e-3),
#      the partition of the quantized LLM fixtures, greedy ids of the
#      tiny LLMs quantized int4, int8 and int2 on CUDA vs the CPU (the
#      first 8 equal), and the logits of a prefill and 8 decode steps of
#      three random LLMs of hidden size 1024 (the decode paths for K a
#      multiple of 512-2048 the tiny ones cannot reach; Gemma 3's head dim
#      of 256 and sliding window), bf16 and each
#      scheme, on CUDA vs the CPU (tests/gpu/check_llm_wide.py; needs torch
#      as in 3.);
#   8. tests/gpu/bench_expert.cu: the MoE experts' kernels (row and grouped
#      forms, float and every format) against a host reference, the
#      router's topk against a host sort, and their timings;
#   9. tests/gpu/bench_quant.cu: the quantized GEMV, dequantization and
#      embedding kernels against a host reference, and the GEMV's timings
#      on Llama-3.2-1B decode shapes (int4, int8 and int2) and Qwen3-0.6B's
#      (int4 and int8), and the prefill's panel dequantization of a
#      Llama-3.2-1B weight;
#  10. tests/gpu/bench_qkv_attn.cu: petrel.qkv_attn's decode kernel (a
#      layer's int4 q/k/v projections and attention in one launch) against
#      the GEMV and attention launches it replaces (shapes, formats, dtypes,
#      positions, masks), its time in a Llama-3.2-1B layer, and the
#      layer's four kernels each repeated alone (what switching costs).
# usage: tests/gpu/run.sh [BUILD_DIR]   (default build-cuda, shared with
# bench/gpu.sh); exit 1 on any failure.  LOG_DIR=dir keeps the full logs.
set -u
cd "$(dirname "$0")/../.."
build=${1:-build-cuda}
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log=${LOG_DIR:-$tmp}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPETREL_CUDA=ON >/dev/null || exit 1
cmake --build "$build" -j "$(nproc)" -- --no-print-directory >"$log/build.txt" 2>&1 || { tail -40 "$log/build.txt"; exit 1; }
petrel=$build/petrel

echo "== fixtures on cuda (from .pt2)"
"$build/tests/test_fixtures" tests/fixtures --backend cuda >"$log/fixtures_cuda.txt" 2>&1 || fail=1
tail -60 "$log/fixtures_cuda.txt"

echo "== fixtures on cuda (compiled)"
mkdir -p "$tmp/compiled"
"$build/tests/test_fixtures" tests/fixtures --backend cuda --compile "$tmp/compiled" >"$log/fixtures_cuda_compiled.txt" 2>&1 || fail=1
tail -60 "$log/fixtures_cuda_compiled.txt"

echo "== LLM fixtures: greedy ids on cuda vs Hugging Face"
python3 tests/gpu/check_llm.py "$petrel" tests/fixtures/llm || fail=1

echo "== greedy ids across the ranges of positions, cuda vs cpu"
python3 tests/gpu/check_positions.py "$petrel" "${PYTHON:-$(scripts/setup_venv.sh)/bin/python}" || fail=1

echo "== output top-k on cuda (sampling's candidates) vs the downloaded logits"
"$build/tests/test_topk" --cuda || fail=1

echo "== partition of the LLM fixtures"
for m in llama qwen3; do
    "$petrel" compile tests/fixtures/llm/$m.pt2 -o "$tmp/$m.petrel" --backend cuda | sed -n '1,3p'
done

echo "== profile on cuda"
"$petrel" bench -m tests/fixtures/llm/llama.pt2 --backend cuda --prompt 8 --gen 16 --prefill 8 --profile \
    >"$log/profile.txt" 2>&1 || { fail=1; cat "$log/profile.txt"; }
sed -n '/^profile/,$p' "$log/profile.txt" | head -8

echo "== decode kernels"
k=src/backends/cuda/ops
nvcc -std=c++17 -O3 -arch=sm_90 -Iinclude -Isrc tests/gpu/bench_kernels.cu $k/norm_k.cu $k/fused_k.cu $k/sdpa_k.cu $k/argmax_k.cu \
    -o "$tmp/bench_kernels" && "$tmp/bench_kernels" >"$log/kernels.txt" 2>&1 || fail=1
grep -E "FAIL|time|CHECKS" "$log/kernels.txt"

echo "== decode GEMVs (bf16)"
nvcc -std=c++17 -O3 -arch=sm_90 -Iinclude -Isrc tests/gpu/bench_gemv.cu $k/matmul_k.cu -o "$tmp/bench_gemv" &&
    "$tmp/bench_gemv" >"$log/gemv.txt" 2>&1 || fail=1
grep -E "FAIL|time|step|CHECKS|bandwidth" "$log/gemv.txt"

echo "== quantized weights: LLM fixtures on cuda vs the cpu"
mkdir -p "$tmp/quant"
qfixtures="llama_export llama_bf16_export qwen3_export gemma3_export phi3_export whisper_export qwen3_moe_export"
for q in int8 int8:sym int4 int4:sym int2 nvfp4 "int4 --quant-embedding"; do
    # $q and $qfixtures unquoted: one scheme's words, then a list of names
    "$build/tests/test_fixtures" tests/fixtures --backend cuda --compile "$tmp/quant" --quant $q $qfixtures \
        >>"$log/fixtures_quant.txt" 2>&1 || fail=1
done
grep -E "FAIL|^fixtures" "$log/fixtures_quant.txt"
for m in llama qwen3; do
    "$petrel" compile tests/fixtures/llm/$m.pt2 -o "$tmp/$m.q.petrel" --backend cuda --quant int4 --quant-embedding |
        sed -n '2,4p'
done
for q in int4 int8 int2; do # each takes its own decode GEMV code path (4, 8, 2 bits)
    python3 tests/gpu/check_llm_quant.py "$petrel" tests/fixtures/llm $q || fail=1
done
echo "== wide random LLMs (hidden 1024): logits on cuda vs the cpu, bf16 and each scheme"
python3 tests/gpu/check_llm_wide.py "$petrel" "${PYTHON:-$(scripts/setup_venv.sh)/bin/python}" \
    bf16 int4 int4:sym int8 int2 nvfp4 || fail=1

echo "== MoE kernels (experts, both forms; the router's topk)"
nvcc -std=c++17 -O3 -arch=sm_90 -Iinclude -Isrc tests/gpu/bench_expert.cu src/core/dtype.c $k/expert_k.cu $k/index_k.cu \
    -o "$tmp/bench_expert" && "$tmp/bench_expert" >"$log/expert_kernels.txt" 2>&1 || fail=1
grep -E "FAIL|time|CHECKS" "$log/expert_kernels.txt"

echo "== quantized-weight kernels"
nvcc -std=c++17 -O3 -arch=sm_90 -Iinclude -Isrc tests/gpu/bench_quant.cu $k/quant_k.cu -o "$tmp/bench_quant" &&
    "$tmp/bench_quant" >"$log/quant_kernels.txt" 2>&1 || fail=1
grep -E "FAIL|time|CHECKS" "$log/quant_kernels.txt"

echo "== q/k/v + attention in one launch (petrel.qkv_attn)"
nvcc -std=c++17 -O3 -arch=sm_90 -Iinclude -Isrc tests/gpu/bench_qkv_attn.cu $k/qkv_attn_k.cu $k/quant_k.cu \
    $k/sdpa_k.cu -o "$tmp/bench_qkv_attn" && "$tmp/bench_qkv_attn" >"$log/qkv_attn.txt" 2>&1 || fail=1
grep -E "FAIL|layer|CHECKS" "$log/qkv_attn.txt"
exit $fail
