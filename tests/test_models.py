"""Transformer + KV cache: incremental decoding equals one full forward pass."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsrepro.models.transformer import GARDEN, ModelConfig, count_params, garden_config, init_cache, make_model

TINY = dict(vocab_size=97, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=48)
VARIANTS = {
    "garden": {},
    "gqa_untied": dict(n_kv_heads=2, tie_embeddings=False),
    "gpt2_like": dict(norm="layer", mlp="gelu_tanh", pos="learned", qkv_bias=True, attn_out_bias=True, mlp_bias=True),
    "neox_like": dict(norm="layer", mlp="gelu", parallel_residual=True, rotary_pct=0.25, qkv_bias=True),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_incremental_equals_full_forward_with_rollback(variant):
  cfg = ModelConfig(**TINY, **VARIANTS[variant])
  model = make_model(cfg, seed=1)
  toks_BxL = jax.random.randint(jax.random.key(0), (3, 30), 0, cfg.vocab_size)
  full_BxLxV, _ = model(toks_BxL)
  cache = init_cache(cfg, 3, 40)
  pieces = []
  for a, b in [(0, 9), (9, 10), (10, 16), (16, 17)]:   # prefill, 1 token, a 6-token (gamma + 1) write, 1 token
    logits, cache = model(toks_BxL[:, a:b], cache)
    pieces.append(logits)
  np.testing.assert_array_equal(cache.end_B, [17, 17, 17])
  assert np.abs(np.concatenate(pieces, 1) - full_BxLxV[:, :17]).max() <= 1e-5
  # rollback to different lengths per row, then rewrite the same tokens: same logits again
  ends = np.array([5, 11, 16])
  cache = cache.rollback(jnp.asarray(ends))
  rows = jnp.stack([toks_BxL[b, e:e + 7] for b, e in enumerate(ends)])
  logits, cache = model(rows, cache)
  for b, e in enumerate(ends):
    assert np.abs(logits[b] - full_BxLxV[b, e:e + 7]).max() <= 1e-5
  np.testing.assert_array_equal(cache.end_B, ends + 7)
  # rollback then write DIFFERENT tokens: matches a full forward on the edited sequence
  edited = toks_BxL.at[:, 12:15].set((toks_BxL[:, 12:15] + 1) % cfg.vocab_size)
  cache = cache.rollback(jnp.full((3,), 12))
  logits, _ = model(edited[:, 12:15], cache)
  full_edit, _ = model(edited[:, :15])
  assert np.abs(logits - full_edit[:, 12:15]).max() <= 1e-5


def test_garden_spans_30x_and_named_sizes():
  counts = {s: count_params(garden_config(s, 2048)) for s in GARDEN}
  cpu = [s for s in GARDEN if not s.startswith("paper")]
  assert len(cpu) >= 5
  assert 0.3e6 < counts["nano"] < 0.8e6
  assert max(counts[s] for s in cpu) / min(counts[s] for s in cpu) >= 30
  assert counts["paper-target"] > 10 * counts["paper-draft"] / 2  # the paper's pair, for accelerators
  assert sorted(counts, key=counts.get)[:6] == ["pico", "nano", "micro", "mini", "small", "paper-draft"]


def test_unknown_size_error_names_it():
  with pytest.raises(ValueError, match="unknown model size 'huge'.*nano"):
    garden_config("huge", 100)


def test_bad_configs_raise():
  with pytest.raises(ValueError, match="n_heads=3"):
    ModelConfig(**{**TINY, "n_heads": 3})
  with pytest.raises(ValueError, match="mlp"):
    ModelConfig(**TINY, mlp="relu")
  with pytest.raises(ValueError, match="cache length 100 exceeds"):
    init_cache(ModelConfig(**TINY), 1, 100)


def test_bf16_forward_is_close_to_fp32():
  cfg32 = ModelConfig(**TINY)
  cfg16 = ModelConfig(**TINY, dtype="bfloat16")
  m32, m16 = make_model(cfg32, 3), make_model(cfg16, 3)
  toks = jax.random.randint(jax.random.key(1), (2, 12), 0, 97)
  l32, _ = m32(toks)
  l16, _ = m16(toks)
  assert l16.dtype == jnp.float32
  assert np.abs(l32 - l16).max() < 0.1


def test_batch_one_cache_writes_at_the_row_offset():
  """Batch 1 takes a separate (non-scatter) write path: check it writes along the sequence axis."""
  cfg = ModelConfig(**TINY)
  model = make_model(cfg, seed=2)
  toks_1xL = jax.random.randint(jax.random.key(4), (1, 20), 0, cfg.vocab_size)
  full, _ = model(toks_1xL)
  cache = init_cache(cfg, 1, 32)
  a, cache = model(toks_1xL[:, :11], cache)
  b, cache = model(toks_1xL[:, 11:15], cache)
  cache = cache.rollback(jnp.array([13]))
  c, _ = model(toks_1xL[:, 13:20], cache)
  assert np.abs(np.concatenate([a, b], 1) - full[:, :15]).max() <= 1e-5
  assert np.abs(c - full[:, 13:20]).max() <= 1e-5
