"""Plain autoregressive decoding: greedy equals argmax of full forwards, EOS, no recompiles, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dsrepro.sd import decode
from dsrepro.sd.decode import DecodeConfig, generate, join_outputs
from dsrepro.models.transformer import ModelConfig, make_model

CFG = ModelConfig(vocab_size=61, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=40)


def _greedy_no_cache(model, prompt, n):
  """Greedy decoding by full forwards (no cache) on a fixed-width buffer: causal attention ignores the tail."""
  fwd = nnx.jit(lambda m, x: m(x)[0])
  p = len(prompt)
  seq = np.zeros((1, p + n), np.int32)
  seq[0, :p] = prompt
  for i in range(n):
    seq[0, p + i] = int(jnp.argmax(fwd(model, jnp.asarray(seq))[0, p + i - 1]))
  return list(seq[0, p:])


def test_greedy_matches_full_forward_argmax_batched():
  model = make_model(CFG, 0)
  prompt = jax.random.randint(jax.random.key(2), (2, 7), 3, 61)
  plen = jnp.array([7, 4])
  out = generate(model, prompt, plen, DecodeConfig(max_new_tokens=12))
  for b in range(2):
    want = _greedy_no_cache(model, list(np.asarray(prompt[b, :plen[b]])), 12)
    assert list(np.asarray(out.tokens_BxN[b])) == want
  np.testing.assert_array_equal(out.num_B, [12, 12])


def test_eos_stops_row_and_pads():
  model = make_model(CFG, 0)
  prompt = jax.random.randint(jax.random.key(2), (2, 7), 3, 61)
  plen = jnp.array([7, 7])
  free = generate(model, prompt, plen, DecodeConfig(max_new_tokens=12))
  eos = int(free.tokens_BxN[0, 4])
  out = generate(model, prompt, plen, DecodeConfig(max_new_tokens=12, eos_id=eos, pad_id=0))
  row = list(np.asarray(out.tokens_BxN[0]))
  k = row.index(eos)
  assert k <= 4 and int(out.num_B[0]) == k + 1 and all(t == 0 for t in row[k + 1:])


def test_sampling_reproducible_and_no_retrace():
  model = make_model(CFG, 0)
  prompt = jnp.ones((2, 5), jnp.int32)
  cfg = DecodeConfig(max_new_tokens=8, temperature=1.0, top_k=10)
  a = generate(model, prompt, jnp.array([5, 5]), cfg, jax.random.key(1))
  n = decode.TRACE_COUNT["generate"]
  b = generate(model, prompt, jnp.array([5, 3]), cfg, jax.random.key(1))
  c = generate(model, prompt, jnp.array([5, 5]), cfg, jax.random.key(1))
  assert decode.TRACE_COUNT["generate"] == n  # same shapes + settings: no new trace
  np.testing.assert_array_equal(a.tokens_BxN, c.tokens_BxN)
  assert b.tokens_BxN.shape == a.tokens_BxN.shape
  d = generate(model, prompt, jnp.array([5, 5]), cfg, jax.random.key(2))
  assert not np.array_equal(a.tokens_BxN, d.tokens_BxN)


def test_errors():
  model = make_model(CFG, 0)
  with pytest.raises(ValueError, match="exceeds the model context max_len=40"):
    generate(model, jnp.ones((1, 30), jnp.int32), jnp.array([30]), DecodeConfig(max_new_tokens=20))
  with pytest.raises(ValueError, match="temperature must be >= 0"):
    DecodeConfig(max_new_tokens=3, temperature=-1.0)
  with pytest.raises(ValueError, match="prompt_len has shape"):
    generate(model, jnp.ones((2, 5), jnp.int32), jnp.array([5, 5, 5]), DecodeConfig(max_new_tokens=3))


def test_join_outputs_masks_exactly_the_output_tokens():
  prompts = np.array([[5, 6, 7, 0], [8, 9, 0, 0], [1, 2, 3, 4]], np.int32)
  plen = np.array([3, 2, 4])
  out = np.array([[11, 12, 0], [13, 0, 0], [14, 15, 16]], np.int32)
  num = np.array([2, 1, 3])
  seq, mask = join_outputs(prompts, plen, out, num, pad_id=0)
  np.testing.assert_array_equal(seq, [[5, 6, 7, 11, 12, 0, 0], [8, 9, 13, 0, 0, 0, 0], [1, 2, 3, 4, 14, 15, 16]])
  np.testing.assert_array_equal(mask, [[0, 0, 0, 1, 1, 0, 0], [0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1]])
  for i in range(3):  # the masked tokens are exactly the outputs
    np.testing.assert_array_equal(seq[i, mask[i] > 0], out[i, :num[i]])
  wide, wmask = join_outputs(prompts, plen, out, num, pad_id=9, width=9)
  assert wide.shape == (3, 9) and (wide[:, 7:] == 9).all() and wmask.sum() == num.sum()
  with pytest.raises(ValueError, match="does not fit the row width 6"):
    join_outputs(prompts, plen, out, num, pad_id=0, width=6)


def test_write_rows_per_group_offsets_along_an_axis():
  from dsrepro.models.kvcache import write_rows
  buf = np.zeros((6, 2, 9), np.float32)          # 2 groups (batch rows) of 3 (kv heads), axis 2 = positions
  new = np.arange(6 * 2 * 4, dtype=np.float32).reshape(6, 2, 4) + 1
  out = np.asarray(write_rows(jnp.asarray(buf), jnp.asarray(new), jnp.array([1, 5]), axis=2))
  want = buf.copy()
  want[:3, :, 1:5], want[3:, :, 5:9] = new[:3], new[3:]
  np.testing.assert_array_equal(out, want)
  one = np.asarray(write_rows(jnp.asarray(buf[:3]), jnp.asarray(new[:3, :, :2]), jnp.array([7]), axis=2))
  assert (one[:, :, 7:9] == new[:3, :, :2]).all() and one[:, :, :7].sum() == 0


@pytest.mark.parametrize("tied", [True, False])
def test_head_weight_gives_the_models_logits(tied):
  import dataclasses
  from dsrepro.models.kvcache import init_cache
  cfg = dataclasses.replace(CFG, tie_embeddings=tied, lm_head_bias=not tied)
  model = make_model(cfg, 3)
  toks = jax.random.randint(jax.random.key(5), (2, 6), 0, cfg.vocab_size)
  cache = init_cache(cfg, 2, 12)
  want, _ = model(toks, cache)
  got, _ = model(toks, cache, model.head_weight())
  assert model.head_weight().shape == (cfg.d_model, cfg.vocab_size)
  np.testing.assert_allclose(got, want, atol=1e-5)
