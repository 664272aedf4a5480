"""Tests for dsrepro.metrics: acceptance measures, SD summaries and task scores."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from dsrepro import divergences as dv
from dsrepro import metrics as mt


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


@pytest.mark.parametrize("text,want", [
    ("So she has 3 + 4 = 7 apples. The final answer is: 7", "7"),
    ("The final answer is: $1,234.", "1234"),
    ("The final answer is 12.50 dollars, not 13", "12.50"),
    ("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72"),
    ("#### -5", "-5"),
    ("she lost $-3 then gained 10, then 15.", "15"),
    ("it costs $2,000,000 total", "2000000"),
    ("no numbers here", None),
    ("", None),
])
def test_extract_final_number(text, want):
  assert mt.extract_final_number(text) == want


def test_extract_final_number_prefers_final_answer_over_hashes():
  assert mt.extract_final_number("#### 3\nThe final answer is: 4. Then 5") == "4"


def test_gsm8k_accuracy():
  preds = ["... The final answer is: 72", "so #### 10.0", "I think 5", "no idea"]
  refs = ["Natalia sold 48 clips ... #### 72", "10", "6", "3"]
  assert mt.gsm8k_accuracy(preds, refs) == 50.0
  assert mt.gsm8k_accuracy(["1,000"], ["1000"]) == 100.0
  with pytest.raises(ValueError, match="length"):
    mt.gsm8k_accuracy(["1"], ["1", "2"])


def test_rouge_identical_and_disjoint():
  a = ["the cat sat on the mat", "dogs are running in the park"]
  r = mt.rouge(a, a)
  for k in ("rouge1", "rouge2", "rougeL"):
    assert r[k] == pytest.approx(100.0)
  r = mt.rouge(["alpha beta gamma"], ["delta epsilon zeta"])
  assert all(v == 0.0 for v in r.values())
  # stemming: "running" and "runs" share a stem
  assert mt.rouge(["he runs"], ["he running"])["rouge1"] == pytest.approx(100.0)
  part = mt.rouge(["the cat sat"], ["the cat sat on the mat"])
  assert 0 < part["rouge2"] < part["rouge1"] < 100


def test_bleu():
  a = ["the quick brown fox jumps over the lazy dog", "a second sentence for the corpus here"]
  assert mt.bleu(a, a) == pytest.approx(100.0)
  assert mt.bleu(["completely unrelated words appear"], a[:1]) < 10


def test_task_score_dispatch():
  p, r = ["the cat sat on the mat"], ["the cat sat on a mat"]
  assert mt.task_score("rouge2", p, r) == pytest.approx(mt.rouge(p, r)["rouge2"])
  assert mt.task_score("bleu", p, r) == pytest.approx(mt.bleu(p, r))
  assert mt.task_score("accuracy", ["#### 3"], ["3"]) == 100.0
  assert math.isnan(mt.task_score("none", p, r))
  with pytest.raises(ValueError, match="rougeL"):
    mt.task_score("meteor", p, r)
