"""Decoder-only Transformers in Flax NNX with an explicit, speculative-ready KV cache.

One module family covers the from-scratch garden (pre-norm RMSNorm, RoPE, SwiGLU) and the HuggingFace
architectures we import (GPT-2: LayerNorm, learned positions, GELU; GPT-NeoX/Pythia: parallel residual, partial
rotary; Llama/Qwen2: RMSNorm, SwiGLU, grouped-query attention, optional qkv bias). Everything is chosen by the
frozen :class:`ModelConfig`.

Call convention: ``logits_BxLxV, cache = model(tokens_BxL, cache)``. Without a cache the positions are 0..L-1 and
attention is causal. With a cache, row b's tokens sit at positions ``cache.end_B[b] + (0..L-1)``; they are written
into the cache, the returned cache has ``end_B + L``, and each query attends to every cached key at or before its
own position. Rolling back is ``cache.rollback(new_end_B)``. A call is ``model.hidden`` (final-norm hidden states
and cache) then ``model.logits``: callers that need few of the logits (a prefill: the last prompt token's) take
the hidden states and project only those.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from dsrepro.models.kvcache import KVCache, init_cache, write_rows

__all__ = ["ModelConfig", "Transformer", "GARDEN", "garden_config", "make_model", "count_params", "KVCache",
           "init_cache", "next_token", "check_same_vocab"]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture of a decoder-only Transformer. Hashable, so it can be a static jit argument."""
  vocab_size: int
  d_model: int
  n_layers: int
  n_heads: int
  d_ff: int
  n_kv_heads: int | None = None     # None: multi-head (= n_heads); fewer: grouped-query attention
  head_dim_override: int | None = None
  max_len: int = 512                # context length (cache length upper bound)
  norm: str = "rms"                 # "rms" | "layer"
  norm_eps: float = 1e-6
  mlp: str = "swiglu"               # "swiglu" | "gelu" | "gelu_tanh"
  pos: str = "rope"                 # "rope" | "learned"
  rope_theta: float = 10000.0
  rotary_pct: float = 1.0           # fraction of each head's dims that are rotated (Pythia: 0.25)
  parallel_residual: bool = False   # GPT-NeoX: x + attn(ln1 x) + mlp(ln2 x)
  qkv_bias: bool = False
  attn_out_bias: bool = False
  mlp_bias: bool = False
  tie_embeddings: bool = True
  lm_head_bias: bool = False
  dtype: str = "float32"            # compute dtype: "float32" | "bfloat16"
  param_dtype: str = "float32"

  def __post_init__(self):
    for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_len"):
      if getattr(self, name) < 1:
        raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)}")
    if self.head_dim_override is None and self.d_model % self.n_heads:
      raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
    if self.n_heads % self.kv_heads:
      raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.kv_heads}")
    for name, ok in (("norm", ("rms", "layer")), ("mlp", ("swiglu", "gelu", "gelu_tanh")),
                     ("pos", ("rope", "learned")), ("dtype", ("float32", "bfloat16")),
                     ("param_dtype", ("float32", "bfloat16"))):
      if getattr(self, name) not in ok:
        raise ValueError(f"ModelConfig.{name}={getattr(self, name)!r}; expected one of {ok}")

  @property
  def kv_heads(self) -> int:
    return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

  @property
  def head_dim(self) -> int:
    return self.head_dim_override or self.d_model // self.n_heads

  @property
  def rotary_dim(self) -> int:
    """Rotated dims per head; 0 (no RoPE) with learned positions."""
    if self.pos != "rope":
      return 0
    return int(self.head_dim * self.rotary_pct) // 2 * 2


