#!/usr/bin/env python3
"""The model shapes of the benchmark: the published Hugging Face config.json
of each model (architecture fields only; the weights are random), and the
arithmetic of the bandwidth floor (bytes read per decoded token).

    models.py list                 the names, one per line
    models.py config NAME [FILE]   write NAME's config.json (for petrel_export.py --config)
    models.py bytes NAME           parameters, bf16 bytes read per token, KV bytes per position

Sources: the config.json of each Hugging Face model id below (the ids are in
MODELS).  Fields that only matter for trained checkpoints (torch_dtype,
transformers_version, quantization) are left out; token ids are kept because
the exporter writes them into petrel_meta.json.
"""

import json
import sys

LLAMA_3_2_1B = {  # meta-llama/Llama-3.2-1B
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "head_dim": 64,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 8192,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "num_attention_heads": 32,
    "num_hidden_layers": 16,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
    "vocab_size": 128256,
}


def qwen3(hidden, inter, layers, heads):
    """Qwen3 dense configs differ only in these four fields."""
    return {
        "model_type": "qwen3",
        "architectures": ["Qwen3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "head_dim": 128,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "max_position_embeddings": 40960,
        "max_window_layers": layers,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000,
        "sliding_window": None,
        "tie_word_embeddings": True,
        "use_sliding_window": False,
        "vocab_size": 151936,
    }


GEMMA_3_1B = {  # google/gemma-3-1b-pt (text-only, model_type gemma3_text)
    "model_type": "gemma3_text",
    "architectures": ["Gemma3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "attn_logit_softcapping": None,
    "bos_token_id": 2,
    "eos_token_id": [1, 106],
    "final_logit_softcapping": None,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 1152,
    "initializer_range": 0.02,
    "intermediate_size": 6912,
    "max_position_embeddings": 32768,
    "num_attention_heads": 4,
    "num_hidden_layers": 26,
    "num_key_value_heads": 1,
    "pad_token_id": 0,
    "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-06,
    "rope_local_base_freq": 10000,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": 512,
    "sliding_window_pattern": 6,  # 5 sliding-window layers, then 1 global
    "tie_word_embeddings": True,
    "vocab_size": 262144,
}

PHI_4_MINI = {  # microsoft/Phi-4-mini-instruct
    "model_type": "phi3",
    "architectures": ["Phi3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 199999,
    "embd_pdrop": 0.0,
    "eos_token_id": 200020,
    "full_attn_mod": 1,
    "hidden_act": "silu",
    "hidden_size": 3072,
    "initializer_range": 0.02,
    "intermediate_size": 8192,
    "interpolate_factor": 1,
    "lm_head_bias": False,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "num_attention_heads": 24,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "original_max_position_embeddings": 4096,
    "pad_token_id": 199999,
    "partial_rotary_factor": 0.75,
    "resid_pdrop": 0.0,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "type": "longrope",
        "long_factor": [
            1, 1.118320672, 1.250641126, 1.398617824, 1.564103225, 1.74916897, 1.956131817, 2.187582649,
            2.446418898, 2.735880826, 3.059592084, 3.421605075, 3.826451687, 4.279200023, 4.785517845,
            5.351743533, 5.984965424, 6.693110555, 7.485043894, 8.370679318, 9.36110372, 10.4687158,
            11.70738129, 13.09260651, 14.64173252, 16.37415215, 18.31155283, 20.47818807, 22.90118105,
            25.61086418, 28.64115884, 32.03, 32.1, 32.13, 32.23, 32.6, 32.61, 32.64, 32.66, 32.7, 32.71,
            32.93, 32.97, 33.28, 33.49, 33.5, 44.16, 47.77,
        ],
        "short_factor": [1.0] * 48,
    },
    "rope_theta": 10000.0,
    "sliding_window": 262144,
    "tie_word_embeddings": True,
    "vocab_size": 200064,
}

# name -> (Hugging Face model id, config.json)
MODELS = {
    "Llama-3.2-1B": ("meta-llama/Llama-3.2-1B", LLAMA_3_2_1B),
    "Qwen3-0.6B": ("Qwen/Qwen3-0.6B", qwen3(1024, 3072, 28, 16)),
    "Qwen3-1.7B": ("Qwen/Qwen3-1.7B", qwen3(2048, 6144, 28, 16)),
    "Qwen3-4B": ("Qwen/Qwen3-4B", qwen3(2560, 9728, 36, 32)),
    "Gemma-3-1B": ("google/gemma-3-1b-pt", GEMMA_3_1B),
    "Phi-4-mini": ("microsoft/Phi-4-mini-instruct", PHI_4_MINI),
}


def config(name: str) -> dict:
    if name not in MODELS:
        raise KeyError(f"unknown model '{name}' (have: {', '.join(MODELS)})")
    return json.loads(json.dumps(MODELS[name][1]))  # a deep copy


def head_dim(c: dict) -> int:
    return c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]


def param_counts(c: dict) -> dict:
    """Parameters: total, the embedding table, and those a decode step
    reads (every layer, the final norm and the LM head; of the embedding
    only one row, which is ignored).  Matches the modules Hugging Face
    builds for these families (Qwen3 and Gemma 3 add q/k norms, Gemma 3
    four norms per layer)."""
    h, v, i, hd = c["hidden_size"], c["vocab_size"], c["intermediate_size"], head_dim(c)
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    norms = 2 * h
    if c["model_type"] == "gemma3_text":
        norms = 4 * h + 2 * hd
    elif c["model_type"] == "qwen3":
        norms += 2 * hd
    layer = h * q + 2 * h * kv + q * h + 3 * h * i + norms
    embed = v * h
    body = c["num_hidden_layers"] * layer + h
    tied = c.get("tie_word_embeddings", False)
    total = embed + body + (0 if tied else embed)
    return {"total": total, "embed": embed, "read_per_token": body + embed}


def kv_bytes_read(c: dict, context: float, elem_bytes: int) -> float:
    """KV-cache bytes one decode step reads at `context` cached positions:
    keys and values of every layer, a sliding-window layer only its window."""
    per_pos = 2 * c["num_key_value_heads"] * head_dim(c) * elem_bytes
    window = c.get("sliding_window")
    n_layers = c["num_hidden_layers"]
    if c["model_type"] == "gemma3_text":
        pattern = c.get("sliding_window_pattern", 6)
        n_global = sum(1 for k in range(n_layers) if (k + 1) % pattern == 0)
        return per_pos * (n_global * context + (n_layers - n_global) * min(context, window))
    if window:  # Phi-4-mini: 262144, longer than any context here
        context = min(context, window)
    return per_pos * n_layers * context


def floor_bytes(c: dict, weight_bytes_read: float, context: float, kv_elem_bytes: int) -> float:
    """Bytes one decode step must read at least: its weights and its KV cache."""
    return weight_bytes_read + kv_bytes_read(c, context, kv_elem_bytes)


def weight_bytes_read(c: dict, elem_bytes: float, file_weight_bytes: int = 0) -> float:
    """Weight bytes a decode step reads.  With a program's own weight size
    (any format, tied weights counted once) the untied embedding table is
    taken out in proportion; without one, parameters x elem_bytes."""
    p = param_counts(c)
    if file_weight_bytes:
        return file_weight_bytes * p["read_per_token"] / p["total"]
    return p["read_per_token"] * elem_bytes


def main(argv) -> int:
    if argv[:1] == ["list"]:
        print("\n".join(MODELS))
    elif len(argv) in (2, 3) and argv[0] == "config":
        text = json.dumps(config(argv[1]), indent=1) + "\n"
        if len(argv) == 3:
            with open(argv[2], "w") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
    elif len(argv) == 2 and argv[0] == "bytes":
        c = config(argv[1])
        p = param_counts(c)
        print(json.dumps({"hf_id": MODELS[argv[1]][0], **p, "bf16_read_bytes": 2 * p["read_per_token"],
                          "bf16_kv_bytes_per_position": kv_bytes_read(c, 1, 2)}))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
