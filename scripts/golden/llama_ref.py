#!/usr/bin/python3
"""
A pure-PyTorch reference of Hugging Face transformers' LlamaForCausalLM (also Mistral and Qwen2,
which share its graph), written from modeling_llama.py / modeling_qwen2.py / masking_utils.py,
for golden fixtures. transformers itself is not installed here; this mirrors its eager path:

- RoPE: default inv_freq = 1 / theta^(arange(0, hs, 2) / hs) in float32, then
  `_compute_llama3_parameters` when rope_scaling.rope_type == 'llama3'; cos/sin from
  inv_freq @ position_ids, cat(freqs, freqs); applied with rotate_half.
- Attention: q/k/v projections (bias per config), repeat_kv for GQA, q @ k^T * hs^-0.5 + additive
  mask (finfo.min where masked: causal, padding, Mistral sliding window), softmax in float32, @ v.
- RMSNorm in float32, then `weight * hidden.to(input_dtype)`; SiLU-gated MLP; tied lm_head.

Usage: /usr/bin/python3 scripts/golden/llama_ref.py <model_dir> <inputs.json> <expected.json>
inputs.json: {"cases": [{"name", "input_ids": [[...]], "attention_mask"?: [[...]], "position_ids"?: [[...]]}]}
expected.json: {"cases": [{"name", "logits": [[[...]]]}]} (float32 values, exact as doubles).
Use Debian's /usr/bin/python3 (it has python3-torch), not a pyenv python.
"""
import json
import math
import struct
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def read_safetensors(file):
    data = Path(file).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        buf = bytearray(data[base + b : base + e])
        t = torch.frombuffer(buf, dtype=DTYPES[info["dtype"]]) if e > b else torch.empty(0, dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"]).to(torch.float32)
    return out


def read_weights(model_dir):
    d = Path(model_dir)
    if (d / "model.safetensors").exists():
        return read_safetensors(d / "model.safetensors")
    index = json.loads((d / "model.safetensors.index.json").read_text())
    out = {}
    for shard in sorted(set(index["weight_map"].values())):
        out.update(read_safetensors(d / shard))
    return out


def llama3_inv_freq(inv_freq, rs):
    # transformers.modeling_rope_utils._compute_llama3_parameters
    factor = rs["factor"]
    low_freq_factor = rs["low_freq_factor"]
    high_freq_factor = rs["high_freq_factor"]
    old_context_len = rs["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def rope_inv_freq(cfg, head_dim):
    base = cfg.get("rope_theta", 10000.0)
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).to(dtype=torch.float) / head_dim))
    rs = cfg.get("rope_scaling")
    if rs is not None:
        kind = rs.get("rope_type", rs.get("type"))
        if kind == "llama3":
            inv_freq = llama3_inv_freq(inv_freq, rs)
        elif kind != "default":
            raise ValueError(f"rope type {kind} not implemented in the reference")
    return inv_freq


def rotary(inv_freq, position_ids):
    inv_freq_expanded = inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
    position_ids_expanded = position_ids[:, None, :].float()
    freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(h, n_rep):
    b, nkv, t, hs = h.shape
    if n_rep == 1:
        return h
    return h[:, :, None, :, :].expand(b, nkv, n_rep, t, hs).reshape(b, nkv * n_rep, t, hs)


def rms_norm(x, weight, eps):
    input_dtype = x.dtype
    h = x.to(torch.float32)
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + eps)
    return weight * h.to(input_dtype)


def linear(x, w, b=None):
    return F.linear(x, w, b)


def build_mask(attention_mask, B, T, sliding_window, dtype):
    """Additive [B, 1, T, T] mask as masking_utils builds it for eager attention."""
    q = torch.arange(T)[:, None]
    k = torch.arange(T)[None, :]
    allowed = k <= q
    if sliding_window is not None:
        allowed = allowed & (k > q - sliding_window)
    allowed = allowed[None, None].expand(B, 1, T, T)
    if attention_mask is not None:
        allowed = allowed & attention_mask[:, None, None, :].bool()
    mask = torch.zeros(B, 1, T, T, dtype=dtype)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


