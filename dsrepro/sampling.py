"""Token sampling shared by plain decoding and speculative sampling.

``temperature == 0`` means greedy (argmax). Otherwise logits are divided by the temperature, optionally restricted
to the top-k tokens and/or the top-p nucleus, and sampled. ``probs`` returns the distribution that ``sample`` draws
from, which speculative sampling needs for its acceptance test.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

NEG_INF = -1e30


def check_temperature(temperature: float) -> None:
  if not temperature >= 0.0:  # also catches nan
    raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")


def filter_logits(logits_BxV: jax.Array, temperature: float, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """Tempered (and top-k / top-p filtered) logits; masked entries are NEG_INF."""
  x = logits_BxV.astype(jnp.float32) / temperature
  if top_k and top_k < x.shape[-1]:
    kth = jax.lax.top_k(x, top_k)[0][..., -1:]
    x = jnp.where(x < kth, NEG_INF, x)
  if top_p < 1.0:
    sorted_x = jnp.sort(x, axis=-1)[..., ::-1]
    cum = jnp.cumsum(jax.nn.softmax(sorted_x, axis=-1), axis=-1)
    # smallest set whose mass reaches top_p: keep sorted entries whose preceding mass is < top_p
    keep_sorted = (cum - jax.nn.softmax(sorted_x, axis=-1)) < top_p
    cutoff = jnp.min(jnp.where(keep_sorted, sorted_x, jnp.inf), axis=-1, keepdims=True)
    x = jnp.where(x < cutoff, NEG_INF, x)
  return x


def probs(logits_BxV: jax.Array, temperature: float, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """The distribution ``sample`` draws from (one-hot argmax when temperature == 0)."""
  if temperature == 0:
    return jax.nn.one_hot(jnp.argmax(logits_BxV, -1), logits_BxV.shape[-1], dtype=jnp.float32)
  return jax.nn.softmax(filter_logits(logits_BxV, temperature, top_k, top_p), axis=-1)


def sample(logits_BxV: jax.Array, key: jax.Array, temperature: float, top_k: int = 0,
           top_p: float = 1.0) -> jax.Array:
  """One token per row (int32 [B])."""
  if temperature == 0:
    return jnp.argmax(logits_BxV, -1).astype(jnp.int32)
  return jax.random.categorical(key, filter_logits(logits_BxV, temperature, top_k, top_p)).astype(jnp.int32)
