"""Per-token divergences between a teacher (target) p and a student (draft) q (DistillSpec, arXiv 2310.08461,
Sec. 4.2 and Table 1).

Conventions:

* ``t_logits_BxLxV`` are the teacher/target logits (p), ``s_logits_BxLxV`` the student/draft logits (q). Both are
  softmaxed with the same ``temperature``: p = softmax(t_logits / T), q = softmax(s_logits / T).
* Every divergence is computed in log space (``log_softmax`` / ``logsumexp``), summed over the vocabulary and
  returned per token as ``[B, L]``.
* ``mask_BxL`` marks valid tokens (1) against prompt / padding (0); losses are reduced by the number of valid
  tokens, and masked positions never leak (they are selected away with ``where``, not multiplied by 0).
* Probabilities that are exactly zero (logits of -inf or -1e9) are fine: ``0 * log 0`` terms are taken as 0 and the
  gradients w.r.t. the student logits stay finite.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["log_probs", "fkl", "rkl", "jsd", "tvd", "DIVERGENCES", "token_divergence", "masked_mean",
           "divergence_loss"]


def _check_temperature(temperature):
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0, got {temperature!r}")


def _check_shapes(t_logits_BxLxV, s_logits_BxLxV):
  if t_logits_BxLxV.shape != s_logits_BxLxV.shape:
    raise ValueError(f"teacher and student logits differ in shape: {t_logits_BxLxV.shape} vs "
                     f"{s_logits_BxLxV.shape}")


def log_probs(logits_BxLxV, temperature=1.0):
  """log softmax(logits / T) in float32, with -inf clipped to the dtype's most negative finite value.

  The clip keeps ``p * (log p - log q)`` finite (0 where p == 0) and its gradient free of nan.
  """
  _check_temperature(temperature)
  x = jnp.asarray(logits_BxLxV, jnp.float32) / temperature
  lp = jax.nn.log_softmax(x, axis=-1)
  return jnp.maximum(lp, jnp.finfo(lp.dtype).min)


def _kl(la_BxLxV, lb_BxLxV):
  """KL(a || b) = sum_v a (log a - log b) from log-probabilities, with 0 log 0 = 0."""
  a = jnp.exp(la_BxLxV)
  d = jnp.where(a > 0, la_BxLxV - lb_BxLxV, 0.0)
  return jnp.sum(a * d, axis=-1)


def fkl(t_logits_BxLxV, s_logits_BxLxV, temperature=1.0):
  """Forward KL, KL(p || q) per token: [B, L]."""
  _check_shapes(t_logits_BxLxV, s_logits_BxLxV)
  return _kl(log_probs(t_logits_BxLxV, temperature), log_probs(s_logits_BxLxV, temperature))


def rkl(t_logits_BxLxV, s_logits_BxLxV, temperature=1.0):
  """Reverse KL, KL(q || p) per token: [B, L]."""
  _check_shapes(t_logits_BxLxV, s_logits_BxLxV)
  return _kl(log_probs(s_logits_BxLxV, temperature), log_probs(t_logits_BxLxV, temperature))


def jsd(t_logits_BxLxV, s_logits_BxLxV, temperature=1.0, beta=0.5):
  """Generalised Jensen-Shannon divergence per token, TRL ``GKDTrainer.generalized_jsd_loss`` convention: [B, L].

  M = beta p + (1 - beta) q and JSD = beta KL(p || M) + (1 - beta) KL(q || M), with
  log M = logsumexp(log beta + log p, log(1 - beta) + log q). Like TRL, beta == 0 returns FKL = KL(p || q) and
  beta == 1 returns RKL = KL(q || p) exactly (note: the mixture formula itself tends to 0 at both ends, so the
  special cases are a convention, not a limit). ``beta`` must be a Python number in [0, 1].
  """
  beta = float(beta)
  if not 0.0 <= beta <= 1.0:
    raise ValueError(f"beta must be in [0, 1], got {beta!r}")
  if beta == 0.0:
    return fkl(t_logits_BxLxV, s_logits_BxLxV, temperature)
  if beta == 1.0:
    return rkl(t_logits_BxLxV, s_logits_BxLxV, temperature)
  _check_shapes(t_logits_BxLxV, s_logits_BxLxV)
  lp = log_probs(t_logits_BxLxV, temperature)
  lq = log_probs(s_logits_BxLxV, temperature)
  lm = jnp.logaddexp(jnp.log(beta) + lp, jnp.log1p(-beta) + lq)
  return beta * _kl(lp, lm) + (1.0 - beta) * _kl(lq, lm)


def tvd(t_logits_BxLxV, s_logits_BxLxV, temperature=1.0):
  """Total variation distance per token, 0.5 * sum_v |p - q| (a SUM over the vocabulary): [B, L].

  Equals 1 - sum_v min(p, q), i.e. one minus the token acceptance rate of speculative sampling.
  """
  _check_shapes(t_logits_BxLxV, s_logits_BxLxV)
  p = jnp.exp(log_probs(t_logits_BxLxV, temperature))
  q = jnp.exp(log_probs(s_logits_BxLxV, temperature))
  return 0.5 * jnp.sum(jnp.abs(p - q), axis=-1)


# Every divergence, in the column order of DistillSpec Fig. 4.
DIVERGENCES = ("fkl", "jsd", "rkl", "tvd")


def token_divergence(name, t_logits_BxLxV, s_logits_BxLxV, temperature=1.0, beta=0.5):
  """Dispatch by name over ``DIVERGENCES``; ``beta`` is used by "jsd" only. Returns [B, L]."""
  if name == "fkl":
    return fkl(t_logits_BxLxV, s_logits_BxLxV, temperature)
  if name == "rkl":
    return rkl(t_logits_BxLxV, s_logits_BxLxV, temperature)
  if name == "jsd":
    return jsd(t_logits_BxLxV, s_logits_BxLxV, temperature, beta)
  if name == "tvd":
    return tvd(t_logits_BxLxV, s_logits_BxLxV, temperature)
  raise ValueError(f"unknown divergence {name!r}; known: {', '.join(DIVERGENCES)}")


def masked_mean(x_BxL, mask_BxL):
  """sum(x * mask) / max(sum(mask), 1): the mean over valid tokens; masked entries (even inf/nan) never leak."""
  x_BxL = jnp.asarray(x_BxL)
  mask_BxL = jnp.asarray(mask_BxL, jnp.float32)
  if x_BxL.shape != mask_BxL.shape:
    raise ValueError(f"x and mask differ in shape: {x_BxL.shape} vs {mask_BxL.shape}")
  x_BxL = jnp.where(mask_BxL != 0, x_BxL, 0.0)
  return jnp.sum(x_BxL * mask_BxL) / jnp.maximum(jnp.sum(mask_BxL), 1.0)


def divergence_loss(name, t_logits_BxLxV, s_logits_BxLxV, mask_BxL, temperature=1.0, beta=0.5):
  """Scalar KD loss: the token divergence averaged over valid tokens. The teacher is a constant (stop_gradient)."""
  t_logits_BxLxV = jax.lax.stop_gradient(t_logits_BxLxV)
  d_BxL = token_divergence(name, t_logits_BxLxV, s_logits_BxLxV, temperature, beta)
  return masked_mean(d_BxL, mask_BxL)
