"""Slow, readable reference of speculative sampling: one row, a plain Python loop, numpy RNG, no KV cache.

It works on next-token distribution functions ``p_fn(seq) -> probs [V]`` (target) and ``q_fn(seq) -> probs [V]``
(draft), so tests can feed exact tables; :func:`model_dist_fn` wraps a dsrepro model (a full uncached forward
each call).
``accept_rule`` and ``residual_rule`` can be swapped to show that the statistical tests catch a broken sampler.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from dsrepro.sd.speculative import LENIENCE_FNS


def model_dist_fn(model, temperature: float, bucket: int = 64) -> Callable[[list[int]], np.ndarray]:
  """probs of the next token after ``seq`` under ``model`` at ``temperature`` (one-hot argmax when 0).

  One full forward (no cache) per call. The sequence is zero-padded on the right to a multiple of ``bucket``
  (at most the model's max_len) so the forward compiles once per width instead of once per length; the model is
  causal, so the padding cannot change the logits at ``seq``'s last position."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  graphdef, state = nnx.split(model)
  forward = jax.jit(lambda s, tokens_1xW: nnx.merge(graphdef, s)(tokens_1xW)[0])

  def fn(seq):
    n = len(seq)
    width = min(-(-n // bucket) * bucket, model.cfg.max_len)
    if not 1 <= n <= width:
      raise ValueError(f"sequence length {n} is not in [1, max_len={model.cfg.max_len}]")
    tokens_1xW = np.zeros((1, width), np.int32)
    tokens_1xW[0, :n] = seq
    logits_V = np.asarray(forward(state, jnp.asarray(tokens_1xW))[0, n - 1], np.float64)
    if temperature == 0:
      return np.eye(len(logits_V))[int(np.argmax(logits_V))]
    z = logits_V / temperature
    e = np.exp(z - z.max())
    return e / e.sum()
  return fn


def standard_accept(p_y: float, q_y: float, eps: float, fn: str) -> float:
  """Probability of accepting a drafted token: min(1, f(p, eps) / q)."""
  f = {"lin": p_y / eps, "sq": p_y / eps ** 2, "exp": p_y ** eps}[fn]
  return min(1.0, f / q_y) if q_y > 0 else 1.0


def standard_residual(p: np.ndarray, q: np.ndarray) -> np.ndarray:
  r = np.maximum(p - q, 0.0)
  return r / r.sum() if r.sum() > 0 else p


def speculative_sample_ref(p_fn, q_fn, prompt: list[int], gamma: int, max_new_tokens: int, rng: np.random.Generator,
                           greedy: bool = False, eps: float = 1.0, lenience_fn: str = "lin",
                           eos_id: int | None = None, accept_rule=standard_accept, residual_rule=standard_residual):
  """Returns (emitted tokens, accepted count per block)."""
  if gamma < 1:
    raise ValueError(f"gamma must be >= 1, got {gamma}")
  if lenience_fn not in LENIENCE_FNS:
    raise ValueError(f"lenience_fn must be one of {LENIENCE_FNS}, got {lenience_fn!r}")
  seq, out, accepted = list(prompt), [], []
  while len(out) < max_new_tokens and (eos_id is None or eos_id not in out):
    drafted, qs = [], []
    for _ in range(gamma):                                 # 1. draft gamma tokens
      q = q_fn(seq + drafted)
      y = int(np.argmax(q)) if greedy else int(rng.choice(len(q), p=q))
      drafted.append(y)
      qs.append(q)
    ps = [p_fn(seq + drafted[:i]) for i in range(gamma + 1)]  # 2. what ONE target call would give
    n = 0                                                  # 3. accept while the test passes
    for i, y in enumerate(drafted):
      ok = (y == int(np.argmax(ps[i]))) if greedy else (rng.random() < accept_rule(ps[i][y], qs[i][y], eps,
                                                                                  lenience_fn))
      if not ok:
        break
      n += 1
    if greedy:                                             # 4. correct or bonus token
      z = int(np.argmax(ps[n]))
    elif n < gamma:
      r = residual_rule(ps[n], qs[n])
      z = int(rng.choice(len(r), p=r))
    else:
      z = int(rng.choice(len(ps[n]), p=ps[n]))
    block = drafted[:n] + [z]
    if eos_id is not None and eos_id in block:
      block = block[:block.index(eos_id) + 1]
    block = block[:max_new_tokens - len(out)]
    out += block
    seq += block
    accepted.append(n)
  return out, accepted
