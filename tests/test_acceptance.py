"""sd.acceptance: token / sequence acceptance and SD summaries."""

import jax.numpy as jnp
import numpy as np
import pytest

from dsrepro.kd import divergences as dv
from dsrepro.sd import acceptance as mt


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_token_acceptance_is_one_minus_tvd(temperature):
  rng = np.random.default_rng(0)
  p, q = (jnp.asarray(rng.normal(size=(3, 4, 13)) * 2, jnp.float32) for _ in range(2))
  beta = mt.token_acceptance(p, q, temperature)
  assert beta.shape == (3, 4)
  np.testing.assert_allclose(beta, 1.0 - dv.tvd(p, q, temperature), atol=1e-6)
  np.testing.assert_allclose(mt.token_acceptance(p, p, temperature), 1.0, atol=1e-6)
  assert float(beta.min()) > 0 and float(beta.max()) < 1


def test_token_acceptance_reference_value_and_greedy():
  p = jnp.log(jnp.array([[[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]]]))
  q = jnp.log(jnp.array([[[0.1, 0.9], [0.7, 0.3], [0.45, 0.55]]]))
  np.testing.assert_allclose(mt.token_acceptance(p, q, 1.0)[0], [0.2, 0.9, 0.75], atol=1e-6)
  # greedy: accepted iff the argmaxes agree, however close the distributions are
  np.testing.assert_array_equal(mt.token_acceptance(p, q, 0.0)[0], [0.0, 1.0, 1.0])
  with pytest.raises(ValueError, match="temperature"):
    mt.token_acceptance(p, q, -1.0)


def test_sequence_and_mean_alpha():
  beta = jnp.array([[0.5, 1.0, 0.0, 9.0], [0.2, 0.4, 9.0, 9.0], [1.0, 1.0, 1.0, 1.0]])
  mask = jnp.array([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
  alpha = mt.sequence_alpha(beta, mask)
  np.testing.assert_allclose(alpha[:2], [0.5, 0.3], atol=1e-6)
  assert np.isnan(float(alpha[2]))
  # macro average over rows with tokens (not pooled over tokens, which would give 0.42)
  np.testing.assert_allclose(mt.mean_alpha(beta, mask), 0.4, atol=1e-6)


def test_sd_summary_hand_made():
  gamma = 4
  acc = np.array([[4, 2, 0, -1],        # 3 blocks: 6 accepted, 9 tokens
                  [1, 4, 4, 3]])        # 4 blocks: 12 accepted, 16 tokens
  s = mt.sd_summary(acc, gamma)
  assert s["n_blocks"] == 7 and s["n_accepted"] == 18 and s["n_drafted"] == 28
  np.testing.assert_allclose(s["alpha_hat"], 18 / 28)
  np.testing.assert_allclose(s["alpha_hat_B"], [6 / 12, 12 / 16])
  np.testing.assert_allclose(s["tau"], 25 / 7)
  np.testing.assert_allclose(s["tau_B"], [3.0, 4.0])
  # explicit counts: row 0 hit EOS inside its last block (8 tokens) and one extra target call (prefill)
  s = mt.sd_summary(acc, gamma, num_tokens_B=np.array([8, 16]), target_calls_B=np.array([4, 4]))
  np.testing.assert_allclose(s["tau"], 24 / 8)
  np.testing.assert_allclose(s["tau_B"], [2.0, 4.0])
  np.testing.assert_allclose(s["alpha_hat"], 18 / 28)
  with pytest.raises(ValueError, match="gamma"):
    mt.sd_summary(acc, 3)
  with pytest.raises(ValueError, match="num_tokens_B"):
    mt.sd_summary(acc, gamma, num_tokens_B=np.array([1, 2, 3]))


def test_sd_summary_rows_without_blocks():
  s = mt.sd_summary(np.array([[-1, -1], [2, 0]]), 2)
  assert np.isnan(s["tau_B"][0]) and s["tau_B"][1] == 2.0
  assert s["tau"] == 2.0 and s["alpha_hat"] == 0.5
