"""Speculative sampling: greedy == greedy target decoding; lossless in distribution; lenience; errors."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from dsrepro.sd import speculative
from dsrepro.sd.decode import DecodeConfig, generate
from dsrepro.models.transformer import ModelConfig, make_model
from dsrepro.sd.speculative import SpecConfig, speculative_generate
from dsrepro.sd.reference import model_dist_fn, speculative_sample_ref, standard_accept

P_ALARM = 1e-3  # false-alarm rate of each goodness-of-fit test (over seeds); the seeds below are fixed


def _pair(vocab, seed=0, scale=1.0, noise=0.5, max_len=64):
  """A random target and a draft = target with noisy weights (partial acceptance: every code path runs)."""
  cfg = ModelConfig(vocab_size=vocab, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=max_len)
  target, draft = make_model(cfg, seed), make_model(cfg, seed)
  params = nnx.state(target, nnx.Param)
  leaves, tdef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
  nnx.update(target, jax.tree.unflatten(tdef, [x * scale for x in leaves]))
  noisy = [x * scale + noise * scale * jnp.std(x) * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  nnx.update(draft, jax.tree.unflatten(tdef, noisy))
  return target, draft


def test_greedy_equals_target_greedy_token_for_token_with_eos_in_block():
  target, draft = _pair(53, seed=1, scale=6.0, noise=0.6)
  prompt = jax.random.randint(jax.random.key(7), (3, 8), 3, 53)
  plen = jnp.array([8, 5, 2])
  free = generate(target, prompt, plen, DecodeConfig(max_new_tokens=24))
  eos = int(free.tokens_BxN[0, 9])  # an EOS that appears mid-output of row 0
  want = generate(target, prompt, plen, DecodeConfig(max_new_tokens=24, eos_id=eos))
  total_accepted = 0
  for gamma in (1, 3, 5):
    out = speculative_generate(target, draft, prompt, plen,
                               SpecConfig(gamma=gamma, max_new_tokens=24, temperature=0.0, eos_id=eos))
    np.testing.assert_array_equal(out.tokens_BxN, want.tokens_BxN)
    np.testing.assert_array_equal(out.num_B, want.num_B)
    acc = np.asarray(out.accepted_BxK)
    np.testing.assert_array_equal((acc >= 0).sum(1), out.target_calls_B)
    np.testing.assert_array_equal(out.draft_calls_B, gamma * np.asarray(out.target_calls_B))
    assert (acc <= gamma).all()
    total_accepted += int(acc[acc > 0].sum())
  assert int(want.num_B[0]) <= 10
  assert total_accepted > 0  # the draft is good enough that accepting paths are exercised


def _exact_first3(target, prompt, vocab, temperature):
  """P(y1, y2, y3 | prompt) under the target by enumeration."""
  seqs = np.array([list(prompt) + list(y) for y in itertools.product(range(vocab), repeat=3)], np.int32)
  logits, _ = target(jnp.asarray(seqs))
  lp = np.asarray(jax.nn.log_softmax(logits / temperature, -1), np.float64)
  n = len(prompt)
  logp = sum(lp[np.arange(len(seqs)), n - 1 + i, seqs[:, n + i]] for i in range(3))
  return np.exp(logp)


def _gof_pvalue(samples_Nx3, probs, vocab):
  idx = samples_Nx3[:, 0] * vocab * vocab + samples_Nx3[:, 1] * vocab + samples_Nx3[:, 2]
  obs = np.bincount(idx, minlength=len(probs)).astype(float)
  exp = probs / probs.sum() * len(idx)
  small = exp < 5  # merge sparse cells so the chi-square approximation holds
  obs = np.append(obs[~small], obs[small].sum())
  exp = np.append(exp[~small], exp[small].sum())
  if exp[-1] == 0:
    obs, exp = obs[:-1], exp[:-1]
  return stats.chisquare(obs, exp).pvalue


@pytest.mark.parametrize("gamma,temperature", [(2, 1.0), (4, 0.7), (6, 1.0)])
def test_lossless_matches_exact_target_distribution(gamma, temperature):
  """gamma 6 > V = 4: the block's accept-test uniforms span two rows of its [B, rows, V] random bits."""
  V, N = 4, 20000
  target, draft = _pair(V, seed=3, scale=3.0, noise=0.6)
  prompt = [1, 2, 3]
  exact = _exact_first3(target, prompt, V, temperature)
  out = speculative_generate(target, draft, jnp.tile(jnp.asarray([prompt]), (N, 1)), jnp.full((N,), 3),
                             SpecConfig(gamma=gamma, max_new_tokens=3, temperature=temperature),
                             key=jax.random.key(11))
  acc = np.asarray(out.accepted_BxK)
  rate = acc[acc >= 0].mean() / gamma
  assert 0.1 < rate < 0.95, rate  # draft differs from target: rejections and residual sampling happen
  assert _gof_pvalue(np.asarray(out.tokens_BxN), exact, V) > P_ALARM
  # draft's own distribution is clearly different (so the test has power)
  assert _gof_pvalue(np.asarray(out.tokens_BxN), _exact_first3(draft, prompt, V, temperature), V) < 1e-6