def forward(cfg, W, input_ids, attention_mask=None, position_ids=None):
    mt = cfg["model_type"]
    H = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    hs = cfg.get("head_dim") or H // nh
    eps = cfg.get("rms_norm_eps", 1e-6)
    L = cfg["num_hidden_layers"]
    sliding = cfg.get("sliding_window") if mt == "mistral" else None
    B, T = input_ids.shape
    if position_ids is None:
        position_ids = torch.arange(T)[None, :].expand(B, T)
    h = W["model.embed_tokens.weight"][input_ids]
    cos, sin = rotary(rope_inv_freq(cfg, hs), position_ids)
    mask = build_mask(attention_mask, B, T, sliding, h.dtype)
    g = W.get
    for i in range(L):
        p = f"model.layers.{i}."
        residual = h
        x = rms_norm(h, W[p + "input_layernorm.weight"], eps)
        q = linear(x, W[p + "self_attn.q_proj.weight"], g(p + "self_attn.q_proj.bias")).view(B, T, nh, hs).transpose(1, 2)
        k = linear(x, W[p + "self_attn.k_proj.weight"], g(p + "self_attn.k_proj.bias")).view(B, T, nkv, hs).transpose(1, 2)
        v = linear(x, W[p + "self_attn.v_proj.weight"], g(p + "self_attn.v_proj.bias")).view(B, T, nkv, hs).transpose(1, 2)
        c, s = cos.unsqueeze(1), sin.unsqueeze(1)
        q = (q * c) + (rotate_half(q) * s)
        k = (k * c) + (rotate_half(k) * s)
        k = repeat_kv(k, nh // nkv)
        v = repeat_kv(v, nh // nkv)
        attn = torch.matmul(q, k.transpose(2, 3)) * hs**-0.5
        attn = attn + mask
        attn = F.softmax(attn, dim=-1, dtype=torch.float32).to(q.dtype)
        o = torch.matmul(attn, v).transpose(1, 2).reshape(B, T, nh * hs)
        h = residual + linear(o, W[p + "self_attn.o_proj.weight"], g(p + "self_attn.o_proj.bias"))
        residual = h
        x = rms_norm(h, W[p + "post_attention_layernorm.weight"], eps)
        gate = linear(x, W[p + "mlp.gate_proj.weight"], g(p + "mlp.gate_proj.bias"))
        up = linear(x, W[p + "mlp.up_proj.weight"], g(p + "mlp.up_proj.bias"))
        h = residual + linear(F.silu(gate) * up, W[p + "mlp.down_proj.weight"], g(p + "mlp.down_proj.bias"))
    h = rms_norm(h, W["model.norm.weight"], eps)
    tied = cfg.get("tie_word_embeddings", False)
    lm_head = W["model.embed_tokens.weight"] if tied else W["lm_head.weight"]
    return linear(h, lm_head).float()


def main():
    model_dir, inputs_file, out_file = sys.argv[1:4]
    torch.set_num_threads(1)
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    W = read_weights(model_dir)
    cases = json.loads(Path(inputs_file).read_text())["cases"]
    out = []
    for case in cases:
        ids = torch.tensor(case["input_ids"], dtype=torch.long)
        am = torch.tensor(case["attention_mask"], dtype=torch.long) if case.get("attention_mask") else None
        pos = torch.tensor(case["position_ids"], dtype=torch.long) if case.get("position_ids") else None
        with torch.no_grad():
            logits = forward(cfg, W, ids, am, pos)
        out.append({"name": case["name"], "logits": logits.tolist()})
    Path(out_file).write_text(json.dumps({"reference": "scripts/golden/llama_ref.py", "cases": out}))


if __name__ == "__main__":
    main()
