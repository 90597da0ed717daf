"""Logits of random-weight LLMs wide enough for the decode paths that need
K a multiple of 512, 1024 or 2048 (the ring GEMV of quant_k.cu), on CUDA
against the CPU backend (the oracle of the quantized ops), same weights.

Four models of two layers: a Llama (hidden size 1024, four query heads
per KV head, head dim 64), a Qwen3 (1024, two per KV head, head dim 128,
q/k norms) and a Gemma 3 (Gemma-3-1B's hidden size 1152 and MLP width
6912, which no pass of the ring GEMV divides, so its products take that
kernel's general form; four query heads on one KV head of head dim 256,
q/k norms, the first layer in a 16-position sliding window that the 28
positions pass), bfloat16, and a Qwen3-MoE (1024, 16 experts of width
384, top-4: petrel.expert_linear / qexpert_linear) in float32, a KV cache
of 2048 positions, weights drawn as Hugging Face initializes them (std
0.02).  Each is compiled with each scheme given
(bf16: none), for CUDA and for the CPU, and run with `petrel run` on the
same inputs, its KV cache kept between the calls: a prefill of 20 random
ids, then 8 decode steps with random ids (the decode step is captured and
replayed on CUDA).  Comparing logits, not greedy ids, keeps the check free
of near-ties between random logits.

The bound, relative L2 of every call's logits against the CPU's: 2e-2 in
bfloat16, 1e-5 in float32, for every scheme.  Both backends round to bf16 at the same
points (ops.def), with sums in another order, through some forty ops per
call; on an H200 the bf16 program measured 5e-3 (prefill) and up to 9e-3
(decode), the quantized ones 1.0e-2 to 1.2e-2: the prefill multiplies
weight panels dequantized and rounded to bf16 (quant.c), and a quantized
model's logits move differently.  A wrong row, group or scale moves them
by tens of percent.  The MoE model runs in float32: its router ranks
scores, and in bf16 a near-tie that the two backends' rounding orders the
other way sends a token to another expert.  On an H100 its bf16 logits
differed by 2.6e-2 to 8e-2 (nvfp4 8.5e-3), the same model in float32 by
at most 7.3e-7 in every scheme, so the float32 bound checks the expert
kernels and the bf16 one would check the router's ties.

usage: check_llm_wide.py PETREL PYTHON SCHEME...   (PYTHON: one with torch,
transformers, numpy and safetensors; run from the repository root)"""
import json
import os
import subprocess
import sys
import tempfile

from fixture_tokenizer import fixture_tokenizer

CACHE, PROMPT, STEPS = 2048, 20, 8
TOL = {"bfloat16": 2e-2, "float32": 1e-5}
MODELS = {
    "llama": dict(model_type="llama", architectures=["LlamaForCausalLM"], num_attention_heads=16,
                  num_key_value_heads=4, head_dim=64),
    "qwen3": dict(model_type="qwen3", architectures=["Qwen3ForCausalLM"], num_attention_heads=16,
                  num_key_value_heads=8, head_dim=128),
    "gemma3": dict(model_type="gemma3_text", architectures=["Gemma3ForCausalLM"], num_attention_heads=4,
                   num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256,
                   hidden_activation="gelu_pytorch_tanh", sliding_window=16, sliding_window_pattern=2,
                   rope_local_base_freq=10000.0, hidden_size=1152, intermediate_size=6912),
    "qwen3_moe": dict(model_type="qwen3_moe", architectures=["Qwen3MoeForCausalLM"], num_attention_heads=16,
                      num_key_value_heads=4, head_dim=64, num_experts=16, num_experts_per_tok=4,
                      moe_intermediate_size=384, decoder_sparse_step=1, norm_topk_prob=True, dtype="float32"),
}
TOKENIZER = {"llama": "llama", "qwen3": "qwen3", "gemma3": "llama", "qwen3_moe": "qwen3"}  # whose tokenizer a model takes