# Architecture dims of the garden; vocab_size and max_len come from the task/tokenizer.
# Parameter counts at vocab 2048 (tied embeddings): pico 0.26M, nano 0.49M, micro 1.3M, mini 3.9M, small 8.9M, base 24M;
# the LM1B pair of DistillSpec (arXiv 2310.08461, App. C.1: 33M draft, 234M target) is meant for accelerators.
GARDEN: dict[str, dict] = {
    "pico": dict(d_model=64, n_layers=2, n_heads=2, d_ff=256),
    "nano": dict(d_model=96, n_layers=2, n_heads=3, d_ff=384),
    "micro": dict(d_model=128, n_layers=4, n_heads=4, d_ff=512),
    "mini": dict(d_model=192, n_layers=6, n_heads=6, d_ff=768),
    "small": dict(d_model=256, n_layers=8, n_heads=8, d_ff=1024),
    "base": dict(d_model=384, n_layers=10, n_heads=6, d_ff=1536),
    "paper-draft": dict(d_model=512, n_layers=4, n_heads=4, d_ff=1024, mlp="gelu"),
    "paper-target": dict(d_model=1024, n_layers=12, n_heads=16, d_ff=4096, mlp="gelu"),
}


def garden_config(size: str, vocab_size: int, max_len: int = 512, **overrides) -> ModelConfig:
  """The named garden size as a ModelConfig; unknown sizes raise a ValueError listing the known ones."""
  if size not in GARDEN:
    raise ValueError(f"unknown model size {size!r}; known sizes: {', '.join(GARDEN)}")
  return ModelConfig(vocab_size=vocab_size, max_len=max_len, **{**GARDEN[size], **overrides})


def _init(std=0.02):
  return nnx.initializers.normal(std)


def _norm(cfg: ModelConfig, rngs: nnx.Rngs) -> nnx.Module:
  kw = dict(epsilon=cfg.norm_eps, dtype=jnp.float32, param_dtype=jnp.dtype(cfg.param_dtype), rngs=rngs)
  if cfg.norm == "rms":
    return nnx.RMSNorm(cfg.d_model, **kw)
  return nnx.LayerNorm(cfg.d_model, use_fast_variance=False, **kw)


def _linear(cfg, d_in, d_out, bias, rngs, std=0.02):
  return nnx.Linear(d_in, d_out, use_bias=bias, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype),
                    kernel_init=_init(std), rngs=rngs)


def rope(x_BxLxNxH: jax.Array, pos_BxL: jax.Array, rot_dim: int, theta: float) -> jax.Array:
  """Rotary embedding, rotate-half convention (as HF Llama / GPT-NeoX), on the first rot_dim dims of each head."""
  if rot_dim == 0:
    return x_BxLxNxH
  inv_freq = 1.0 / (theta ** (jnp.arange(0, rot_dim, 2, dtype=jnp.float32) / rot_dim))
  ang_BxLxR2 = pos_BxL[..., None].astype(jnp.float32) * inv_freq
  ang_BxLx1xR = jnp.concatenate([ang_BxLxR2, ang_BxLxR2], -1)[:, :, None, :]
  x_rot, x_pass = x_BxLxNxH[..., :rot_dim].astype(jnp.float32), x_BxLxNxH[..., rot_dim:]
  x1, x2 = jnp.split(x_rot, 2, axis=-1)
  rotated = x_rot * jnp.cos(ang_BxLx1xR) + jnp.concatenate([-x2, x1], -1) * jnp.sin(ang_BxLx1xR)
  return jnp.concatenate([rotated.astype(x_BxLxNxH.dtype), x_pass], -1)