def _memo(fn):
  table = {}

  def get(seq):
    if tuple(seq) not in table:
      table[tuple(seq)] = fn(seq)
    return table[tuple(seq)]
  return get


def test_reference_agrees_and_broken_rule_is_caught():
  V, N, gamma = 4, 20000, 2
  target, draft = _pair(V, seed=3, scale=3.0, noise=0.6)
  prompt = [1, 2, 3]
  exact = _exact_first3(target, prompt, V, 1.0)
  p_fn, q_fn = _memo(model_dist_fn(target, 1.0)), _memo(model_dist_fn(draft, 1.0))
  rng = np.random.default_rng(0)
  ref = np.array([speculative_sample_ref(p_fn, q_fn, prompt, gamma, 3, rng)[0] for _ in range(N)])
  assert _gof_pvalue(ref, exact, V) > P_ALARM
  # fast vs reference: a two-sample test on the joint of the first 3 tokens
  fast = speculative_generate(target, draft, jnp.tile(jnp.asarray([prompt]), (N, 1)), jnp.full((N,), 3),
                              SpecConfig(gamma=gamma, max_new_tokens=3), key=jax.random.key(5))
  code = lambda s: s[:, 0] * V * V + s[:, 1] * V + s[:, 2]
  table = np.stack([np.bincount(code(ref), minlength=V ** 3), np.bincount(code(np.asarray(fast.tokens_BxN)),
                                                                          minlength=V ** 3)])
  table = table[:, table.sum(0) >= 10]
  assert stats.chi2_contingency(table).pvalue > P_ALARM
  # the negative control: resampling a rejected position from p instead of norm(max(0, p - q)) is biased
  broken = np.array([speculative_sample_ref(p_fn, q_fn, prompt, gamma, 3, rng, residual_rule=lambda p, q: p)[0]
                     for _ in range(N)])
  assert _gof_pvalue(broken, exact, V) < P_ALARM
  # and so is always accepting the draft
  always = np.array([speculative_sample_ref(p_fn, q_fn, prompt, gamma, 3, rng,
                                            accept_rule=lambda *a: 1.0)[0] for _ in range(N)])
  assert _gof_pvalue(always, exact, V) < P_ALARM


def test_reference_greedy_equals_fast_greedy():
  target, draft = _pair(29, seed=4, scale=6.0, noise=0.6)
  prompt = [3, 5, 7, 9]
  p_fn, q_fn = model_dist_fn(target, 0.0), model_dist_fn(draft, 0.0)
  ref, ref_acc = speculative_sample_ref(p_fn, q_fn, prompt, 3, 12, np.random.default_rng(0), greedy=True)
  out = speculative_generate(target, draft, jnp.asarray([prompt]), jnp.array([4]),
                             SpecConfig(gamma=3, max_new_tokens=12, temperature=0.0))
  assert list(np.asarray(out.tokens_BxN[0])) == ref
  acc = np.asarray(out.accepted_BxK[0])
  assert list(acc[acc >= 0]) == ref_acc


def test_lenience_raises_acceptance_monotonically_for_each_f():
  target, draft = _pair(40, seed=5, scale=4.0, noise=1.0)
  B = 500
  prompt = jnp.tile(jnp.arange(3, 9)[None], (B, 1))
  for fn in ("lin", "sq", "exp"):
    cfg = SpecConfig(gamma=4, max_new_tokens=16, temperature=1.0, lenience_fn=fn)
    rates = []
    for eps in (1.0, 0.6, 0.3, 0.1):
      out = speculative_generate(target, draft, prompt, jnp.full((B,), 6), cfg, key=jax.random.key(0), eps=eps)
      acc = np.asarray(out.accepted_BxK)
      rates.append(acc[acc >= 0].sum() / (4 * (acc >= 0).sum()))
    assert all(b > a for a, b in zip(rates, rates[1:])), (fn, rates)
  assert standard_accept(0.2, 0.5, 0.5, "exp") > standard_accept(0.2, 0.5, 1.0, "exp")


def test_no_recompilation_same_shapes_and_eps_sweep():
  target, draft = _pair(31, seed=6)
  prompt, plen = jnp.ones((2, 5), jnp.int32), jnp.array([5, 3])
  cfg = SpecConfig(gamma=3, max_new_tokens=10, temperature=1.0)
  speculative_generate(target, draft, prompt, plen, cfg, key=jax.random.key(0))
  n = speculative.TRACE_COUNT["speculative"]
  for i, eps in enumerate((1.0, 0.5, 0.2)):
    speculative_generate(target, draft, prompt + i, plen, cfg, key=jax.random.key(i), eps=eps)
  assert speculative.TRACE_COUNT["speculative"] == n