# Run by PYTHON: write the calls' inputs, or compare two runs' outputs.
HELPER = r'''
import sys
import numpy as np
from safetensors.numpy import save_file
from safetensors.torch import load_file
if sys.argv[1] == "inputs":
    d, vocab, prompt, steps = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    rng = np.random.default_rng(7)
    ids = rng.integers(0, vocab, prompt + steps)
    save_file({"input_ids": ids[None, :prompt].astype(np.int64),
               "cache_position": np.arange(prompt, dtype=np.int64)}, f"{d}/in0.safetensors")
    for s in range(1, steps + 1):
        p = prompt + s - 1
        save_file({"input_ids": ids[None, p:p + 1].astype(np.int64),
                   "cache_position": np.array([p], dtype=np.int64)}, f"{d}/in{s}.safetensors")
else:
    d, n, tol = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    err = []
    for s in range(n):
        a = load_file(f"{d}/cuda{s}.safetensors")["output_0"].double().numpy()
        b = load_file(f"{d}/cpu{s}.safetensors")["output_0"].double().numpy()
        if a.shape != b.shape or not np.isfinite(a).all():
            print(f"call {s}: shape {a.shape} vs {b.shape} or not finite"); sys.exit(1)
        err.append(float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)))
    print(f"prefill {err[0]:.2e}, decode steps at most {max(err[1:]):.2e}")
    sys.exit(0 if max(err) <= tol else 1)
'''


def run(cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd[:3])}: {r.stderr.strip()[-400:]}")
    return r


def main():
    petrel, python, schemes = sys.argv[1], sys.argv[2], sys.argv[3:]
    fails = 0
    with tempfile.TemporaryDirectory() as tmp:
        helper = os.path.join(tmp, "helper.py")
        open(helper, "w").write(HELPER)
        for name, arch in MODELS.items():
            arch = dict(arch)
            dtype = arch.pop("dtype", "bfloat16")
            tok = os.path.join(tmp, f"{name}.tokenizer.json")
            vocab = (fixture_tokenizer(TOKENIZER[name], tok) + 8) // 8 * 8
            cfg = os.path.join(tmp, f"{name}.json")
            json.dump(dict(dict(hidden_size=1024, intermediate_size=2048), **arch, num_hidden_layers=2,
                           max_position_embeddings=CACHE, rope_theta=10000.0, tie_word_embeddings=True,
                           initializer_range=0.02, rms_norm_eps=1e-6, vocab_size=vocab), open(cfg, "w"))
            model = os.path.join(tmp, f"{name}.pt2")
            run([python, "python/petrel_export.py", "--config", cfg, "--random-weights", "--seed", "3", "--tokenizer",
                 tok, "--max-cache-len", str(CACHE), "--max-chunk", "64", "--dtype", dtype, "--logits", "all",
                 "-o", model])
            run([python, helper, "inputs", tmp, str(vocab), str(PROMPT), str(STEPS)])
            for scheme in schemes:
                for be in ("cuda", "cpu"):
                    prog = os.path.join(tmp, f"{name}.{be}.petrel")
                    run([petrel, "compile", model, "-o", prog, "--backend", be]
                        + ([] if scheme == "bf16" else ["--quant", scheme]))
                    calls = []
                    for s in range(STEPS + 1):
                        calls += ["--inputs", os.path.join(tmp, f"in{s}.safetensors"),
                                  "--outputs", os.path.join(tmp, f"{be}{s}.safetensors")]
                    run([petrel, "run", prog, "--backend", be] + calls)
                r = run([python, helper, "compare", tmp, str(STEPS + 1), str(TOL[dtype])], check=False)
                ok = r.returncode == 0
                fails += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {name} {dtype} {scheme}: prefill of {PROMPT} + {STEPS} decode steps, "
                      f"logits cuda vs cpu, relative L2: {r.stdout.strip() or r.stderr.strip()[-200:]}"
                      f" (tolerance {TOL[dtype]:g})")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