class Attention(nnx.Module):

  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    self.cfg = cfg
    n, k, h, d = cfg.n_heads, cfg.kv_heads, cfg.head_dim, cfg.d_model
    self.q = _linear(cfg, d, n * h, cfg.qkv_bias, rngs)
    self.k = _linear(cfg, d, k * h, cfg.qkv_bias, rngs)
    self.v = _linear(cfg, d, k * h, cfg.qkv_bias, rngs)
    self.o = _linear(cfg, n * h, d, cfg.attn_out_bias, rngs, std=0.02 / math.sqrt(2 * cfg.n_layers))

  def __call__(self, x_BxLxD, pos_BxL, mask_BxLxS, kv=None):
    """kv: None (keys are this call's tokens) or (k_BKxHxS, v_BKxSxH, end_B): write then attend to the cache."""
    cfg = self.cfg
    B, L, _ = x_BxLxD.shape
    N, K, H = cfg.n_heads, cfg.kv_heads, cfg.head_dim
    G = N // K
    q_BxLxNxH = rope(self.q(x_BxLxD).reshape(B, L, N, H), pos_BxL, cfg.rotary_dim, cfg.rope_theta)
    k_BxLxKxH = rope(self.k(x_BxLxD).reshape(B, L, K, H), pos_BxL, cfg.rotary_dim, cfg.rope_theta)
    v_BxLxKxH = self.v(x_BxLxD).reshape(B, L, K, H)
    if kv is None:
      q_BxLxKxGxH = q_BxLxNxH.reshape(B, L, K, G, H)
      s_BxKxGxLxS = jnp.einsum("blkgh,bskh->bkgls", q_BxLxKxGxH, k_BxLxKxH.astype(q_BxLxNxH.dtype),
                               preferred_element_type=jnp.float32) / math.sqrt(H)
      w_BxKxGxLxS = _masked_softmax(s_BxKxGxLxS, mask_BxLxS).astype(v_BxLxKxH.dtype)
      out_BxLxKxGxH = jnp.einsum("bkgls,bskh->blkgh", w_BxKxGxLxS, v_BxLxKxH)
      return self.o(out_BxLxKxGxH.reshape(B, L, N * H).astype(x_BxLxD.dtype)), None
    # Cached path. The caches hold exactly the operands of attention's two batched products, batch and kv heads
    # merged into one leading axis (kvcache.py): keys [B*K, H, S] and values [B*K, S, H]. Only this call's L new
    # positions are transposed; the cache buffers are updated in place and read as they are.
    k_cache_BKxHxS, v_cache_BKxSxH, end_B = kv
    S = k_cache_BKxHxS.shape[-1]
    keys_BKxHxS = write_rows(k_cache_BKxHxS, k_BxLxKxH.transpose(0, 2, 3, 1).reshape(B * K, H, L), end_B, axis=2)
    values_BKxSxH = write_rows(v_cache_BKxSxH, v_BxLxKxH.transpose(0, 2, 1, 3).reshape(B * K, L, H), end_B, axis=1)
    q_BKxGLxH = q_BxLxNxH.reshape(B, L, K, G, H).transpose(0, 2, 3, 1, 4).reshape(B * K, G * L, H)
    s_BKxGLxS = jnp.einsum("nmh,nhs->nms", q_BKxGLxH, keys_BKxHxS.astype(q_BxLxNxH.dtype),
                           preferred_element_type=jnp.float32) / math.sqrt(H)
    w_BxKxGxLxS = _masked_softmax(s_BKxGLxS.reshape(B, K, G, L, S), mask_BxLxS).astype(values_BKxSxH.dtype)
    out_BKxGLxH = jnp.einsum("nms,nsh->nmh", w_BxKxGxLxS.reshape(B * K, G * L, S), values_BKxSxH)
    out_BxLxNH = out_BKxGLxH.reshape(B, K, G, L, H).transpose(0, 3, 1, 2, 4).reshape(B, L, N * H)
    return self.o(out_BxLxNH.astype(x_BxLxD.dtype)), (keys_BKxHxS, values_BKxSxH)


def _masked_softmax(s_BxKxGxLxS, mask_BxLxS):
  s_BxKxGxLxS = jnp.where(mask_BxLxS[:, None, None], s_BxKxGxLxS, jnp.finfo(jnp.float32).min)
  return jax.nn.softmax(s_BxKxGxLxS, axis=-1)


