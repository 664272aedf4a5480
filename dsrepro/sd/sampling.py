"""Sampling policies shared by every sampler: plain decoding, speculative sampling, and KD data generation.

A :class:`Policy` is a frozen (hashable, jit-static) description of how a token is drawn from logits:
``temperature == 0`` is greedy (argmax); otherwise the logits are divided by the temperature, optionally cut to
the top-k tokens and / or the top-p nucleus, and sampled. Every "greedy or not" decision of the package is
``Policy.greedy``; every "greedy" / "T=1" label is :func:`decoding_label`.

Randomness is passed in as Gumbel noise (``gumbel_from_bits`` of raw ``lax.rng_bit_generator`` bits): a sample is
``argmax(filtered logits + Gumbel)``, the rule of ``jax.random.categorical`` (exact samples from the policy's
distribution; a different stream than jax.random for the same key). Samplers draw the bits of a whole step or
block in one op: on CPU each jax.random threefry call lowers to a rolled while loop of small ops.

Every argmax of the package's samplers is :func:`argmax` (jnp.argmax's result, ~10x faster on XLA:CPU).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

__all__ = ["NEG_INF", "argmax", "check_temperature", "decoding_label", "Policy", "uniform_from_bits",
           "gumbel_from_bits"]

NEG_INF = -1e30


def argmax(x_BxV: jax.Array) -> jax.Array:
  """Index of the maximum over the last axis, int32: exactly ``jnp.argmax(x, -1)`` (the first index on ties; a
  NaN counts as the maximum, so the first NaN wins), computed as a max and then a min over the indices that reach
  it. Two plain reductions: XLA:CPU lowers ``jnp.argmax`` to a variadic (value, index) reduce that costs ~4 ns per
  element, ~10x slower (in a jitted loop, [1, 4096]: 18 us vs 2 us; [8, 4096]: 76 us vs 8 us), which at batch 1 is
  a large share of a small draft's call. Run ``benchmarks/speculative.py`` to see the loop's costs."""
  m_Bx1 = jnp.max(x_BxV, axis=-1, keepdims=True)
  hit_BxV = (x_BxV == m_Bx1) | (jnp.isnan(x_BxV) & jnp.isnan(m_Bx1))
  iota_BxV = jax.lax.broadcasted_iota(jnp.int32, x_BxV.shape, x_BxV.ndim - 1)
  return jnp.min(jnp.where(hit_BxV, iota_BxV, x_BxV.shape[-1] - 1), axis=-1)


def check_temperature(temperature: float) -> None:
  if not temperature >= 0.0:  # also catches nan
    raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")


def decoding_label(temperature: float) -> str:
  """``"greedy"`` for temperature 0, else ``f"T={temperature:g}"`` (e.g. "T=1", "T=0.5"): the one spelling of a
  decoding mode in tables, figures and reports."""
  check_temperature(temperature)
  return "greedy" if temperature == 0 else f"T={temperature:g}"


@dataclasses.dataclass(frozen=True)
class Policy:
  """How a token is drawn from logits. temperature 0 = greedy; top_k 0 = no top-k cut; top_p 1 = no nucleus."""
  temperature: float = 0.0
  top_k: int = 0
  top_p: float = 1.0

  def __post_init__(self):
    check_temperature(self.temperature)
    if not 0.0 < self.top_p <= 1.0:
      raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
    if self.top_k < 0:
      raise ValueError(f"top_k must be >= 0, got {self.top_k}")

  @property
  def greedy(self) -> bool:
    return self.temperature == 0

  @property
  def label(self) -> str:
    return decoding_label(self.temperature)

  def logits(self, logits_BxV: jax.Array) -> jax.Array:
    """Tempered (and top-k / top-p filtered) float32 logits; masked entries are NEG_INF. Not for greedy."""
    x = logits_BxV.astype(jnp.float32) / self.temperature
    if self.top_k and self.top_k < x.shape[-1]:
      kth = jax.lax.top_k(x, self.top_k)[0][..., -1:]
      x = jnp.where(x < kth, NEG_INF, x)
    if self.top_p < 1.0:
      sorted_x = jnp.sort(x, axis=-1)[..., ::-1]
      p_sorted = jax.nn.softmax(sorted_x, axis=-1)
      # smallest set whose mass reaches top_p: keep sorted entries whose preceding mass is < top_p
      keep_sorted = (jnp.cumsum(p_sorted, axis=-1) - p_sorted) < self.top_p
      cutoff = jnp.min(jnp.where(keep_sorted, sorted_x, jnp.inf), axis=-1, keepdims=True)
      x = jnp.where(x < cutoff, NEG_INF, x)
    return x

  def probs(self, logits_BxV: jax.Array) -> jax.Array:
    """The distribution ``sample`` draws from: one-hot argmax when greedy, else softmax of ``logits``."""
    if self.greedy:
      return jax.nn.one_hot(argmax(logits_BxV), logits_BxV.shape[-1], dtype=jnp.float32)
    return jax.nn.softmax(self.logits(logits_BxV), axis=-1)

  def sample(self, logits_BxV: jax.Array, gumbel_BxV: jax.Array | None) -> jax.Array:
    """One token per row (int32): argmax when greedy (``gumbel`` unused, may be None), else Gumbel-max."""
    if self.greedy:
      return argmax(logits_BxV)
    return argmax(self.logits(logits_BxV) + gumbel_BxV)

  def sample_probs(self, probs_BxV: jax.Array, gumbel_BxV: jax.Array | None) -> jax.Array:
    """One token per row from explicit (unnormalised) probabilities, e.g. the residual max(0, p - q) of
    speculative sampling: argmax when greedy, else Gumbel-max over log probs (log 0 = -inf never wins)."""
    if self.greedy:
      return argmax(probs_BxV)
    return argmax(jnp.log(probs_BxV) + gumbel_BxV)


def uniform_from_bits(bits):
  """uint32 bits -> float32 uniforms in the OPEN interval (0, 1): a 23-bit grid of midpoints, never 0 or 1.

  23 bits, not 24: (2^24 - 1) + 0.5 is not a float32 (it rounds to 2^24, i.e. u = 1.0 exactly and an infinite
  Gumbel value, which would pick a token regardless of its probability); (2^23 - 1) + 0.5 is exact."""
  return ((bits >> 9).astype(jnp.float32) + 0.5) * (1.0 / (1 << 23))


def gumbel_from_bits(bits):
  return -jnp.log(-jnp.log(uniform_from_bits(bits)))
