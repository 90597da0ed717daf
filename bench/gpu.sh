#!/usr/bin/env bash
# bench/gpu.sh -- the GPU benchmark table (issue #7) on a CUDA machine with
# torch >= 2.9 and transformers: for each model shape (random weights, real
# configs: bench/models.py) export with python/petrel_export.py (bf16, KV
# cache 2048, chunks up to 2048), compile with `petrel compile --backend
# cuda` (bf16, and int8/int4 with --quant), run `petrel bench
# --json` (peak memory sampled with nvidia-smi) and bench/torch_bench.py
# (eager + torch.compile), and print the markdown table of every result in
# the work directory (bench/report.py).
#
#   bench/gpu.sh [options] [MODEL...]        (default: all six models)
#     -o FILE        also write the table to FILE
#     --record       record the table in bench/RESULTS.md (newest first)
#     --work DIR     models and JSON results (default build-cuda/bench); results of
#                    earlier invocations stay, so per-model runs build one table
#     --parts LIST   any of build,petrel,torch (default all three); build alone
#                    only builds
#     --keep-models  keep the exported/compiled model files (large)
#     --fresh        forget earlier results in the work directory first
#
# One model per invocation should stay within 10 minutes on an H100 (on an
# H200: Qwen3-0.6B 219 s, Qwen3-1.7B 274 s, Qwen3-4B 390 s, Phi-4-mini
# 376 s, every part); see bench/README.md.
# Environment: PYTHON (default python3), CUDA_GPU (nvidia-smi index, default
# 0), BENCH_ARGS and TORCH_ARGS (extra flags for `petrel bench` and
# torch_bench.py, e.g. "--reps 5" for both), BENCH_FORMATS (weight formats to
# compile and measure, default "bf16 int8 int4"), BENCH_COMMIT (the commit to
# name in the table when the tree has no .git).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
gpu=${CUDA_GPU:-0}
work=$top/build-cuda/bench
out="" record=0 parts="build,petrel,torch" keep=0 fresh=0
models=()
while [ $# -gt 0 ]; do
    case $1 in
        -o) out=$2; shift 2 ;;
        --record) record=1; shift ;;
        --work) work=$2; shift 2 ;;
        --parts) parts=$2; shift 2 ;;
        --keep-models) keep=1; shift ;;
        --fresh) fresh=1; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "gpu.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
        *) models+=("$1"); shift ;;
    esac
done
has() { [[ ",$parts," == *",$1,"* ]]; }
say() { echo "gpu.sh: $*" >&2; }
known=$("$py" "$top/bench/models.py" list)
[ ${#models[@]} -gt 0 ] || mapfile -t models <<<"$known"
for m in "${models[@]}"; do
    grep -qx -- "$m" <<<"$known" || { echo "gpu.sh: unknown model '$m' (have: ${known//$'\n'/ })" >&2; exit 2; }
done

# ---- build -------------------------------------------------------------------------
petrel=$top/build-cuda/petrel
if has build; then
    say "building petrel with CUDA (build-cuda/)"
    cmake -S "$top" -B "$top/build-cuda" -DPETREL_CUDA=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$top/build-cuda" -j "$(nproc)" -- --no-print-directory >/dev/null
    [ "$parts" = build ] && exit 0
fi
if has petrel && [ ! -x "$petrel" ]; then
    echo "gpu.sh: $petrel is missing (run with --parts build first)" >&2
    exit 1
fi
"$py" -c 'import torch, transformers, sys; sys.exit(0 if torch.cuda.is_available() else 1)' ||
    { echo "gpu.sh: $py needs torch with CUDA and transformers (set PYTHON)" >&2; exit 1; }

# ---- the run's environment -----------------------------------------------------------
[ $fresh -eq 1 ] && rm -rf "$work"
mkdir -p "$work"
if [ -n "${BENCH_COMMIT:-}" ]; then
    commit=$BENCH_COMMIT   # a copy of the tree without .git
else
    commit=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)
    [ -n "$(git -C "$top" status --porcelain --untracked-files=no 2>/dev/null)" ] && commit="$commit (+ uncommitted changes)"
fi
IFS=, read -r gpu_name driver < <(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader -i "$gpu" | sed 's/, /,/')
if [ ! -f "$work/bw.json" ]; then
    say "measuring the device-to-device copy bandwidth"
    "$py" "$top/bench/torch_bench.py" --bandwidth-only --json "$work/bw.json"
fi
GPU_NAME=$gpu_name DRIVER=$driver COMMIT=$commit "$py" - "$work" <<'EOF'
import datetime, json, os, sys
w = sys.argv[1]
bw = json.load(open(os.path.join(w, "bw.json")))
env = {"kind": "gpu", "date": datetime.date.today().isoformat(), "machine": os.environ["GPU_NAME"],
       "driver": os.environ["DRIVER"], "commit": os.environ["COMMIT"],
       "bw_bytes_s": bw["copy_bw_bytes_s"], "bw_what": bw["what"]}
json.dump(env, open(os.path.join(w, "env.json"), "w"), indent=1)
EOF
tok=$work/tokenizer.json   # any tokenizer will do: the prompts are random ids
[ -f "$tok" ] || "$py" -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]);
open(sys.argv[2], "wb").write(z.read(next(n for n in z.namelist() if n.endswith("extra/tokenizer.json"))))' \
    "$top/tests/fixtures/llm/llama.pt2" "$tok"
