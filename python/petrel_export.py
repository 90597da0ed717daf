#!/usr/bin/env python3
"""Export a Hugging Face decoder-only language model for `petrel generate`
and `petrel chat`.

The model is wrapped with a static KV cache (batch 1, --max-cache-len
positions) and exported with torch.export; the program takes

    input_ids       int64 [1, T]    T = 1 .. --max-chunk (a dynamic size)
    cache_position  int64 [T]       the cache positions of those tokens

and returns the logits of the last of those positions, [1, 1, vocab] (with
--logits all, of every position: [1, T, vocab]; a prompt's prefill needs
only its last token's, and the LM head over every position is a fifth
(Llama-3.2-1B) to over a quarter (Qwen3-0.6B) of a prefill's multiply-adds;
HF's generate() and ExecuTorch's export leave it out too).  The KV cache lives in mutable buffers, so one
program serves both the prefill chunks of a prompt and the single-token
decode steps.  The archive carries two extra files the runner reads:

    petrel_meta.json  family, bos_id, eos_ids, pad_id, max_cache_len,
                      max_chunk, vocab_size, chat_template (when the
                      tokenizer config has one)
    tokenizer.json    the Hugging Face tokenizer (--tokenizer, or the one in
                      the model directory)

Supported families: Llama 3.x (llama), Qwen3 (qwen3), Qwen3-MoE (qwen3_moe),
Gemma 3 text (gemma3), Phi-3 / Phi-4-mini (phi3).  LongRoPE models (Phi-4-mini)
export with --max-cache-len up to their original training length (4096 for
Phi-4-mini): past it HF switches to the long factors at run time, a branch
on the data that torch.export cannot keep.

    petrel_export.py --model DIR -o model.pt2
    petrel_export.py --config config.json --random-weights --seed 0 \\
                     --tokenizer tokenizer.json -o tiny.pt2
    petrel_export.py ... --form aten      # save the core-ATen form

Needs torch >= 2.9 and transformers (python/requirements.txt pins both).
"""

import argparse
import inspect
import json
import logging
import os
import sys
import types
import warnings

# model_type (config.json) -> petrel family
FAMILIES = {
    "llama": "llama",
    "qwen3": "qwen3",
    "qwen3_moe": "qwen3_moe",
    "gemma3_text": "gemma3",
    "phi3": "phi3",
}
DTYPES = ("float32", "bfloat16", "float16")
META_VERSION = 1


def fail(msg: str):
    print(f"petrel_export: {msg}", file=sys.stderr)
    sys.exit(1)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="DIR", help="Hugging Face model directory (config + weights)")
    src.add_argument("--config", metavar="FILE", help="a config.json, for a random-weight model")
    p.add_argument("--random-weights", action="store_true",
                   help="with --config: initialise the weights randomly (required with --config)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    p.add_argument("--tokenizer", metavar="PATH",
                   help="tokenizer.json to attach (default: the one in --model DIR)")
    p.add_argument("-o", "--out", required=True, metavar="FILE.pt2", help="where to write the archive")
    p.add_argument("--max-cache-len", type=int, default=256,
                   help="KV-cache positions: prompt + generated tokens (default 256)")
    p.add_argument("--max-chunk", type=int, default=64,
                   help="largest number of tokens per call, i.e. per prefill chunk (default 64)")
    p.add_argument("--form", choices=("export", "aten"), default="export",
                   help="export: torch.export's program (default); aten: after run_decompositions()")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="weight dtype (default float32)")
    p.add_argument("--logits", choices=("last", "all"), default="last",
                   help="logits of the call's last position only (default), or of every position "
                        "(scoring, perplexity)")
    p.add_argument("--family", choices=sorted(set(FAMILIES.values())),
                   help="override the family derived from config.model_type")
    a = p.parse_args(argv)
    if a.config and not a.random_weights:
        p.error("--config needs --random-weights (use --model for trained weights)")
    if a.model and a.random_weights:
        p.error("--random-weights goes with --config")
    if a.max_cache_len < 2:
        p.error("--max-cache-len must be at least 2")
    if not 1 <= a.max_chunk <= a.max_cache_len:
        p.error("--max-chunk must be between 1 and --max-cache-len")
    return a


# --------------------------------------------------------------------------
# Loading


