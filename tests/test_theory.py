"""Tests for dsrepro.theory: closed forms, Monte-Carlo agreement and input validation."""
import warnings

import jax
import numpy as np
import pytest

from dsrepro.sd import theory as th


def _tokens_pmf(alpha, gamma):
  """P(tokens = i + 1) for i = 0..gamma: alpha^i (1 - alpha) below gamma, alpha^gamma at gamma."""
  i = np.arange(gamma + 1)
  pmf = alpha ** i * (1 - alpha)
  pmf[gamma] = alpha ** gamma
  return i + 1, pmf


def test_block_efficiency_values():
  assert th.expected_block_efficiency(0.0, 5) == 1.0
  assert th.expected_block_efficiency(1.0, 5) == 6.0
  assert th.expected_block_efficiency(0.5, 3) == pytest.approx((1 - 0.5 ** 4) / 0.5)   # 1.875
  assert th.expected_block_efficiency(0.5, 3) == pytest.approx(1.875)
  assert th.expected_block_efficiency(0.8, 7) == pytest.approx((1 - 0.8 ** 8) / 0.2, rel=1e-12)
  tokens, pmf = _tokens_pmf(0.7, 4)
  assert th.expected_block_efficiency(0.7, 4) == pytest.approx(float(tokens @ pmf), rel=1e-12)


def test_block_efficiency_vectorised_without_warnings():
  a = np.array([0.0, 0.3, 0.999999, 1.0])
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    tau = th.expected_block_efficiency(a, 5)
  assert isinstance(tau, np.ndarray) and tau.shape == (4,)
  assert np.all(np.isfinite(tau))
  assert tau[-1] == 6.0 and tau[0] == 1.0
  np.testing.assert_allclose(tau[1], (1 - 0.3 ** 6) / 0.7, rtol=1e-12)
  assert abs(tau[2] - 6.0) < 1e-4
  assert np.all(np.diff(tau) > 0)


def test_speedups():
  assert th.expected_speedup(0.5, 3, 0.1) == pytest.approx(1.875 / 1.3)
  assert th.expected_speedup(1.0, 4, 0.0) == 5.0
  assert th.predicted_speedup(3.0, 10.0, 1.0, 12.0, 4) == pytest.approx(30.0 / 16.0)
  # with ideal timings (t_verify = t_target) it equals the expected speedup
  assert th.predicted_speedup(1.875, 1.0, 0.1, 1.0, 3) == pytest.approx(th.expected_speedup(0.5, 3, 0.1))


def test_optimal_gamma():
  # brute force against the formula
  for alpha, c in [(0.5, 0.05), (0.8, 0.05), (0.9, 0.01), (0.3, 0.5)]:
    s = [(1 - alpha ** (g + 1)) / (1 - alpha) / (c * g + 1) for g in range(1, 17)]
    assert th.optimal_gamma(alpha, c) == int(np.argmax(s)) + 1
  assert th.optimal_gamma(0.9, 0.01) > th.optimal_gamma(0.5, 0.01)
  assert th.optimal_gamma(1.0, 0.0, max_gamma=8) == 8


@pytest.mark.parametrize("alpha,gamma", [(0.3, 3), (0.6, 5), (0.85, 7), (1.0, 3), (0.0, 4)])
def test_simulation_matches_formula(alpha, gamma):
  n = 40000
  key = jax.random.fold_in(jax.random.PRNGKey(0), int(alpha * 100) * 10 + gamma)
  sim = th.simulate_block_efficiency(alpha, gamma, n, key)
  tokens, pmf = _tokens_pmf(alpha, gamma)
  mean = th.expected_block_efficiency(alpha, gamma)
  se = np.sqrt(float(((tokens - mean) ** 2) @ pmf) / n)
  assert abs(sim - mean) <= 4 * se + 1e-6, (sim, mean, se)


def test_simulation_uses_key():
  a = th.simulate_block_efficiency(0.5, 3, 1000, jax.random.PRNGKey(1))
  b = th.simulate_block_efficiency(0.5, 3, 1000, jax.random.PRNGKey(1))
  c = th.simulate_block_efficiency(0.5, 3, 1000, jax.random.PRNGKey(2))
  assert a == b and a != c


def test_acceptance_gap_bound():
  assert th.acceptance_gap_bound(0.01, 20) == pytest.approx(0.2)
  np.testing.assert_allclose(th.acceptance_gap_bound(np.array([0.0, 0.001]), 64), [0.0, 0.064])
  with pytest.raises(ValueError, match="T must be"):
    th.acceptance_gap_bound(0.1, 0)
  with pytest.raises(ValueError, match="tvd_on_policy"):
    th.acceptance_gap_bound(1.5, 10)


def test_validation_errors():
  with pytest.raises(ValueError, match="gamma"):
    th.expected_block_efficiency(0.5, 0)
  with pytest.raises(ValueError, match="gamma"):
    th.expected_block_efficiency(0.5, 2.5)
  with pytest.raises(ValueError, match="alpha"):
    th.expected_block_efficiency(1.1, 3)
  with pytest.raises(ValueError, match="alpha"):
    th.expected_block_efficiency(np.array([0.5, -0.1]), 3)
  with pytest.raises(ValueError, match="c must"):
    th.expected_speedup(0.5, 3, -1.0)
  with pytest.raises(ValueError, match="t_verify"):
    th.predicted_speedup(2.0, 1.0, 0.1, 0.0, 3)
  with pytest.raises(ValueError, match="n_blocks"):
    th.simulate_block_efficiency(0.5, 3, 0, jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="alpha"):
    th.simulate_block_efficiency(-0.5, 3, 10, jax.random.PRNGKey(0))