class MLP(nnx.Module):

  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    self.kind = cfg.mlp
    out_std = 0.02 / math.sqrt(2 * cfg.n_layers)
    if cfg.mlp == "swiglu":
      self.gate = _linear(cfg, cfg.d_model, cfg.d_ff, cfg.mlp_bias, rngs)
    self.up = _linear(cfg, cfg.d_model, cfg.d_ff, cfg.mlp_bias, rngs)
    self.down = _linear(cfg, cfg.d_ff, cfg.d_model, cfg.mlp_bias, rngs, std=out_std)

  def __call__(self, x_BxLxD):
    if self.kind == "swiglu":
      h = jax.nn.silu(self.gate(x_BxLxD)) * self.up(x_BxLxD)
    else:
      h = jax.nn.gelu(self.up(x_BxLxD), approximate=(self.kind == "gelu_tanh"))
    return self.down(h)


class Block(nnx.Module):

  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    self.parallel = cfg.parallel_residual
    self.ln1, self.attn = _norm(cfg, rngs), Attention(cfg, rngs)
    self.ln2, self.mlp = _norm(cfg, rngs), MLP(cfg, rngs)

  def __call__(self, x_BxLxD, pos_BxL, mask_BxLxS, kv=None):
    dt = x_BxLxD.dtype
    a, new_kv = self.attn(self.ln1(x_BxLxD).astype(dt), pos_BxL, mask_BxLxS, kv)
    if self.parallel:
      return x_BxLxD + a + self.mlp(self.ln2(x_BxLxD).astype(dt)), new_kv
    h = x_BxLxD + a
    return h + self.mlp(self.ln2(h).astype(dt)), new_kv


class Transformer(nnx.Module):
  """Decoder-only LM. ``logits_BxLxV, cache = model(tokens_BxL, cache=None)``; logits are float32."""

  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    self.cfg = cfg
    pdt = jnp.dtype(cfg.param_dtype)
    self.embed = nnx.Embed(cfg.vocab_size, cfg.d_model, dtype=jnp.dtype(cfg.dtype), param_dtype=pdt,
                           embedding_init=_init(), rngs=rngs)
    if cfg.pos == "learned":
      self.pos_embed = nnx.Embed(cfg.max_len, cfg.d_model, dtype=jnp.dtype(cfg.dtype), param_dtype=pdt,
                                 embedding_init=_init(0.01), rngs=rngs)
    self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
    self.ln_f = _norm(cfg, rngs)
    if not cfg.tie_embeddings:
      self.lm_head = nnx.Linear(cfg.d_model, cfg.vocab_size, use_bias=cfg.lm_head_bias, dtype=jnp.dtype(cfg.dtype),
                                param_dtype=pdt, kernel_init=_init(), rngs=rngs)

  def __call__(self, tokens_BxL: jax.Array, cache: KVCache | None = None, head_DxV: jax.Array | None = None):
    """``(logits_BxLxV float32, cache)``: ``logits(*hidden(tokens, cache))`` (see the module docstring)."""
    h_BxLxD, cache = self.hidden(tokens_BxL, cache)
    return self.logits(h_BxLxD, head_DxV), cache

  def hidden(self, tokens_BxL: jax.Array, cache: KVCache | None = None):
    """``(h_BxLxD, cache)``: the final-norm hidden states (the LM head's input) and the updated cache."""
    cfg = self.cfg
    B, L = tokens_BxL.shape
    start_B = jnp.zeros((B,), jnp.int32) if cache is None else cache.end_B
    pos_BxL = start_B[:, None] + jnp.arange(L, dtype=jnp.int32)[None, :]
    n_keys = L if cache is None else cache.length
    key_pos_S = jnp.arange(n_keys, dtype=jnp.int32)
    mask_BxLxS = key_pos_S[None, None, :] <= pos_BxL[:, :, None]
    x_BxLxD = self.embed(tokens_BxL)
    if cfg.pos == "learned":
      x_BxLxD = x_BxLxD + self.pos_embed(jnp.minimum(pos_BxL, cfg.max_len - 1))
    ks, vs = [], []
    for i, block in enumerate(self.blocks):
      kv = None if cache is None else (cache.k[i], cache.v[i], start_B)
      x_BxLxD, new_kv = block(x_BxLxD, pos_BxL, mask_BxLxS, kv)
      if new_kv is not None:
        ks.append(new_kv[0])
        vs.append(new_kv[1])
    if cache is not None:
      cache = KVCache(k=tuple(ks), v=tuple(vs), end_B=cache.end_B + L)
    return self.ln_f(x_BxLxD), cache

  def logits(self, h_BxLxD: jax.Array, head_DxV: jax.Array | None = None) -> jax.Array:
    """float32 logits of final-norm hidden states. ``head_DxV``: the output projection as ``head_weight()``
    returns it, computed once outside a loop of multi-token calls (SD's verify); default: the model's own (the
    tied [V, D] embedding, or lm_head)."""
    cfg = self.cfg
    h_BxLxD = h_BxLxD.astype(jnp.dtype(cfg.dtype))
    if head_DxV is not None:
      logits_BxLxV = jnp.dot(h_BxLxD, head_DxV)
      if not cfg.tie_embeddings and cfg.lm_head_bias:
        logits_BxLxV = logits_BxLxV + self.lm_head.bias[...]
    elif cfg.tie_embeddings:
      logits_BxLxV = self.embed.attend(h_BxLxD)
    else:
      logits_BxLxV = self.lm_head(h_BxLxD)
    return logits_BxLxV.astype(jnp.float32)

  def head_weight(self) -> jax.Array:
    """The output projection as a [D, V] array: the tied embedding transposed (a copy) or the lm_head kernel.

    For a loop of multi-token calls (SD's verify), made once outside the loop and passed as ``head_DxV``: the
    logits are then a plain [L, D] x [D, V] product, where with the [V, D] embedding XLA:CPU repacked it on every
    call (~15% of a 4-token call of the garden "micro" target)."""
    if self.cfg.tie_embeddings:
      return jnp.transpose(self.embed.embedding[...]).astype(jnp.dtype(self.cfg.dtype))
    return self.lm_head.kernel[...].astype(jnp.dtype(self.cfg.dtype))


