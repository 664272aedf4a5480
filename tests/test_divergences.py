"""kd.divergences against the check values of TRL's generalized JSD convention (p = [0.9, 0.1], q = [0.1, 0.9]:
FKL = RKL = 0.8 ln 9, JSD(0.5) = 0.368064) and an independent numpy implementation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import log_softmax as np_log_softmax

from dsrepro.kd import divergences as dv

P = np.array([0.9, 0.1])
Q = np.array([0.1, 0.9])


def _as_logits(p):
  return jnp.asarray(np.log(p), jnp.float32)[None, None, :]


# ------------------------------------------------------------------------------ independent numpy reference


def np_divergence(name, t, s, temperature=1.0, beta=0.5):
  lp = np_log_softmax(np.asarray(t, np.float64) / temperature, axis=-1)
  lq = np_log_softmax(np.asarray(s, np.float64) / temperature, axis=-1)
  p, q = np.exp(lp), np.exp(lq)
  kl = lambda a, la, lb: np.sum(a * (la - lb), axis=-1)
  if name == "fkl" or (name == "jsd" and beta == 0):
    return kl(p, lp, lq)
  if name == "rkl" or (name == "jsd" and beta == 1):
    return kl(q, lq, lp)
  if name == "jsd":
    m = beta * p + (1 - beta) * q
    return beta * kl(p, lp, np.log(m)) + (1 - beta) * kl(q, lq, np.log(m))
  if name == "tvd":
    return 0.5 * np.abs(p - q).sum(-1)
  raise AssertionError(name)


# ------------------------------------------------------------------------------ check values


def test_reference_check_values():
  t, s = _as_logits(P), _as_logits(Q)
  np.testing.assert_allclose(dv.fkl(t, s)[0, 0], 0.8 * np.log(9), atol=1e-5)
  np.testing.assert_allclose(dv.fkl(t, s)[0, 0], 1.757780, atol=1e-5)
  np.testing.assert_allclose(dv.rkl(t, s)[0, 0], 1.757780, atol=1e-5)
  np.testing.assert_allclose(dv.jsd(t, s, beta=0.5)[0, 0], 0.368064, atol=1e-5)
  np.testing.assert_allclose(dv.tvd(t, s)[0, 0], 0.8, atol=1e-6)


def test_asymmetric_check_values_distinguish_fkl_rkl():
  p, q = np.array([0.7, 0.2, 0.1]), np.array([0.2, 0.3, 0.5])
  t, s = _as_logits(p), _as_logits(q)
  np.testing.assert_allclose(dv.fkl(t, s)[0, 0], np.sum(p * np.log(p / q)), atol=1e-5)
  np.testing.assert_allclose(dv.rkl(t, s)[0, 0], np.sum(q * np.log(q / p)), atol=1e-5)
  assert abs(float(dv.fkl(t, s)[0, 0]) - float(dv.rkl(t, s)[0, 0])) > 0.02


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_matches_numpy_on_random_logits(temperature):
  rng = np.random.default_rng(0)
  t = rng.normal(size=(3, 5, 17)) * 3
  s = rng.normal(size=(3, 5, 17)) * 3
  tj, sj = jnp.asarray(t, jnp.float32), jnp.asarray(s, jnp.float32)
  for name in ("fkl", "rkl", "tvd"):
    got = dv.token_divergence(name, tj, sj, temperature)
    assert got.shape == (3, 5)
    np.testing.assert_allclose(got, np_divergence(name, t, s, temperature), atol=1e-5, err_msg=name)
  for beta in (0.0, 0.1, 0.5, 0.9, 1.0):
    got = dv.jsd(tj, sj, temperature, beta)
    np.testing.assert_allclose(got, np_divergence("jsd", t, s, temperature, beta), atol=1e-5,
                               err_msg=f"beta={beta}")


def test_jsd_endpoints_are_fkl_and_rkl():
  rng = np.random.default_rng(1)
  t, s = (jnp.asarray(rng.normal(size=(2, 4, 9)), jnp.float32) for _ in range(2))
  np.testing.assert_array_equal(dv.jsd(t, s, beta=0.0), dv.fkl(t, s))
  np.testing.assert_array_equal(dv.jsd(t, s, beta=1.0), dv.rkl(t, s))
  # the mixture form is symmetric at 0.5 and different from both KLs
  np.testing.assert_allclose(dv.jsd(t, s, beta=0.5), dv.jsd(s, t, beta=0.5), atol=1e-6)
  assert float(jnp.max(jnp.abs(dv.jsd(t, s, beta=0.5) - dv.fkl(t, s)))) > 1e-3


def test_tvd_is_one_minus_overlap():
  rng = np.random.default_rng(2)
  t, s = (jnp.asarray(rng.normal(size=(2, 3, 11)) * 2, jnp.float32) for _ in range(2))
  p, q = jax.nn.softmax(t, -1), jax.nn.softmax(s, -1)
  np.testing.assert_allclose(dv.tvd(t, s), 1 - jnp.minimum(p, q).sum(-1), atol=1e-6)
  assert float(jnp.max(dv.tvd(t, s))) <= 1.0
  np.testing.assert_allclose(dv.tvd(t, t), 0.0, atol=1e-7)


def test_token_divergence_unknown_name_and_bad_args():
  t = jnp.zeros((1, 1, 3))
  with pytest.raises(ValueError, match="fkl, jsd, rkl, tvd"):
    dv.token_divergence("kl", t, t)
  with pytest.raises(ValueError, match="temperature"):
    dv.fkl(t, t, temperature=0.0)
  with pytest.raises(ValueError, match="beta"):
    dv.jsd(t, t, beta=1.5)
  with pytest.raises(ValueError, match="shape"):
    dv.fkl(t, jnp.zeros((1, 1, 4)))


# ------------------------------------------------------------------------------ masking and gradients


def test_masked_mean_reduces_by_valid_count_without_leaks():
  rng = np.random.default_rng(3)
  t = rng.normal(size=(2, 4, 7)).astype(np.float32)
  s = rng.normal(size=(2, 4, 7)).astype(np.float32)
  mask = np.array([[0, 1, 1, 0], [1, 1, 0, 0]], np.float32)
  t_pad, s_pad = t.copy(), s.copy()
  t_pad[mask == 0] = 0.0
  t_pad[mask == 0, 0] = 1e9          # padding: wildly different, huge logits
  s_pad[mask == 0, 1] = 1e9
  for name in dv.DIVERGENCES:
    want = np_divergence(name, t, s)[mask == 1].mean()
    got = dv.divergence_loss(name, jnp.asarray(t_pad), jnp.asarray(s_pad), jnp.asarray(mask))
    np.testing.assert_allclose(got, want, atol=1e-5, err_msg=name)
  x = jnp.array([[1.0, jnp.inf], [3.0, jnp.nan]])
  assert float(dv.masked_mean(x, jnp.array([[1, 0], [1, 0]]))) == 2.0
  assert float(dv.masked_mean(x, jnp.zeros((2, 2)))) == 0.0


@pytest.mark.parametrize("name", ["fkl", "rkl", "jsd", "tvd"])
def test_finite_gradients_including_zero_probabilities(name):
  rng = np.random.default_rng(4)
  t = rng.normal(size=(2, 3, 6)).astype(np.float32)
  s = rng.normal(size=(2, 3, 6)).astype(np.float32)
  t[0, 0, :3] = -1e9                 # p has exact zeros
  s[0, 1, 3:] = -1e9                 # q has exact zeros
  t[1, 0, 0] = -np.inf
  s[1, 0, 1] = -np.inf
  s[1, 2] = t[1, 2]                  # p == q exactly (TVD kink at 0)
  mask = jnp.ones((2, 3))
  loss_fn = lambda s_: dv.divergence_loss(name, jnp.asarray(t), s_, mask)
  val, g = jax.value_and_grad(loss_fn)(jnp.asarray(s))
  assert np.isfinite(float(val))
  assert np.all(np.isfinite(np.asarray(g)))
  assert float(jnp.max(jnp.abs(g))) > 0
  # the teacher is a constant: no gradient flows to it
  g_t = jax.grad(lambda t_: dv.divergence_loss(name, t_, jnp.asarray(s), mask))(jnp.asarray(t))
  np.testing.assert_array_equal(g_t, 0.0)


def test_fkl_gradient_is_q_minus_p():
  rng = np.random.default_rng(5)
  t, s = (jnp.asarray(rng.normal(size=(1, 2, 5)), jnp.float32) for _ in range(2))
  g = jax.grad(lambda s_: dv.divergence_loss("fkl", t, s_, jnp.ones((1, 2))))(s)
  want = (jax.nn.softmax(s, -1) - jax.nn.softmax(t, -1)) / 2
  np.testing.assert_allclose(g, want, atol=1e-6)
