"""sd.sampling: the policy every sampler uses (greedy / temperature / top-k / top-p) and its labels."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsrepro.sd.sampling import Policy, argmax, decoding_label, gumbel_from_bits, uniform_from_bits


def test_top_p_and_top_k_restrict_support():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  np.testing.assert_allclose(Policy(1.0, top_k=2).probs(logits), [[0.625, 0.375, 0, 0]], atol=1e-6)
  np.testing.assert_allclose(Policy(1.0, top_p=0.7).probs(logits), [[0.625, 0.375, 0, 0]], atol=1e-6)
  np.testing.assert_allclose(Policy(1.0, top_p=0.9).probs(logits), [[0.5 / .95, 0.3 / .95, 0.15 / .95, 0]],
                             atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_argmax_equals_jnp_argmax_on_ties_infinities_and_nans(dtype):
  rng = np.random.default_rng(0)
  x = rng.integers(-3, 4, size=(64, 3, 17)).astype(np.float32)  # few distinct values: many ties
  x[0, 0] = -np.inf
  x[1, 0, 5] = x[1, 1, 16] = np.inf
  x[2, 0, 7] = x[2, 0, 3] = np.nan
  x[3, 1] = np.nan
  x = jnp.asarray(x, dtype)
  got = jax.jit(argmax)(x)
  assert got.dtype == jnp.int32 and got.shape == (64, 3)
  np.testing.assert_array_equal(got, jnp.argmax(x, -1))
  assert int(got[2, 0]) == 3 and int(got[1, 1]) == 16 and int(got[0, 0]) == 0


def test_greedy_is_one_hot_and_ignores_noise():
  logits = jnp.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]])
  g = Policy(0.0)
  assert g.greedy and not Policy(0.7).greedy
  np.testing.assert_array_equal(g.probs(logits), [[0, 1, 0], [1, 0, 0]])
  np.testing.assert_array_equal(g.sample(logits, None), [1, 0])
  np.testing.assert_array_equal(g.sample_probs(jnp.array([[0.2, 0.0, 0.7]]), None), [2])


def test_gumbel_max_samples_the_policy_distribution():
  """Gumbel-max over 40k draws matches softmax(logits / T) (chi-square-free check: 4 sigma per cell)."""
  logits = jnp.log(jnp.array([0.5, 0.3, 0.15, 0.05]))[None].repeat(40000, 0)
  bits = jax.random.bits(jax.random.key(0), logits.shape, jnp.uint32)
  for pol in (Policy(1.0), Policy(2.0), Policy(1.0, top_k=2)):
    want = np.asarray(pol.probs(logits[:1]))[0]
    got = np.bincount(np.asarray(pol.sample(logits, gumbel_from_bits(bits))), minlength=4) / len(logits)
    sd = np.sqrt(want * (1 - want) / len(logits)) + 1e-9
    assert np.all(np.abs(got - want) <= 4 * sd + 1e-12), (pol, got, want)
  resid = jnp.array([[0.0, 0.2, 0.6, 0.0]]).repeat(40000, 0)  # unnormalised, with zeros
  got = np.bincount(np.asarray(Policy(1.0).sample_probs(resid, gumbel_from_bits(bits))), minlength=4)
  assert got[0] == got[3] == 0 and abs(got[2] / got.sum() - 0.75) < 0.01


def test_uniforms_stay_inside_the_open_interval():
  """The extreme bit patterns give uniforms strictly inside (0, 1) and finite Gumbel noise (with 24 bits the
  largest pattern rounded to exactly 1.0 in float32)."""
  bits = jnp.array([0, 0xFFFFFFFF, 0xFFFFFF00, 0x80000000], jnp.uint32)
  u = np.asarray(uniform_from_bits(bits))
  assert (u > 0).all() and (u < 1).all(), u
  assert np.isfinite(np.asarray(gumbel_from_bits(bits))).all()


def test_labels_and_errors():
  assert decoding_label(0) == "greedy" and decoding_label(1.0) == "T=1" and decoding_label(0.5) == "T=0.5"
  assert Policy(0.0).label == "greedy" and Policy(0.5).label == "T=0.5"
  for bad, match in ((dict(temperature=-1.0), "temperature must be >= 0"), (dict(temperature=float("nan")),
                     "temperature"), (dict(temperature=1.0, top_p=0.0), "top_p"),
                     (dict(temperature=1.0, top_k=-1), "top_k")):
    with pytest.raises(ValueError, match=match):
      Policy(**bad)