def make_model(cfg: ModelConfig, seed: int = 0) -> Transformer:
  return Transformer(cfg, nnx.Rngs(params=seed))


def count_params(model_or_cfg) -> int:
  """Number of parameters of a model (or of a freshly built model for a config, built abstractly)."""
  if isinstance(model_or_cfg, ModelConfig):
    model = nnx.eval_shape(lambda: make_model(model_or_cfg))
  else:
    model = model_or_cfg
  return sum(int(math.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def next_token(logits_BxLxV: jax.Array, tokens_BxL: jax.Array, mask_BxL: jax.Array):
  """The next-token shift, the ONE place it is written: logits at position t predict token t + 1.

  ``mask_BxL`` marks the tokens that are scored (1 on target tokens, as ``tokenizer.encode_examples`` builds it).
  Returns ``(logits_BxTxV, targets_BxT, mask_BxT)`` with T = L - 1: ``logits[:, :-1]``, ``tokens[:, 1:]`` and
  ``mask[:, 1:]`` as float32."""
  return logits_BxLxV[:, :-1], tokens_BxL[:, 1:], jnp.asarray(mask_BxL)[:, 1:].astype(jnp.float32)


def check_same_vocab(a, b, names: tuple[str, str] = ("target", "draft")) -> None:
  """Raise ValueError unless models (or ModelConfigs) ``a`` and ``b`` share a vocabulary size."""
  va = (a if isinstance(a, ModelConfig) else a.cfg).vocab_size
  vb = (b if isinstance(b, ModelConfig) else b.cfg).vocab_size
  if va != vb:
    raise ValueError(f"vocabularies differ: {names[0]} vocab_size={va}, {names[1]} vocab_size={vb}")
