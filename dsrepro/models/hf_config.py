"""HuggingFace config.json <-> dsrepro ModelConfig, for GPT-2, GPT-NeoX (Pythia), Llama and Qwen2.

Import (``hf_config_to_model_config``) reads the plain config.json dict and accepts both the transformers v4
names (``rope_theta``, ``rope_scaling``, ``rotary_pct``, ``rotary_emb_base``) and the v5 ones
(``rope_parameters`` with ``rope_theta`` / ``partial_rotary_factor`` / ``rope_type``); missing keys take the
HF class defaults. Anything the dsrepro Transformer cannot reproduce exactly (scaled RoPE, sliding-window
attention, other activations, GPT-2 layer-index attention scaling, ...) is a ValueError naming the setting.

Export (``export_arch`` / ``hf_config_kwargs``) picks, in this order, the first architecture that represents
the ModelConfig exactly: Llama (rms, SwiGLU, full RoPE, sequential residual; q/k/v/o biases all or none),
Qwen2 (as Llama but q/k/v biases and no o/MLP bias), GPT-2 (LayerNorm, learned positions, GELU, all biases),
GPT-NeoX (LayerNorm, RoPE of any fraction, GELU, parallel or sequential residual). Configs that fit none of
them (e.g. the garden's rms + non-gated GELU "paper-*" sizes) raise a ValueError listing what each lacks.

``PYTHIA`` holds the config.json of the public Pythia models (Biderman et al. 2023, arXiv 2304.01373, Table 1 and
the model cards of ``EleutherAI/pythia-{size}``; 14m and 31m were added to the suite later), so their
architectures are known without weights or network: ``pythia_config("1.4b")`` is the ModelConfig. AdaSPEC
(arXiv 2510.19779) pairs a Pythia-31M draft with a Pythia-1.4B target.
"""
from __future__ import annotations

from dsrepro.models.transformer import ModelConfig

__all__ = ["ARCHS", "model_type", "hf_config_to_model_config", "export_arch", "hf_config_kwargs", "PYTHIA",
           "PYTHIA_IDS", "pythia_config"]

ARCHS = {"gpt2": "GPT2LMHeadModel", "gpt_neox": "GPTNeoXForCausalLM", "llama": "LlamaForCausalLM",
         "qwen2": "Qwen2ForCausalLM"}
_ACT = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh"}
_TIED_DEFAULT = {"gpt2": True, "gpt_neox": False, "llama": False, "qwen2": False}


def model_type(hf: dict) -> str:
  """The config's model_type, checked against the supported types and causal-LM architectures."""
  mt = hf.get("model_type")
  supported = ", ".join(f"{k} ({v})" for k, v in ARCHS.items())
  if mt not in ARCHS:
    raise ValueError(f"unsupported model_type {mt!r} (architectures={hf.get('architectures')}); "
                     f"supported: {supported}")
  archs = hf.get("architectures") or [ARCHS[mt]]
  if ARCHS[mt] not in archs:
    raise ValueError(f"unsupported architectures {archs} for model_type {mt!r}; supported: {supported}")
  return mt


def _get(hf: dict, *keys, default=None):
  return next((hf[k] for k in keys if hf.get(k) is not None), default)


def _act(hf: dict, key: str, default: str) -> str:
  act = hf.get(key) or default
  if act not in _ACT:
    raise ValueError(f"unsupported {key}={act!r}; supported: {sorted(_ACT)}")
  return _ACT[act]


def _rope(hf: dict, default_pct: float) -> tuple[float, float]:
  """(rope_theta, partial_rotary_factor); only plain ('default') RoPE is supported."""
  rp = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
  kind = rp.get("rope_type", rp.get("type", "default"))
  if kind != "default":
    raise ValueError(f"unsupported rope_type {kind!r} (rope settings {rp}); only 'default' RoPE is supported")
  theta = _get(rp, "rope_theta", default=_get(hf, "rope_theta", "rotary_emb_base", default=10000.0))
  pct = _get(rp, "partial_rotary_factor", default=_get(hf, "partial_rotary_factor", "rotary_pct",
                                                       default=default_pct))
  return float(theta), float(pct)


def _check_no_sliding(hf: dict, n_layers: int):
  if not hf.get("use_sliding_window") or hf.get("sliding_window") is None:
    return
  types = hf.get("layer_types") or ["sliding_attention" if i >= hf.get("max_window_layers", 28) else "full"
                                    for i in range(n_layers)]
  if "sliding_attention" in types:
    raise ValueError(f"sliding-window attention (use_sliding_window=True, sliding_window={hf['sliding_window']})"
                     " is not supported")


