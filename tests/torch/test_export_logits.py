#!/usr/bin/env python3
"""The export helper's --logits: a random-weight Qwen3 and Llama (fresh
seed, float32) exported with --logits last (the default) and --logits all
run a prefill of a random prompt and two decode steps in petrel (the .pt2
and the program compiled with int4 weights).  The last program returns
(1, 1, vocab) per call, the all program (1, T, vocab); the last rows agree
(float32: within 1e-6 relative L2; int4: 1e-5, the products of one row and
of many differ in their last bits), and the float32 ones match Hugging
Face's eager logits of the same positions within 1e-4.

    PETREL=build/petrel python tests/torch/test_export_logits.py [--seed S]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "python"))

CONFIGS = {
    "qwen3": dict(model_type="qwen3", hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=256,
                  rope_theta=10000.0, tie_word_embeddings=True, initializer_range=0.1, vocab_size=512,
                  rms_norm_eps=1e-6),
    "llama": dict(model_type="llama", hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=1, head_dim=32, max_position_embeddings=256,
                  rope_theta=10000.0, tie_word_embeddings=False, initializer_range=0.1, vocab_size=384,
                  rms_norm_eps=1e-5),
}
PROMPT, STEPS = 21, 2


def rel(a, b) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    a = ap.parse_args()
    print(f"test_export_logits: seed {a.seed} (replay with --seed {a.seed})")
    import torch
    from safetensors.torch import load_file, save_file

    import petrel_export

    petrel = os.environ.get("PETREL", os.path.join(ROOT, "build", "petrel"))
    fails = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in CONFIGS.items():
            cfg_path = os.path.join(tmp, f"{name}.json")
            json.dump(cfg, open(cfg_path, "w"))
            g = torch.Generator().manual_seed(a.seed)
            ids = torch.randint(0, cfg["vocab_size"], (1, PROMPT + STEPS), generator=g)
            calls = [(ids[:, :PROMPT], torch.arange(PROMPT))] + [
                (ids[:, PROMPT + s:PROMPT + s + 1], torch.tensor([PROMPT + s])) for s in range(STEPS)]
            for c, (x, pos) in enumerate(calls):
                save_file({"input_ids": x, "cache_position": pos}, os.path.join(tmp, f"{name}.in{c}.safetensors"))
            outs = {}
            for logits in ("last", "all"):
                pt2 = os.path.join(tmp, f"{name}.{logits}.pt2")
                argv = ["--config", cfg_path, "--random-weights", "--seed", str(a.seed % 1000), "-o", pt2,
                        "--max-cache-len", "64", "--max-chunk", "32", "--logits", logits]
                with open(os.devnull, "w") as null:
                    old = sys.stderr
                    sys.stderr = null  # the missing-tokenizer warning
                    try:
                        rc = petrel_export.main(argv)
                    finally:
                        sys.stderr = old
                if rc != 0:
                    print(f"FAIL {name} --logits {logits}: export failed")
                    return 1
                q = os.path.join(tmp, f"{name}.{logits}.int4.petrel")
                subprocess.run([petrel, "compile", pt2, "-o", q, "--quant", "int4", "--quant-embedding"],
                               check=True, capture_output=True)
                for prog, tag in ((pt2, "f32"), (q, "int4")):
                    args = [petrel, "run", prog]
                    for c in range(len(calls)):
                        args += ["--inputs", os.path.join(tmp, f"{name}.in{c}.safetensors"),
                                 "--outputs", os.path.join(tmp, f"{name}.{logits}.{tag}.out{c}.safetensors")]
                    r = subprocess.run(args, capture_output=True, text=True)
                    if r.returncode != 0:
                        print(f"FAIL {name} --logits {logits} {tag}: {r.stderr.strip()}")
                        return 1
                    outs[logits, tag] = [load_file(os.path.join(tmp, f"{name}.{logits}.{tag}.out{c}.safetensors"))
                                         ["output_0"] for c in range(len(calls))]
            # Hugging Face's eager logits on the same weights (the helper's loader, same seed)
            ns = petrel_export.parse_args(["--config", cfg_path, "--random-weights", "--seed", str(a.seed % 1000),
                                           "-o", os.path.join(tmp, "unused.pt2")])
            lm, _ = petrel_export.load_model(ns)
            with torch.no_grad():
                want = lm(ids).logits  # (1, PROMPT + STEPS, vocab)
            for c, (x, pos) in enumerate(calls):
                t = x.shape[1]
                last_pos = int(pos[-1])
                for tag, tol in (("f32", 1e-6), ("int4", 1e-5)):
                    lo, al = outs["last", tag][c], outs["all", tag][c]
                    V = cfg["vocab_size"]
                    shapes_ok = tuple(lo.shape) == (1, 1, V) and tuple(al.shape) == (1, t, V)
                    err = rel(lo[0, -1], al[0, -1])
                    ok = shapes_ok and err <= tol and torch.isfinite(lo).all()
                    if tag == "f32":
                        herr = rel(lo[0, -1], want[0, last_pos])
                        ok = ok and herr <= 1e-4
                    hf = f", against HF {herr:.2e}" if tag == "f32" else ""
                    print(f"{'ok  ' if ok else 'FAIL'} {name} call {c} {tag}: last {tuple(lo.shape)}, "
                          f"all {tuple(al.shape)}, last rows {err:.2e}{hf}")
                    fails += not ok
    print(f"test_export_logits: {'FAIL' if fails else 'ok'}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
