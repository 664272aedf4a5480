"""Efficiency measures of speculative decoding (DistillSpec, arXiv 2310.08461, Sec. 3) and task scores.

* Token acceptance beta_t = sum_v min(p_t(v), q_t(v)) = 1 - TVD(p_t, q_t) (Leviathan et al. 2023, Cor. 3.6);
  p = target, q = draft, both softmaxed at the decoding temperature. At temperature 0 (greedy SD) the draft token
  argmax q is accepted iff it equals argmax p, so beta_t is 1.0 or 0.0.
* Sequence acceptance alpha(x) = mean of beta over the valid tokens of the output (paper Eq. 1).
* Empirical SD statistics (``sd_summary``) come from real speculative runs: alpha_hat = accepted / drafted and
  tau = tokens emitted / target calls (block efficiency).
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from dsrepro.sd.sampling import Policy

__all__ = ["token_acceptance", "sequence_alpha", "mean_alpha", "sd_summary"]


# ------------------------------------------------------------------------------------------------ acceptance


def token_acceptance(p_logits_BxLxV, q_logits_BxLxV, temperature):
  """Per-token acceptance probability of speculative sampling: [B, L], beta = sum_v min(p, q) with p and q the
  target's and draft's distributions under ``Policy(temperature)``. When greedy both are one-hot, so beta is 1.0
  where argmax p == argmax q, else 0.0: greedy SD accepts the draft's argmax exactly when the target agrees."""
  if p_logits_BxLxV.shape != q_logits_BxLxV.shape:
    raise ValueError(f"target and draft logits differ in shape: {p_logits_BxLxV.shape} vs "
                     f"{q_logits_BxLxV.shape}")
  policy = Policy(float(temperature))
  return jnp.sum(jnp.minimum(policy.probs(p_logits_BxLxV), policy.probs(q_logits_BxLxV)), axis=-1)


def sequence_alpha(beta_BxL, mask_BxL):
  """alpha_B: mean of beta over each row's valid tokens (paper Eq. 1); nan for a row with no valid token."""
  beta_BxL = jnp.asarray(beta_BxL, jnp.float32)
  mask_BxL = jnp.asarray(mask_BxL, jnp.float32)
  if beta_BxL.shape != mask_BxL.shape:
    raise ValueError(f"beta and mask differ in shape: {beta_BxL.shape} vs {mask_BxL.shape}")
  n_B = jnp.sum(mask_BxL, axis=-1)
  s_B = jnp.sum(jnp.where(mask_BxL != 0, beta_BxL, 0.0) * mask_BxL, axis=-1)
  return jnp.where(n_B > 0, s_B / jnp.maximum(n_B, 1.0), jnp.nan)


def mean_alpha(beta_BxL, mask_BxL):
  """E_x[alpha(x)]: the mean of ``sequence_alpha`` over rows that have at least one valid token (nan if none)."""
  alpha_B = sequence_alpha(beta_BxL, mask_BxL)
  ok_B = ~jnp.isnan(alpha_B)
  n = jnp.sum(ok_B)
  return jnp.where(n > 0, jnp.sum(jnp.where(ok_B, alpha_B, 0.0)) / jnp.maximum(n, 1), jnp.nan)


def sd_summary(accepted_BxK, gamma, num_tokens_B=None, target_calls_B=None):
  """Summarise speculative-decoding runs (numpy in, numpy / float out).

  Args:
    accepted_BxK: int, accepted draft tokens in each block (0..gamma); -1 marks blocks that were not run.
    gamma: block size (draft tokens proposed per block).
    num_tokens_B: tokens emitted per row. Default: sum over run blocks of (accepted + 1).
    target_calls_B: target forward calls per row. Default: the number of run blocks (one verify call each).

  Every run block counts gamma drafted tokens, also a block cut short by EOS or the length budget, so alpha_hat is
  slightly pessimistic near the end of a sequence. Returns a dict with
    alpha_hat = total accepted / total drafted, alpha_hat_B per row,
    tau = total tokens / total target calls (block efficiency), tau_B per row (nan where a row made no call),
    and the totals n_blocks, n_accepted, n_drafted, n_tokens, n_target_calls.
  """
  acc_BxK = np.asarray(accepted_BxK)
  if acc_BxK.ndim != 2:
    raise ValueError(f"accepted_BxK must be 2-D, got shape {acc_BxK.shape}")
  if int(gamma) != gamma or gamma < 1:
    raise ValueError(f"gamma must be an integer >= 1, got {gamma!r}")
  if acc_BxK.size and (acc_BxK.min() < -1 or acc_BxK.max() > gamma):
    raise ValueError(f"accepted counts must be in [-1, gamma={gamma}], got range "
                     f"[{acc_BxK.min()}, {acc_BxK.max()}]")
  run_BxK = acc_BxK >= 0
  blocks_B = run_BxK.sum(axis=1)
  acc_B = np.where(run_BxK, acc_BxK, 0).sum(axis=1)
  tokens_B = acc_B + blocks_B if num_tokens_B is None else np.asarray(num_tokens_B)
  calls_B = blocks_B if target_calls_B is None else np.asarray(target_calls_B)
  for name, v in (("num_tokens_B", tokens_B), ("target_calls_B", calls_B)):
    if v.shape != blocks_B.shape:
      raise ValueError(f"{name} must have shape {blocks_B.shape}, got {v.shape}")
  drafted_B = gamma * blocks_B
  with np.errstate(divide="ignore", invalid="ignore"):
    alpha_B = np.where(drafted_B > 0, acc_B / np.maximum(drafted_B, 1), np.nan)
    tau_B = np.where(calls_B > 0, tokens_B / np.maximum(calls_B, 1), np.nan)
  n_drafted, n_calls = int(drafted_B.sum()), int(calls_B.sum())
  return {
      "alpha_hat": float(acc_B.sum() / n_drafted) if n_drafted else math.nan,
      "alpha_hat_B": alpha_B,
      "tau": float(tokens_B.sum() / n_calls) if n_calls else math.nan,
      "tau_B": tau_B,
      "n_blocks": int(blocks_B.sum()),
      "n_accepted": int(acc_B.sum()),
      "n_drafted": n_drafted,
      "n_tokens": int(tokens_B.sum()),
      "n_target_calls": n_calls,
  }