def hf_config_to_model_config(hf: dict, max_len: int | None = None, dtype: str = "float32") -> ModelConfig:
  """ModelConfig of a HF config.json dict. max_len caps max_position_embeddings (n_positions for GPT-2)."""
  mt = model_type(hf)
  d = _get(hf, "hidden_size", "n_embd")
  n_layers = _get(hf, "num_hidden_layers", "n_layer")
  n_heads = _get(hf, "num_attention_heads", "n_head")
  ctx = _get(hf, "max_position_embeddings", "n_positions", default=2048)
  if max_len is not None:
    if max_len < 1:
      raise ValueError(f"max_len must be >= 1, got {max_len}")
    ctx = min(ctx, max_len)
  tied = hf.get("tie_word_embeddings")
  common = dict(vocab_size=hf["vocab_size"], d_model=d, n_layers=n_layers, n_heads=n_heads, max_len=ctx,
                tie_embeddings=_TIED_DEFAULT[mt] if tied is None else bool(tied), dtype=dtype, param_dtype=dtype)
  if mt == "gpt2":
    for key, ok in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                    ("add_cross_attention", False)):
      if hf.get(key, ok) != ok:
        raise ValueError(f"unsupported GPT-2 setting {key}={hf[key]!r} (needs {ok})")
    return ModelConfig(**common, d_ff=_get(hf, "n_inner", default=4 * d), norm="layer",
                       norm_eps=_get(hf, "layer_norm_epsilon", default=1e-5),
                       mlp=_act(hf, "activation_function", "gelu_new"), pos="learned", qkv_bias=True,
                       attn_out_bias=True, mlp_bias=True)
  if mt == "gpt_neox":
    theta, pct = _rope(hf, 0.25)
    if int(d // n_heads * pct) % 2:
      raise ValueError(f"rotary_pct={pct} gives an odd number of rotary dims {int(d // n_heads * pct)}; "
                       "only even rotary dims are supported")
    bias = hf.get("attention_bias", True)
    return ModelConfig(**common, d_ff=hf["intermediate_size"], norm="layer",
                       norm_eps=_get(hf, "layer_norm_eps", default=1e-5), mlp=_act(hf, "hidden_act", "gelu"),
                       rope_theta=theta, rotary_pct=pct, parallel_residual=hf.get("use_parallel_residual", True),
                       qkv_bias=bias, attn_out_bias=bias, mlp_bias=True)
  if (hf.get("hidden_act") or "silu") != "silu":
    raise ValueError(f"unsupported hidden_act={hf['hidden_act']!r} for {mt}; only 'silu' (SwiGLU) is supported")
  theta, pct = _rope(hf, 1.0)
  if pct != 1.0:
    raise ValueError(f"unsupported partial_rotary_factor={pct} for {mt}; only full RoPE is supported")
  _check_no_sliding(hf, n_layers)
  head_dim = hf.get("head_dim") or d // n_heads
  kv = hf.get("num_key_value_heads") or n_heads
  if mt == "llama":
    qkv_bias = out_bias = bool(hf.get("attention_bias", False))
    mlp_bias = bool(hf.get("mlp_bias", False))
  else:
    qkv_bias, out_bias, mlp_bias = True, False, False
  return ModelConfig(**common, d_ff=hf["intermediate_size"], n_kv_heads=None if kv == n_heads else kv,
                     head_dim_override=None if head_dim * n_heads == d else head_dim, norm="rms",
                     norm_eps=_get(hf, "rms_norm_eps", default=1e-6), mlp="swiglu", rope_theta=theta,
                     qkv_bias=qkv_bias, attn_out_bias=out_bias, mlp_bias=mlp_bias)


def export_arch(cfg: ModelConfig) -> str:
  """The HF model_type that represents cfg exactly (see module docstring), else a ValueError saying why not."""
  c = cfg
  std_head = c.d_model % c.n_heads == 0 and c.head_dim == c.d_model // c.n_heads
  gelu = c.mlp in ("gelu", "gelu_tanh")
  llama_like = [("norm='rms'", c.norm == "rms"), ("mlp='swiglu'", c.mlp == "swiglu"),
                ("pos='rope' with rotary_pct=1", c.pos == "rope" and c.rotary_dim == c.head_dim),
                ("parallel_residual=False", not c.parallel_residual), ("lm_head_bias=False", not c.lm_head_bias)]
  needs = {
      "llama": llama_like + [("qkv_bias == attn_out_bias", c.qkv_bias == c.attn_out_bias)],
      "qwen2": llama_like + [("qkv_bias=True", c.qkv_bias), ("attn_out_bias=False", not c.attn_out_bias),
                             ("mlp_bias=False", not c.mlp_bias), ("head_dim = d_model / n_heads", std_head)],
      "gpt2": [("norm='layer'", c.norm == "layer"), ("mlp gelu or gelu_tanh", gelu), ("pos='learned'",
               c.pos == "learned"), ("parallel_residual=False", not c.parallel_residual),
               ("qkv/attn_out/mlp biases", c.qkv_bias and c.attn_out_bias and c.mlp_bias),
               ("n_kv_heads = n_heads", c.kv_heads == c.n_heads), ("head_dim = d_model / n_heads", std_head),
               ("lm_head_bias=False", not c.lm_head_bias)],
      "gpt_neox": [("norm='layer'", c.norm == "layer"), ("mlp gelu or gelu_tanh", gelu), ("pos='rope'",
                   c.pos == "rope"), ("qkv_bias == attn_out_bias", c.qkv_bias == c.attn_out_bias),
                   ("mlp_bias=True", c.mlp_bias), ("n_kv_heads = n_heads", c.kv_heads == c.n_heads),
                   ("head_dim = d_model / n_heads", std_head), ("lm_head_bias=False", not c.lm_head_bias)],
  }
  for arch, reqs in needs.items():
    if all(ok for _, ok in reqs):
      return arch
  why = "; ".join(f"{a} needs {', '.join(n for n, ok in r if not ok)}" for a, r in needs.items())
  raise ValueError(f"cannot export {cfg}: no supported HF architecture represents it ({why})")


def hf_config_kwargs(cfg: ModelConfig, bos=None, eos=None, pad=None) -> tuple[str, dict]:
  """(model_type, kwargs for transformers.AutoConfig.for_model). Uses the v4 kwarg names (rope_theta,
  rotary_pct, rotary_emb_base), which v5 still accepts and converts to rope_parameters. Dropout is 0."""
  mt = export_arch(cfg)
  act = {"gelu": "gelu", "gelu_tanh": "gelu_new", "swiglu": "silu"}[cfg.mlp]
  kw = dict(architectures=[ARCHS[mt]], vocab_size=cfg.vocab_size, tie_word_embeddings=cfg.tie_embeddings,
            bos_token_id=bos, eos_token_id=eos, pad_token_id=pad, dtype=cfg.param_dtype)
  if mt == "gpt2":
    kw.update(n_embd=cfg.d_model, n_layer=cfg.n_layers, n_head=cfg.n_heads, n_inner=cfg.d_ff,
              n_positions=cfg.max_len, activation_function=act, layer_norm_epsilon=cfg.norm_eps,
              resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return mt, kw
  kw.update(hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
            intermediate_size=cfg.d_ff, hidden_act=act, max_position_embeddings=cfg.max_len,
            rope_theta=cfg.rope_theta)
  if mt == "gpt_neox":
    kw.pop("rope_theta")
    kw.update(rotary_pct=cfg.rotary_dim / cfg.head_dim, rotary_emb_base=cfg.rope_theta, layer_norm_eps=cfg.norm_eps,
              use_parallel_residual=cfg.parallel_residual, attention_bias=cfg.qkv_bias, hidden_dropout=0.0,
              attention_dropout=0.0)
    return mt, kw
  kw.update(num_key_value_heads=cfg.kv_heads, rms_norm_eps=cfg.norm_eps)
  if mt == "llama":
    kw.update(head_dim=cfg.head_dim, attention_bias=cfg.qkv_bias, mlp_bias=cfg.mlp_bias)
  else:
    kw.update(use_sliding_window=False)
  return mt, kw


def _pythia(d_model: int, n_layers: int, n_heads: int) -> dict:
  """The config.json of a Pythia model: GPT-NeoX, parallel residual, rotary on 25% of each head (base 10000),
  d_ff = 4 d_model, GELU, untied 50304-row embeddings (the 50277-token tokenizer padded), context 2048."""
  return dict(architectures=["GPTNeoXForCausalLM"], model_type="gpt_neox", vocab_size=50304, hidden_size=d_model,
              num_hidden_layers=n_layers, num_attention_heads=n_heads, intermediate_size=4 * d_model,
              hidden_act="gelu", rotary_pct=0.25, rotary_emb_base=10000, max_position_embeddings=2048,
              layer_norm_eps=1e-5, use_parallel_residual=True, tie_word_embeddings=False, initializer_range=0.02,
              bos_token_id=0, eos_token_id=0, attention_dropout=0.0, hidden_dropout=0.0)


# Pythia sizes -> config.json. Non-embedding parameters (model cards): 14m 1,189,888; 31m 4,739,072;
# 70m 18,915,328; 160m 85,056,000; 410m 302,311,424; 1b 805,736,448; 1.4b 1,208,602,624.
PYTHIA: dict[str, dict] = {
    "14m": _pythia(128, 6, 4),
    "31m": _pythia(256, 6, 8),
    "70m": _pythia(512, 6, 8),
    "160m": _pythia(768, 12, 12),
    "410m": _pythia(1024, 24, 16),
    "1b": _pythia(2048, 16, 8),
    "1.4b": _pythia(2048, 24, 16),
}
PYTHIA_IDS: dict[str, str] = {size: f"EleutherAI/pythia-{size}" for size in PYTHIA}


def pythia_config(size: str, max_len: int | None = None, dtype: str = "float32") -> ModelConfig:
  """The ModelConfig of Pythia ``size`` ("14m" .. "1.4b", or "pythia-1.4b"); max_len caps the 2048 context."""
  size = size.removeprefix("pythia-")
  if size not in PYTHIA:
    raise ValueError(f"unknown Pythia size {size!r}; known: {', '.join(PYTHIA)}")
  return hf_config_to_model_config(PYTHIA[size], max_len=max_len, dtype=dtype)
