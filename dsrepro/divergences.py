"""Per-token divergences between a teacher (target) p and a student (draft) q, and AdaSPEC token selection.

Conventions (REFERENCE.md sec. 3 and 5):

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
           "divergence_loss", "masked_quantile", "adaspec_select", "adaspec_loss"]


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


DIVERGENCES = ("fkl", "rkl", "jsd", "tvd")


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


def masked_quantile(x_BxL, mask_BxL, q):
  """Quantile ``q`` of the valid entries of ``x`` (all rows pooled), numpy's default 'linear' method; jit-safe.

  Invalid entries are pushed to +inf and sorted last; with n valid entries the quantile interpolates between the
  sorted values at floor(q (n - 1)) and the next one, indexed dynamically by n. Returns nan when n == 0.
  """
  q = float(q)
  if not 0.0 <= q <= 1.0:
    raise ValueError(f"quantile q must be in [0, 1], got {q!r}")
  x_N = jnp.ravel(jnp.asarray(x_BxL, jnp.float32))
  valid_N = jnp.ravel(jnp.asarray(mask_BxL)) != 0
  if x_N.shape != valid_N.shape:
    raise ValueError(f"x and mask differ in shape: {jnp.shape(x_BxL)} vs {jnp.shape(mask_BxL)}")
  n = jnp.sum(valid_N.astype(jnp.int32))
  sorted_N = jnp.sort(jnp.where(valid_N, x_N, jnp.inf))
  pos = q * (jnp.maximum(n, 1) - 1).astype(jnp.float32)
  lo = jnp.floor(pos).astype(jnp.int32)
  hi = jnp.minimum(lo + 1, jnp.maximum(n - 1, 0))
  t = pos - lo.astype(jnp.float32)
  a, b = sorted_N[lo], sorted_N[hi]
  diff = jnp.where(hi > lo, b - a, 0.0)
  # numpy's _lerp: a + t (b - a), but b - (1 - t)(b - a) for t >= 0.5 (never overshoots b).
  out = jnp.where(t >= 0.5, b - diff * (1.0 - t), a + diff * t)
  return jnp.where(n > 0, out, jnp.nan)


def adaspec_select(delta_BxL, mask_BxL, k=0.4):
  """AdaSPEC token filter: keep valid tokens with delta >= quantile(delta over the batch's valid tokens, 1 - k).

  ``delta = L_draft - L_ref`` measures how much harder a token is for the draft than for the reference model;
  the top-k fraction (ties at the threshold all kept) is trained on. Returns ``keep_BxL`` as float 0/1; invalid
  tokens are never kept. ``0 < k <= 1``.
  """
  return _select(delta_BxL, mask_BxL, k)[0]


def _select(delta_BxL, mask_BxL, k):
  k = float(k)
  if not 0.0 < k <= 1.0:
    raise ValueError(f"k must be in (0, 1], got {k!r}")
  thr = masked_quantile(delta_BxL, mask_BxL, 1.0 - k)
  keep_BxL = (jnp.asarray(mask_BxL) != 0) & (jnp.asarray(delta_BxL, jnp.float32) >= thr)
  return keep_BxL.astype(jnp.float32), thr


def adaspec_loss(t_logits_BxLxV, s_logits_BxLxV, ref_logits_BxLxV, mask_BxL, k=0.4, temperature=1.0):
  """AdaSPEC selective KD loss (REFERENCE.md sec. 5). Returns ``(loss, aux)``.

  L_draft = KL(p || q), L_ref = KL(p || r) per token, delta = stop_gradient(L_draft - L_ref),
  keep = adaspec_select(delta, mask, k), loss = sum(L_draft * keep) / max(sum(mask), 1) -- divided by the number
  of ALL valid tokens, as in the authors' code. Teacher and reference logits are constants.
  aux = {"selected_frac": sum(keep) / sum(mask), "threshold": the delta quantile}.
  """
  t_logits_BxLxV = jax.lax.stop_gradient(t_logits_BxLxV)
  ref_logits_BxLxV = jax.lax.stop_gradient(ref_logits_BxLxV)
  l_draft_BxL = fkl(t_logits_BxLxV, s_logits_BxLxV, temperature)
  l_ref_BxL = fkl(t_logits_BxLxV, ref_logits_BxLxV, temperature)
  delta_BxL = jax.lax.stop_gradient(l_draft_BxL - l_ref_BxL)
  mask_BxL = jnp.asarray(mask_BxL, jnp.float32)
  keep_BxL, thr = _select(delta_BxL, mask_BxL, k)
  n_valid = jnp.maximum(jnp.sum(mask_BxL), 1.0)
  loss = jnp.sum(jnp.where(keep_BxL > 0, l_draft_BxL, 0.0)) / n_valid
  aux = {"selected_frac": jnp.sum(keep_BxL) / n_valid,
         "threshold": thr}
  return loss, aux
