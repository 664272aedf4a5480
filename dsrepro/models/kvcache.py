"""Explicit KV cache for speculative decoding.

One buffer per layer for keys and values, and one end index per batch row. A forward pass over L new tokens
writes them at positions ``end[b] .. end[b] + L - 1`` of row b (a multi-token write, so the target can verify
gamma + 1 tokens in one call); a rollback is just a smaller ``end``. Positions at or beyond ``end`` hold stale
values, which attention never reads because a query at position t only sees keys at positions <= t and every
position <= t has been (re)written before it is queried.
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
from jax import lax


@flax.struct.dataclass
class KVCache:
  """Per-layer key/value buffers plus per-row lengths.

  k: tuple (one per layer) of [B, S, K, H] arrays (S = cache length, K = kv heads, H = head dim).
  v: same as k.
  end_B: int32 [B], number of valid positions of each row (the next write position).
  """
  k: tuple
  v: tuple
  end_B: jax.Array

  @property
  def batch_size(self) -> int:
    return self.end_B.shape[0]

  @property
  def length(self) -> int:
    """S, the number of positions the cache holds."""
    return self.k[0].shape[1]

  def rollback(self, end_B: jax.Array) -> "KVCache":
    """Forget everything at or after ``end_B`` (per row). Buffers are untouched."""
    return self.replace(end_B=jnp.asarray(end_B, jnp.int32))


def init_cache(cfg, batch_size: int, length: int | None = None, dtype=None) -> KVCache:
  """Empty cache for a model config ``cfg`` (dsrepro.models.ModelConfig)."""
  length = cfg.max_len if length is None else int(length)
  if length > cfg.max_len:
    raise ValueError(f"cache length {length} exceeds the model context max_len={cfg.max_len}")
  dtype = jnp.dtype(cfg.dtype) if dtype is None else dtype
  shape = (batch_size, length, cfg.kv_heads, cfg.head_dim)
  zeros = lambda: tuple(jnp.zeros(shape, dtype) for _ in range(cfg.n_layers))
  return KVCache(k=zeros(), v=zeros(), end_B=jnp.zeros((batch_size,), jnp.int32))


def write_rows(buf_BxSxKxH: jax.Array, new_BxLxKxH: jax.Array, start_B: jax.Array) -> jax.Array:
  """Write new_BxLxKxH into buf at per-row offsets start_B (row b at positions start_B[b] ...)."""
  new = new_BxLxKxH.astype(buf_BxSxKxH.dtype)
  if buf_BxSxKxH.shape[0] == 1:  # batch 1: a plain dynamic_update_slice, no scatter
    return lax.dynamic_update_slice(buf_BxSxKxH, new, (0, start_B[0], 0, 0))
  upd = lambda b, n, s: lax.dynamic_update_slice(b, n, (s, 0, 0))
  return jax.vmap(upd)(buf_BxSxKxH, new, start_B)