def load_model(a):
    """The model in eval mode, and the config it came from."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = getattr(torch, a.dtype)
    if a.model:
        config = AutoConfig.from_pretrained(a.model)
    else:
        with open(a.config) as f:
            d = json.load(f)
        model_type = d.pop("model_type", None)
        if not model_type:
            fail(f"{a.config}: no model_type")
        d.pop("architectures", None)
        config = AutoConfig.for_model(model_type, **d)
    if config.model_type not in FAMILIES and not a.family:
        fail(f"model_type '{config.model_type}' is not a supported family "
             f"({', '.join(sorted(FAMILIES))}); --family overrides")
    kw = {}
    if config.model_type == "qwen3_moe":
        # Plain aten ops (gather the experts' weights, bmm); the default CPU
        # experts implementation puts a transformers custom op in the graph.
        kw["experts_implementation"] = "batched_mm"
    if a.model:
        lm = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype, **kw)
    else:
        if kw:
            config._experts_implementation = kw["experts_implementation"]
        torch.manual_seed(a.seed)
        lm = AutoModelForCausalLM.from_config(config).to(dtype)
    fix_longrope(lm, a.max_cache_len)
    return lm.eval(), config


def fix_longrope(lm, max_cache_len: int):
    """LongRoPE (Phi-3/Phi-4) picks its frequencies per call: the short
    factors while the largest position is below the original training
    length, the long ones beyond it.  That data-dependent branch cannot be
    exported (nor compiled whole).  A cache no longer than the original
    length only ever takes the short branch, which is what the frequencies
    computed at construction already are, so the per-call update is
    dropped; a longer cache is refused."""
    import torch

    for m in lm.modules():
        if getattr(m, "rope_type", None) != "longrope":
            continue
        original = m.config.rope_parameters["original_max_position_embeddings"]
        if max_cache_len > original:
            fail(f"LongRoPE switches to its long factors past position {original}; "
                 f"--max-cache-len {max_cache_len} needs that switch, which cannot be exported "
                 f"(use --max-cache-len <= {original})")
        # forward is no_grad(dynamic_rope_update(f)): keep the first, drop the second
        m.forward = types.MethodType(torch.no_grad()(inspect.unwrap(type(m).forward)), m)


def find_tokenizer(a):
    """Path of the tokenizer.json to attach, or None."""
    if a.tokenizer:
        if not os.path.isfile(a.tokenizer):
            fail(f"{a.tokenizer}: no such file")
        return a.tokenizer
    if a.model and os.path.isfile(os.path.join(a.model, "tokenizer.json")):
        return os.path.join(a.model, "tokenizer.json")
    return None


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def chat_template(a, tok_path):
    """The chat template string: tokenizer_config.json's, or a
    chat_template.jinja beside it (newer transformers write that file)."""
    for d in filter(None, (a.model, tok_path and os.path.dirname(tok_path))):
        cfg = read_json(os.path.join(d, "tokenizer_config.json")) or {}
        t = cfg.get("chat_template")
        if isinstance(t, list):  # [{"name": "default", "template": ...}, ...]
            t = next((x.get("template") for x in t if x.get("name") == "default"), None)
        if isinstance(t, str):
            return t
        jinja = os.path.join(d, "chat_template.jinja")
        if os.path.isfile(jinja):
            with open(jinja) as f:
                return f.read()
    return None


def token_ids(v) -> list:
    if v is None:
        return []
    return [int(x) for x in (v if isinstance(v, (list, tuple)) else [v])]


def make_meta(a, lm, config, tok_path) -> dict:
    """petrel_meta.json: what the runner needs besides the program."""
    text = config.get_text_config()
    gen = lm.generation_config
    eos = []
    for v in (gen.eos_token_id if gen is not None else None, text.eos_token_id):
        for i in token_ids(v):
            if i not in eos:
                eos.append(i)
    bos = token_ids(getattr(text, "bos_token_id", None))
    if not bos and gen is not None:
        bos = token_ids(gen.bos_token_id)
    pad = token_ids(getattr(text, "pad_token_id", None))
    tok_cfg = {}
    if tok_path:
        tok_cfg = read_json(os.path.join(os.path.dirname(tok_path), "tokenizer_config.json")) or {}
    # A chat model's tokenizer config names the token that ends its turn
    # (<|eot_id|>, <|im_end|>); generation stops there too.
    eos_token = tok_cfg.get("eos_token")
    if isinstance(eos_token, dict):
        eos_token = eos_token.get("content")
    if isinstance(eos_token, str) and tok_path:
        from tokenizers import Tokenizer

        i = Tokenizer.from_file(tok_path).token_to_id(eos_token)
        if i is not None and i not in eos:
            eos.append(int(i))
    meta = {
        "version": META_VERSION,
        "family": a.family or FAMILIES[config.model_type],
        "model_type": config.model_type,
        "bos_id": bos[0] if bos else -1,
        "eos_ids": eos,
        "pad_id": pad[0] if pad else -1,
        "max_cache_len": a.max_cache_len,
        "max_chunk": a.max_chunk,
        "vocab_size": int(text.vocab_size),
        "dtype": a.dtype,
    }
    t = chat_template(a, tok_path)
    if t is not None:
        meta["chat_template"] = t
    return meta


# --------------------------------------------------------------------------
# Export


def sanitize(ep):
    """Drop per-node metadata that names files on this machine (stack
    traces) or is not needed at run time, and the example inputs."""
    import torch

    for gm in ep.graph_module.modules():
        if isinstance(gm, torch.fx.GraphModule):
            for node in gm.graph.nodes:
                for key in ("stack_trace", "from_node", "nn_module_stack", "source_fn_stack", "torch_fn"):
                    node.meta.pop(key, None)
    ep.example_inputs = None


def export(lm, max_cache_len: int, max_chunk: int, form: str, logits: str = "last"):
    """torch.export the static-cache wrapper of `lm`: (input_ids [1, T],
    cache_position [T]) -> logits [1, 1, vocab] of the last position
    (logits "all": [1, T, vocab]), T dynamic in 1..max_chunk."""
    import functools

    import torch
    from torch.export import Dim
    from transformers.integrations.executorch import TorchExportableModuleForDecoderOnlyLM

    if logits == "last":
        # HF's logits_to_keep: the hidden states are cut to the last
        # position before the LM head (the wrapper passes no such argument)
        lm.forward = functools.partial(type(lm).forward, lm, logits_to_keep=1)

    lm.generation_config.cache_implementation = "static"
    lm.generation_config.use_cache = True  # a saved generation_config.json may leave it unset
    wrapper = TorchExportableModuleForDecoderOnlyLM(lm, batch_size=1, max_cache_len=max_cache_len)
    # An example of 2 tokens: 0 and 1 would be specialised by the tracer.
    t = 2 if max_chunk >= 2 else 1
    ids = torch.zeros(1, t, dtype=torch.long)
    pos = torch.arange(t, dtype=torch.long)
    dyn = None
    if max_chunk >= 2:
        seq = Dim("seq", min=1, max=max_chunk)
        dyn = {"input_ids": {1: seq}, "cache_position": {0: seq}}
    # Under no_grad, the rotary embedding's grad-mode region adds no
    # higher-order op; strict (dynamo) tracing makes the caches buffers.
    with torch.no_grad():
        ep = torch.export.export(wrapper.model, (), {"input_ids": ids, "cache_position": pos},
                                 dynamic_shapes=dyn, strict=True)
        if form == "aten":
            ep = ep.run_decompositions()
    sanitize(ep)
    return ep


def main(argv=None) -> int:
    a = parse_args(argv if argv is not None else sys.argv[1:])
    warnings.filterwarnings("ignore")
    logging.getLogger("torch").setLevel(logging.ERROR)
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    if (major, minor) < (2, 9):
        fail(f"torch {torch.__version__} is too old (needs >= 2.9)")

    lm, config = load_model(a)
    tok_path = find_tokenizer(a)
    meta = make_meta(a, lm, config, tok_path)
    ep = export(lm, a.max_cache_len, a.max_chunk, a.form, a.logits)
    extra = {"petrel_meta.json": json.dumps(meta, indent=1, ensure_ascii=False)}
    if tok_path:
        with open(tok_path, encoding="utf-8") as f:
            extra["tokenizer.json"] = f.read()
    else:
        print("petrel_export: warning: no tokenizer.json attached (give --tokenizer)", file=sys.stderr)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    torch.export.save(ep, a.out, extra_files=extra)
    print(f"wrote {a.out}: {meta['family']}, vocab {meta['vocab_size']}, cache {a.max_cache_len}, "
          f"chunks of 1..{a.max_chunk}, {a.form} form, {os.path.getsize(a.out)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
