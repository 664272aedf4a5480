"""kd.adaspec: the quantile, the top-k token selection and the selective loss of AdaSPEC."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import log_softmax as np_log_softmax

from dsrepro.kd import adaspec as dv


def np_fkl(t, s):
  """KL(p || q) per row in float64, p = softmax(t), q = softmax(s): an independent numpy reference."""
  lp, lq = np_log_softmax(np.asarray(t, np.float64), axis=-1), np_log_softmax(np.asarray(s, np.float64), axis=-1)
  return np.sum(np.exp(lp) * (lp - lq), axis=-1)


def test_masked_quantile_matches_numpy():
  rng = np.random.default_rng(6)
  x = rng.normal(size=(3, 7)).astype(np.float32)
  mask = (rng.random((3, 7)) < 0.6).astype(np.float32)
  x_pad = np.where(mask == 1, x, 1e6).astype(np.float32)
  fn = jax.jit(dv.masked_quantile, static_argnums=2)
  for q in (0.0, 0.1, 0.37, 0.5, 0.6, 0.95, 1.0):
    np.testing.assert_allclose(fn(x_pad, mask, q), np.quantile(x[mask == 1], q), rtol=1e-6, atol=1e-6,
                               err_msg=f"q={q}")
  assert np.isnan(float(dv.masked_quantile(x, np.zeros_like(mask), 0.5)))


def test_adaspec_select_keeps_top_k_fraction():
  delta = jnp.arange(10.0)[None, :] * 0.5 - 1.0
  keep = dv.adaspec_select(delta, jnp.ones((1, 10)), k=0.4)
  np.testing.assert_array_equal(keep[0], [0] * 6 + [1] * 4)
  keep = dv.adaspec_select(delta[:, ::-1], jnp.ones((1, 10)), k=0.4)
  np.testing.assert_array_equal(keep[0], [1] * 4 + [0] * 6)
  assert float(dv.adaspec_select(delta, jnp.ones((1, 10)), k=1.0).sum()) == 10


def test_adaspec_select_ties_and_invalid_tokens():
  # 10 valid values whose 0.6 quantile sits on a tie: all three tied values are kept (5 > 4 tokens)
  delta = jnp.array([[0.0, 1.0, 2.0, 3.0, 4.0, 7.0, 7.0, 7.0, 8.0, 9.0]])
  np.testing.assert_allclose(np.quantile(np.asarray(delta), 0.6), 7.0)
  keep = dv.adaspec_select(delta, jnp.ones((1, 10)), k=0.4)
  np.testing.assert_array_equal(keep[0], [0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
  # invalid tokens with the largest deltas are never kept, and do not move the threshold
  delta2 = jnp.concatenate([delta, jnp.full((1, 5), 100.0)], axis=1)
  mask2 = jnp.concatenate([jnp.ones((1, 10)), jnp.zeros((1, 5))], axis=1)
  keep2 = jax.jit(dv.adaspec_select, static_argnums=2)(delta2, mask2, 0.4)
  np.testing.assert_array_equal(keep2[0], [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
  with pytest.raises(ValueError, match="k must be"):
    dv.adaspec_select(delta, jnp.ones((1, 10)), k=0.0)
  with pytest.raises(ValueError, match="k must be"):
    dv.adaspec_select(delta, jnp.ones((1, 10)), k=1.2)


def test_adaspec_loss_matches_hand_computation():
  rng = np.random.default_rng(7)
  B, L, V = 2, 6, 8
  t, s, r = (rng.normal(size=(B, L, V)).astype(np.float32) * 2 for _ in range(3))
  mask = np.ones((B, L), np.float32)
  mask[0, :2] = 0
  mask[1, 5] = 0
  l_draft = np_fkl(t, s)
  l_ref = np_fkl(t, r)
  delta = l_draft - l_ref
  thr = np.quantile(delta[mask == 1], 0.6)
  keep = (mask == 1) & (delta >= thr)
  want = (l_draft * keep).sum() / mask.sum()
  loss, aux = dv.adaspec_loss(jnp.asarray(t), jnp.asarray(s), jnp.asarray(r), jnp.asarray(mask), k=0.4)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(aux["threshold"], thr, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(aux["selected_frac"], keep.sum() / mask.sum(), atol=1e-7)
  assert 0 < keep.sum() < mask.sum()
  # gradient flows only through kept tokens of the student
  g = jax.grad(lambda s_: dv.adaspec_loss(jnp.asarray(t), s_, jnp.asarray(r), jnp.asarray(mask))[0])(
      jnp.asarray(s))
  g_tok = np.abs(np.asarray(g)).sum(-1)
  assert np.all(g_tok[~keep] == 0) and np.all(g_tok[keep] > 0)
