"""AdaSPEC's selective distillation loss (Hu et al., arXiv 2510.19779, Sec. 3; the authors' public code).

Per valid token t: L_draft(t) = KL(p_t || q_t) (draft), L_ref(t) = KL(p_t || r_t) (a reference model: a copy of
the draft's initial weights distilled with plain FKL), Delta(t) = L_draft(t) - L_ref(t). Tokens whose Delta is in
the top fraction k of the batch (quantile with numpy's linear interpolation) are the ones the draft can still
learn; the loss is the sum of L_draft over kept tokens divided by the number of ALL valid tokens, as in the
authors' code. The two-stage driver is ``dsrepro.kd.distill.adaspec``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from dsrepro.kd.divergences import fkl

__all__ = ["masked_quantile", "adaspec_select", "adaspec_loss"]


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
  """AdaSPEC selective KD loss (arXiv 2510.19779). Returns ``(loss, aux)``.

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