def test_bad_input_errors():
  target, draft = _pair(31, seed=6)
  other = make_model(ModelConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=64), 0)
  prompt, plen = jnp.ones((2, 5), jnp.int32), jnp.array([5, 5])
  ok = SpecConfig(gamma=3, max_new_tokens=10)
  with pytest.raises(ValueError, match="gamma must be an integer >= 1, got 0"):
    SpecConfig(gamma=0, max_new_tokens=10)
  with pytest.raises(ValueError, match="temperature must be >= 0.*got -0.5"):
    SpecConfig(gamma=2, max_new_tokens=10, temperature=-0.5)
  for eps in (0.0, 1.5, -1.0):
    with pytest.raises(ValueError, match=f"eps must be in \\(0, 1\\], got {eps}"):
      speculative_generate(target, draft, prompt, plen, ok, eps=eps)
  with pytest.raises(ValueError, match="target vocab_size=31, draft vocab_size=32"):
    speculative_generate(target, other, prompt, plen, ok)
  with pytest.raises(ValueError, match="exceeds the model context max_len=64"):
    speculative_generate(target, draft, jnp.ones((1, 55), jnp.int32), jnp.array([55]), ok)
  with pytest.raises(ValueError, match="prompt_len has shape"):
    speculative_generate(target, draft, prompt, jnp.array([5, 5, 5]), ok)
  with pytest.raises(ValueError, match="lenience_fn"):
    SpecConfig(gamma=2, max_new_tokens=4, lenience_fn="cubic")
  with pytest.raises(ValueError, match="needs temperature > 0"):
    speculative_generate(target, draft, prompt, plen, SpecConfig(gamma=2, max_new_tokens=4, temperature=0.0), eps=0.5)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_draft_equal_to_target_accepts_every_draft(temperature):
  """With draft == target every block accepts all gamma drafts, so every block needs the draft catch-up call
  (y_gamma was never fed to the draft); a stale draft cache would show up as rejections."""
  target, _ = _pair(37, seed=8, scale=5.0)
  prompt = jax.random.randint(jax.random.key(3), (2, 6), 3, 37)
  plen = jnp.array([6, 3])
  out = speculative_generate(target, target, prompt, plen,
                             SpecConfig(gamma=3, max_new_tokens=17, temperature=temperature), key=jax.random.key(2))
  acc = np.asarray(out.accepted_BxK)
  assert (acc[acc >= 0] == 3).all(), acc
  np.testing.assert_array_equal(out.target_calls_B, [5, 5])  # 17 tokens = 4 blocks of 4 + 1
  if temperature == 0.0:
    want = generate(target, prompt, plen, DecodeConfig(max_new_tokens=17))
    np.testing.assert_array_equal(out.tokens_BxN, want.tokens_BxN)


def _loop_copies_of_caches(hlo_text: str, cache_sizes: set[int]) -> list[str]:
  """copy / transpose instructions outside the entry computation (i.e. in loop bodies, their branches and
  fusions) whose output has as many elements as a KV cache buffer: a cache copied or transposed per iteration."""
  import math
  import re
  bad, in_entry = [], False
  for ln in hlo_text.splitlines():
    if re.match(r"^(ENTRY )?%[\w.\-]+ .*\{$", ln):
      in_entry = ln.startswith("ENTRY")
    m = re.match(r"\s*(?:ROOT )?%[\w.\-]+ = [a-z0-9]+\[([\d,]*)\]\S* (copy|transpose)\(", ln)
    if m and not in_entry and math.prod(int(d) for d in m.group(1).split(",") if d) in cache_sizes:
      bad.append(ln.strip()[:160])
  return bad


@pytest.mark.parametrize("B,temperature", [(1, 0.0), (2, 1.0)])
def test_compiled_loops_update_kv_caches_in_place(B, temperature):
  """The jitted SD and decoding loops never copy or transpose a KV cache (models/kvcache.py's layout): checked on
  the optimized HLO XLA compiles for this machine."""
  from dsrepro.sd import decode
  target, draft = _pair(41, seed=9, max_len=48)
  prompt, plen = jnp.ones((B, 6), jnp.int32), jnp.full((B,), 6)
  cfg = SpecConfig(gamma=3, max_new_tokens=8, temperature=temperature)
  S = 6 + 8 + 3 + 1
  sizes = {B * target.cfg.kv_heads * target.cfg.head_dim * S}
  hlo = speculative._speculative.lower(target, draft, prompt, plen, jax.random.key(0), jnp.float32(1.0),
                                       cfg).compile().as_text()
  assert " while(" in hlo and _loop_copies_of_caches(hlo, sizes) == []
  dcfg = DecodeConfig(max_new_tokens=8, temperature=temperature)
  hlo = decode._generate.lower(target, prompt, plen, jax.random.key(0), dcfg).compile().as_text()
  sizes = {B * target.cfg.kv_heads * target.cfg.head_dim * (6 + 8)}
  assert " while(" in hlo and _loop_copies_of_caches(hlo, sizes) == []