quant=0
has petrel && "$petrel" help 2>&1 | grep -q -- '--quant' && quant=1

# Run `petrel bench` on one program, sampling the GPU's used memory meanwhile:
# petrel-M-F.json, petrel-M-F.mem (peak MiB above the level before), or
# skip-M-F.txt with the error.
bench_petrel() {
    local m=$1 f=$2 prog=$3 base peak
    base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$gpu")
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$gpu" -lms 20 >"$work/mem.log" &
    local smi=$!
    # shellcheck disable=SC2086
    if "$petrel" bench -m "$prog" --backend cuda --json ${BENCH_ARGS:-} >"$work/petrel-$m-$f.json" 2>"$work/err.txt"; then
        rm -f "$work/skip-$m-$f.txt"
    else
        echo "failed: $(head -c 200 "$work/err.txt")" >"$work/skip-$m-$f.txt"
        rm -f "$work/petrel-$m-$f.json"
    fi
    kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null || true
    peak=$(sort -n "$work/mem.log" | tail -1)
    rm -f "$work/petrel-$m-$f.mem"
    [ -n "$peak" ] && echo $((peak - base)) >"$work/petrel-$m-$f.mem"
    say "$m $f: $(cat "$work/skip-$m-$f.txt" 2>/dev/null || echo measured)"
}

# ---- per model -----------------------------------------------------------------------
for m in "${models[@]}"; do
    t0=$(date +%s)
    if has petrel; then
        cfg=$work/$m.config.json
        "$py" "$top/bench/models.py" config "$m" "$cfg"
        pt2=$work/$m-bf16.pt2
        say "$m: export (random weights, bf16)"
        exported=1
        "$py" "$top/python/petrel_export.py" --config "$cfg" --random-weights --seed 0 --tokenizer "$tok" \
            --dtype bfloat16 --max-cache-len 2048 --max-chunk 2048 -o "$pt2" >/dev/null 2>"$work/err.txt" || exported=0
        for f in ${BENCH_FORMATS:-bf16 int8 int4}; do
            prog=$work/$m-$f.petrel
            rm -f "$work/petrel-$m-$f.json" "$work/skip-$m-$f.txt"
            if [ $exported -eq 0 ]; then
                echo "export failed: $(tail -c 200 "$work/err.txt")" >"$work/skip-$m-$f.txt"
            elif [ $f != bf16 ] && [ $quant -eq 0 ]; then
                echo "n/a (not built yet)" >"$work/skip-$m-$f.txt"
                continue
            fi
            qflag=(); [ $f != bf16 ] && qflag=(--quant "$f")
            say "$m: compile $f"
            if ! "$petrel" compile "$pt2" -o "$prog" --backend cuda "${qflag[@]}" >/dev/null 2>"$work/err.txt"; then
                echo "compile failed: $(head -c 200 "$work/err.txt")" >"$work/skip-$m-$f.txt"
                continue
            fi
            bench_petrel "$m" "$f" "$prog"
            [ $keep -eq 1 ] || rm -f "$prog"
        done
        [ $keep -eq 1 ] || rm -f "$pt2"
    fi
    if has torch; then
        say "$m: torch eager + torch.compile"
        # shellcheck disable=SC2086
        "$py" "$top/bench/torch_bench.py" --model "$m" --dtype bfloat16 --max-cache-len 2048 --no-bandwidth \
            ${TORCH_ARGS:-} --json "$work/torch-$m.json" || say "$m: torch_bench failed"
    fi
    say "$m: $(( $(date +%s) - t0 )) s"
done

args=("$work")
[ -n "$out" ] && args+=(--out "$out")
[ $record -eq 1 ] && args+=(--insert "$top/bench/RESULTS.md")
"$py" "$top/bench/report.py" "${args[@]}"
