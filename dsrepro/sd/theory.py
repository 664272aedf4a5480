"""Speculative-decoding theory: block efficiency, speedup, simulation, and DistillSpec's Thm 4.1 bound.

Conventions (DistillSpec, arXiv 2310.08461, Sec. 3): alpha in [0, 1] is the i.i.d. per-token acceptance rate,
gamma >= 1 the block size (draft tokens per target call), c = t_draft / t_target the relative latency, tau the
block efficiency (tokens emitted per target call). Functions accept Python floats or numpy arrays for alpha and
return the same kind (float for scalar input).
"""
from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["expected_block_efficiency", "speedup_from_tau", "expected_speedup", "predicted_speedup",
           "simulate_block_efficiency",
           "optimal_gamma", "acceptance_gap_bound"]


def _check_gamma(gamma):
  try:
    gamma = operator.index(gamma)
  except TypeError:
    raise ValueError(f"gamma must be an integer >= 1, got {gamma!r}") from None
  if gamma < 1:
    raise ValueError(f"gamma must be an integer >= 1, got {gamma!r}")
  return gamma


def _check_alpha(alpha):
  a = np.asarray(alpha, dtype=np.float64)
  if np.any(np.isnan(a)) or np.any(a < 0) or np.any(a > 1):
    raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
  return a


def _out(x):
  return float(x) if np.ndim(x) == 0 else x


def expected_block_efficiency(alpha, gamma):
  """tau(alpha, gamma) = (1 - alpha^(gamma+1)) / (1 - alpha), expected tokens per target call.

  Evaluated as the geometric sum 1 + alpha + ... + alpha^gamma (Horner), which equals the closed form, gives the
  alpha -> 1 limit gamma + 1 exactly, and avoids the cancellation / 0/0 of the closed form near alpha = 1.
  """
  gamma = _check_gamma(gamma)
  a = _check_alpha(alpha)
  tau = np.ones_like(a)
  for _ in range(gamma):
    tau = 1.0 + a * tau
  return _out(tau)


def speedup_from_tau(tau, gamma, c):
  """The paper's model of the wall-time speedup over target-only decoding: tau / (c * gamma + 1) (DistillSpec
  Sec. 3; Leviathan et al. 2023, Thm 3.8). Each block costs gamma draft calls of relative cost c and one target
  call, and emits tau tokens."""
  gamma = _check_gamma(gamma)
  c_ = np.asarray(c, dtype=np.float64)
  if np.any(np.isnan(c_)) or np.any(c_ < 0):
    raise ValueError(f"relative latency c must be >= 0, got {c!r}")
  return _out(np.asarray(tau, dtype=np.float64) / (c_ * gamma + 1.0))


def expected_speedup(alpha, gamma, c):
  """Expected wall-time speedup under i.i.d. acceptance alpha: speedup_from_tau(tau(alpha, gamma), gamma, c)."""
  return speedup_from_tau(expected_block_efficiency(alpha, gamma), gamma, c)


def predicted_speedup(tau, t_target, t_draft, t_verify, gamma):
  """Speedup predicted from measured times: tau * t_target / (gamma * t_draft + t_verify).

  t_target: one target decoding step (target-only decoding costs that per token); t_draft: one draft step;
  t_verify: one target verification call over gamma + 1 positions; tau: measured block efficiency.
  """
  gamma = _check_gamma(gamma)
  tau, t_target, t_draft, t_verify = (np.asarray(v, np.float64) for v in (tau, t_target, t_draft, t_verify))
  for name, v, lo in (("tau", tau, 1e-300), ("t_target", t_target, 1e-300), ("t_draft", t_draft, 0.0),
                      ("t_verify", t_verify, 1e-300)):
    if np.any(np.isnan(v)) or np.any(v < lo):
      raise ValueError(f"{name} must be {'>= 0' if lo == 0 else '> 0'}, got {v!r}")
  return _out(tau * t_target / (gamma * t_draft + t_verify))


def simulate_block_efficiency(alpha, gamma, n_blocks, key):
  """Monte-Carlo tau: each block draws gamma i.i.d. Bernoulli(alpha) acceptances (jax.random, explicit key).

  n = number accepted before the first rejection (at most gamma); the block emits n + 1 tokens (the correction
  or bonus token). Returns the mean tokens per block over ``n_blocks`` blocks as a float.
  """
  gamma = _check_gamma(gamma)
  a = float(_check_alpha(alpha))
  n_blocks = operator.index(n_blocks)
  if n_blocks < 1:
    raise ValueError(f"n_blocks must be >= 1, got {n_blocks!r}")
  ok_NxG = jax.random.bernoulli(key, a, (n_blocks, gamma)).astype(jnp.int32)
  n_N = jnp.sum(jnp.cumprod(ok_NxG, axis=1), axis=1)
  return float(jnp.mean(n_N.astype(jnp.float32) + 1.0))


def optimal_gamma(alpha, c, max_gamma=16):
  """The block size in 1..max_gamma that maximises expected_speedup(alpha, gamma, c) (smallest on ties)."""
  max_gamma = _check_gamma(max_gamma)
  if np.ndim(alpha) != 0 or np.ndim(c) != 0:
    raise ValueError(f"alpha and c must be scalars, got {alpha!r}, {c!r}")
  s = [expected_speedup(alpha, g, c) for g in range(1, max_gamma + 1)]
  return int(np.argmax(s)) + 1


def acceptance_gap_bound(tvd_on_policy, T):
  """DistillSpec Thm 4.1: the drop of acceptance rate is at most T * (on-policy TVD), linear in T.

  Statement (reconstructed from the paper's Lemma B.1 -- alpha(x) = 1 - (1/L_p(x)) sum_t A_t and
  eps(x) >= (1/T) sum_t E_t -- and the proof sketch "a linear error bound in T"): with
  eps(x) = E_{y ~ q(.|x)}[(1/L_q(x)) sum_t TVD(p(y_t), q(y_t))] the on-policy KD loss (TVD averaged over the
  student's own samples) and T the maximum output length,
      E_x[alpha(x)] >= 1 - T * E_x[eps(x)],   i.e.   1 - E_x[alpha(x)] <= T * E_x[eps(x)].
  So a small on-policy TVD guarantees a high acceptance rate under the teacher's distribution, which justifies
  distilling on student-generated data. Returns T * tvd_on_policy (the bound on 1 - alpha; it is vacuous above 1).
  """
  T_ = np.asarray(T, dtype=np.float64)
  if np.any(np.isnan(T_)) or np.any(T_ < 1):
    raise ValueError(f"output length T must be >= 1, got {T!r}")
  e = np.asarray(tvd_on_policy, dtype=np.float64)
  if np.any(np.isnan(e)) or np.any(e < 0) or np.any(e > 1):
    raise ValueError(f"tvd_on_policy must be in [0, 1], got {tvd_on_policy!r}")
  return _out(T_ * e)
