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

  k: tuple (one per layer) of [B*K, H, S] arrays (B rows, K kv heads, H head dim, S cache length; row b's head k
     is entry b*K + k).
  v: tuple (one per layer) of [B*K, S, H] arrays.
  end_B: int32 [B], number of valid positions of each row (the next write position).

  The layouts are exactly the operands of attention's two batched products (kv heads and rows merged into one
  batch axis): scores = q [BK, GL, H] @ k [BK, H, S] and out = w [BK, GL, S] @ v [BK, S, H]. XLA then updates
  the buffers in place and reads them as they are. Measured on the jitted decoding loops (benchmarks/
  speculative.py): a [B, S, K, H] cache made XLA transpose the WHOLE cache of every layer on every call, and a
  [B, K, H, S] one made it duplicate each cache write into the reshape (B, K) -> (B*K) and copy the cache three
  times per layer and call.
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
    return self.k[0].shape[-1]

  def rollback(self, end_B: jax.Array) -> "KVCache":
    """Forget everything at or after ``end_B`` (per row). Buffers are untouched."""
    return self.replace(end_B=jnp.asarray(end_B, jnp.int32))


def init_cache(cfg, batch_size: int, length: int | None = None, dtype=None) -> KVCache:
  """Empty cache for a model config ``cfg`` (dsrepro.models.ModelConfig)."""
  length = cfg.max_len if length is None else int(length)
  if length > cfg.max_len:
    raise ValueError(f"cache length {length} exceeds the model context max_len={cfg.max_len}")
  dtype = jnp.dtype(cfg.dtype) if dtype is None else dtype
  B, S, K, H = batch_size, length, cfg.kv_heads, cfg.head_dim
  zeros = lambda shape: tuple(jnp.zeros(shape, dtype) for _ in range(cfg.n_layers))
  return KVCache(k=zeros((B * K, H, S)), v=zeros((B * K, S, H)), end_B=jnp.zeros((B,), jnp.int32))


def write_rows(buf_Rx: jax.Array, new_Rx: jax.Array, start_B: jax.Array, axis: int = 1) -> jax.Array:
  """Write ``new_Rx`` into ``buf_Rx`` along ``axis`` at per-row offsets: the R = B * r leading rows come in B
  groups of r (a KV cache's kv heads, r = 1 for a plain [B, ...] buffer) and group b writes at ``start_B[b]``.

  The other axes of ``new_Rx`` match ``buf_Rx``'s. One group (batch 1) is a plain dynamic_update_slice; more
  are one per row (vmapped: a scatter). Both update the buffer in place inside a jitted loop."""
  new = new_Rx.astype(buf_Rx.dtype)

  def at(start, ndim, ax):
    return tuple(start if i == ax else jnp.int32(0) for i in range(ndim))
  if start_B.shape[0] == 1:
    return lax.dynamic_update_slice(buf_Rx, new, at(start_B[0], buf_Rx.ndim, axis))
  start_R = jnp.repeat(start_B, buf_Rx.shape[0] // start_B.shape[0])
  upd = lambda b, n, s: lax.dynamic_update_slice(b, n, at(s, buf_Rx.ndim - 1, axis - 1))
  return jax.vmap(upd)(buf_Rx, new, start_R)
