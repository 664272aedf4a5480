"""Speculative sampling (Leviathan et al. 2023; DistillSpec Alg. A.1): lossless, greedy and lossy, batched, jitted.

One block for row b, whose sequence so far is ``x[0..n]`` (``last = x[n]``; both caches hold x[0..n-1]):

1. Draft gamma tokens with the draft's KV cache, one 1-token call each: x[n] (at position n), then y_1 ..
   y_{gamma-1}.
2. Verify: ONE target call over ``x[n], y_1 .. y_gamma`` (gamma + 1 positions) gives p_1 .. p_{gamma+1}.
3. Accept y_i while ``u_i * q_i(y_i) < f(p_i(y_i), eps)`` (i.e. u_i < min(1, f/q)); a = number accepted.
4. a < gamma: emit z ~ norm(max(0, p_{a+1} - q_{a+1})) (p_{a+1} if that is all zero); a == gamma: z ~ p_{gamma+1}.
   Greedy (temperature 0): accept while y_i == argmax p_i, z = argmax p_{a+1}: output == greedy target decoding.
5. Emit y_1..y_a, z; roll both caches back to the new length - 1 (the new last token is fed next block). A row
   that accepted all gamma drafts lacks y_gamma in its draft cache: one extra 1-token draft call (``_catch_up``,
   only in blocks where some row needs it) writes it.

Lenience (lossy SD, DistillSpec Sec. 5.3): f_lin = p / eps, f_sq = p / eps^2, f_exp = p^eps; eps = 1 is lossless.
eps is a traced argument (sweeping it does not recompile); lenience must be 1 in greedy mode.

Rows advance independently (own accepted lengths, own EOS / max_new_tokens). Stats per row: accepted count per
block (``accepted_BxK``, -1 for blocks not run), target calls, draft calls (gamma per block; the catch-up calls,
which only write the cache, are not counted).

Speed choices (CPU, batch 1; ``benchmarks/speculative.py`` measures a per-block breakdown with jax.profiler and
the compiled HLO): the loop is one ``lax.while_loop`` with no host sync and one trace per (shapes, SpecConfig)
(``TRACE_COUNT``).
* KV caches are updated in place: their layout (models/kvcache.py) is what attention's products read, so the
  compiled loop body holds no copy of a cache (tests/test_speculative.py checks the HLO). Before, XLA transposed
  (and, with a [B, K, H, S] layout, copied three times) every layer's cache on every model call.
* No 2-token draft call: the catch-up call above replaces feeding ``x[n-1], x[n]`` at the start of every block
  (on CPU a 2-row call of a tiny draft goes through the matmul library's packing path and costs ~2 1-row calls).
* The verify call and the draft calls get their model's output projection as a [D, V] array made once per call
  (``Transformer.head_weight``): with the tied [V, D] embedding XLA:CPU repacked it on every verify, and ran each
  draft call's head as a loop over a transposed copy (nano, V = 4096: 35-44 us per draft call, 24-38 us now).
* Randomness: ``key`` seeds a ``lax.rng_bit_generator`` state carried in the loop; each block draws ALL its random
  bits in one op (``decode.random_bits``, threefry: ~3x faster on CPU than the default): gamma + 1 Gumbel vectors
  for the draft samples and the correction/bonus token, gamma uniforms for the accept tests. Sampling is
  Gumbel-max (argmax of logits / T + Gumbel), the rule of ``jax.random.categorical``, so samples are exact; the
  stream differs from jax.random's for a given key. Greedy mode draws no random bits.
* The draft probs q_i come from the same logits right where y_i is sampled; greedy, XLA merges the two argmaxes.
* Batch-1 updates of seq / out / accepted / caches are dynamic_update_slices, not scatters.
* The models go to ``jax.jit`` as pytrees (NNX modules are pytrees): ~0.5 ms of Python per model and call,
  against ~5 ms for ``nnx.split`` plus hashing a static graph definition.
* Every argmax (greedy tokens, Gumbel-max samples) is ``sampling.argmax`` (its docstring: why and how much).
What is left beyond the model calls (benchmarks/results/speculative.json): the Gumbel noise at T > 0 (two logs
per element of (gamma + 1) x V), the catch-up call, a few dozen small bookkeeping ops, XLA:CPU's per-op
dispatch (~0.5-1 us for each of the ~600 ops of a block), and the draft running slower in the loop than alone
because the target's weight stream evicts the draft's from the CPU caches.
"""
from __future__ import annotations

import dataclasses
import functools
from collections import Counter

import flax.struct
import jax
import jax.numpy as jnp
from jax import lax

from dsrepro.sd.decode import check_prompts, prefill, random_bits
from dsrepro.sd.sampling import Policy, gumbel_from_bits, uniform_from_bits
from dsrepro.models.kvcache import KVCache, write_rows
from dsrepro.models.transformer import check_same_vocab

TRACE_COUNT: Counter = Counter()
LENIENCE_FNS = ("lin", "sq", "exp")


@dataclasses.dataclass(frozen=True)
class SpecConfig:
  """Static settings of the speculative sampler (hashable: a jit static argument)."""
  gamma: int
  max_new_tokens: int
  temperature: float = 1.0      # 0 = greedy; applied identically to target and draft
  lenience_fn: str = "lin"      # f in {lin, sq, exp}; only matters when eps < 1
  eos_id: int | None = None
  pad_id: int = 0

  def __post_init__(self):
    if not isinstance(self.gamma, int) or self.gamma < 1:
      raise ValueError(f"gamma must be an integer >= 1, got {self.gamma!r}")
    if self.max_new_tokens < 1:
      raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
    Policy(self.temperature)  # validates it
    if self.lenience_fn not in LENIENCE_FNS:
      raise ValueError(f"lenience_fn must be one of {LENIENCE_FNS}, got {self.lenience_fn!r}")

  @property
  def policy(self) -> Policy:
    """Target and draft sample with the same policy (DistillSpec evaluates at T = 0 and T = 1)."""
    return Policy(self.temperature)


def lenience(p: jax.Array, eps, fn: str) -> jax.Array:
  """f(p, eps) of lossy speculative sampling."""
  if fn == "lin":
    return p / eps
  if fn == "sq":
    return p / (eps * eps)
  return p ** eps


@flax.struct.dataclass
class SpecState:
  """Loop state. B rows, S = cache length, N = max_new_tokens, G = gamma, K = N (max blocks: each emits >= 1)."""
  seq_BxS: jax.Array         # [B, S] int32 prompt + emitted tokens
  len_B: jax.Array           # [B] int32 valid length of seq (last token = seq[len - 1], not yet in caches)
  out_BxM: jax.Array         # [B, N + G + 1] int32 emitted tokens (only the first num_B count)
  num_B: jax.Array           # [B] int32 emitted tokens (EOS included, capped at N)
  done_B: jax.Array          # [B] bool
  accepted_BxK: jax.Array    # [B, K] int32 accepted draft tokens per block, -1 = block not run
  blocks_B: jax.Array        # [B] int32 blocks run = target calls (after the prefill)
  t_cache: KVCache           # target cache, holding seq[:len - 1] (end_B = len_B - 1)
  d_cache: KVCache           # draft cache, holding seq[:len - 1]
  step: jax.Array            # [] int32 loop iteration
  rng: jax.Array             # [4] uint32 lax.rng_bit_generator state


@flax.struct.dataclass
class SpecOutput:
  tokens_BxN: jax.Array      # [B, N] emitted tokens, pad after num_B
  num_B: jax.Array           # [B] tokens emitted (EOS included)
  accepted_BxK: jax.Array    # [B, K] accepted per block, -1 = not run
  target_calls_B: jax.Array  # [B] verification calls (= blocks)
  draft_calls_B: jax.Array   # [B] draft calls (= gamma per block)


def _take(x_BxS, idx_B):
  return jnp.take_along_axis(x_BxS, idx_B[:, None], axis=1)[:, 0]


def _block_noise(rng, B: int, V: int, cfg: SpecConfig):
  """One rng_bit_generator call per block: Gumbel noise g_BxG1xV (draft samples, then the final token) and
  accept-test uniforms u_BxG. Returns (new rng state, g, u); greedy draws no bits: (rng, None, 0.5) (the accept
  test below is then exact: p and q are one-hot)."""
  if cfg.policy.greedy:
    return rng, None, jnp.full((B, cfg.gamma), 0.5, jnp.float32)
  G = cfg.gamma
  # Requested as [B, rows, V], not as one flat [B, (G + 1) V + G] row: XLA:CPU's threefry fusion of the flat
  # request ran ~3x slower (small/nano, V = 4096, gamma 5: 218 -> 82 us per block, jax.profiler, jax 0.10.2).
  rng, bits_BxRxV = random_bits(rng, (B, G + 1 + -(-G // V), V))
  u_BxG = uniform_from_bits(bits_BxRxV[:, G + 1:].reshape(B, -1)[:, :G])
  return rng, gumbel_from_bits(bits_BxRxV[:, :G + 1]), u_BxG


def _draft(d_model, last_B, d_cache: KVCache, cfg: SpecConfig, g_BxG1xV, head_DxV=None):
  """gamma draft tokens per row from the last token ``last_B`` (fed at the draft cache's end); returns y_BxG, the
  draft probs q_BxGxV and the draft cache (holding the last token and y_1 .. y_{G-1}). ``head_DxV``: the draft's
  ``head_weight()``, made once outside the loop.

  g_BxG1xV: Gumbel noise (None when greedy); draft token i is ``policy.sample(logits_i, g[:, i])``. Each step's
  probs come from the same logits right where they are sampled: when greedy, XLA merges the argmax of ``sample``
  and of ``probs`` (one argmax per step instead of a second pass over the stacked [B, G, V] logits).

  The gamma calls are one ``lax.scan`` (one traced draft call), not a Python loop unrolled gamma times: the same
  tokens and batch-1 speed, a third less XLA:CPU compile time per SD program (compiling is most of a small
  profile's time: 90 of the quick profile's 162 s Table D.1). Measured 2026-12-06, one pinned core, six programs
  (gammas 3/5/7 x greedy/T = 1, batch 1, 64 + 48 tokens, random weights), unrolled vs scan: compile 46.2 -> 32.6 s
  (micro/nano, V = 1024) and 51.2 -> 34.4 s (small/nano, V = 4096); run time per call, 25 alternating pairs, paired
  median ratio 0.95-1.005; the tokens identical."""
  def step(carry, g_BxV):
    tok_B, cache = carry
    logits_Bx1xV, cache = d_model(tok_B[:, None], cache, head_DxV)
    tok_B = cfg.policy.sample(logits_Bx1xV[:, 0], g_BxV)
    return (tok_B, cache), (tok_B, cfg.policy.probs(logits_Bx1xV[:, 0]))

  g_GxBxV = None if g_BxG1xV is None else jnp.moveaxis(g_BxG1xV[:, :cfg.gamma], 1, 0)
  (_, d_cache), (y_GxB, q_GxBxV) = lax.scan(step, (last_B, d_cache), g_GxBxV, length=cfg.gamma)
  return jnp.moveaxis(y_GxB, 0, 1), jnp.moveaxis(q_GxBxV, 0, 1), d_cache


def _catch_up(d_model, d_cache: KVCache, seq_BxS, len_B, need_B):
  """Write the draft KV of ``x[len - 2]`` at position len - 2 when some row ``need``s it, in one 1-token call.

  A block's draft calls cache the last token and y_1 .. y_{G-1}; when a row accepts all G drafts, y_G (now
  x[len - 2]) is missing from its draft cache. For the other rows position len - 2 already holds x[len - 2]
  with the same prefix, so rewriting it is harmless: one call serves the whole batch, without the LM head.
  Skipped (``lax.cond``) when no row needs it: then the draft made only gamma 1-token
  calls in the block."""
  def write(cache):
    pos_B = len_B - 2
    return d_model.hidden(_take(seq_BxS, pos_B)[:, None], cache.rollback(pos_B))[1]
  return lax.cond(jnp.any(need_B), write, lambda cache: cache, d_cache)


def _verify(p_BxG1xV, q_BxGxV, y_BxG, eps, u_BxG, g_BxV, cfg: SpecConfig):
  """Accept/reject. Returns a_B (accepted count) and z_B (the resampled or bonus token).

  u_BxG: accept-test uniforms; g_BxV: Gumbel noise for z (None when greedy). One rule for every policy: when
  greedy, p and q are one-hot, so ``0.5 * q(y) < p(y)`` accepts exactly when y == argmax p, and the residual
  max(0, p - q) of a rejected y (or p itself for the bonus token) is one-hot at argmax p."""
  G = cfg.gamma
  p_y = jnp.take_along_axis(p_BxG1xV[:, :G], y_BxG[..., None], -1)[..., 0]
  q_y = jnp.take_along_axis(q_BxGxV, y_BxG[..., None], -1)[..., 0]
  ok_BxG = u_BxG * q_y < lenience(p_y, eps, cfg.lenience_fn)
  a_B = jnp.sum(jnp.cumprod(ok_BxG.astype(jnp.int32), axis=1), axis=1)
  p_next_BxV = jnp.take_along_axis(p_BxG1xV, a_B[:, None, None], axis=1)[:, 0]
  q_pad_BxG1xV = jnp.concatenate([q_BxGxV, jnp.zeros_like(q_BxGxV[:, :1])], axis=1)  # bonus: residual = p
  q_next_BxV = jnp.take_along_axis(q_pad_BxG1xV, a_B[:, None, None], axis=1)[:, 0]
  resid_BxV = jnp.maximum(p_next_BxV - q_next_BxV, 0.0)
  resid_BxV = jnp.where(jnp.sum(resid_BxV, -1, keepdims=True) > 0, resid_BxV, p_next_BxV)
  return a_B, cfg.policy.sample_probs(resid_BxV, g_BxV)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _speculative(target, draft, prompt_BxP, prompt_len_B, key, eps, cfg: SpecConfig):
  TRACE_COUNT["speculative"] += 1
  B, P = prompt_BxP.shape
  N, G = cfg.max_new_tokens, cfg.gamma
  S = P + N + G + 1
  q_vocab = draft.cfg.vocab_size
  _, t_cache = prefill(target, prompt_BxP, prompt_len_B, S)
  _, d_cache = prefill(draft, prompt_BxP, prompt_len_B, S)
  seq = jnp.full((B, S), cfg.pad_id, jnp.int32).at[:, :P].set(prompt_BxP)
  eos = -1 if cfg.eos_id is None else cfg.eos_id
  head_DxV = target.head_weight()  # once per call, not per verify (Transformer.head_weight)
  d_head_DxV = draft.head_weight()  # likewise for the gamma draft calls of every block
  init = SpecState(seq_BxS=seq, len_B=prompt_len_B, out_BxM=jnp.full((B, N + G + 1), cfg.pad_id, jnp.int32),
                   num_B=jnp.zeros((B,), jnp.int32), done_B=jnp.zeros((B,), bool),
                   accepted_BxK=jnp.full((B, N), -1, jnp.int32), blocks_B=jnp.zeros((B,), jnp.int32),
                   t_cache=t_cache.rollback(prompt_len_B - 1), d_cache=d_cache.rollback(prompt_len_B - 1),
                   step=jnp.int32(0), rng=jax.random.bits(key, (4,), jnp.uint32))

  def body(s: SpecState) -> SpecState:
    rng, g_BxG1xV, u_BxG = _block_noise(s.rng, B, q_vocab, cfg)
    last_B = _take(s.seq_BxS, s.len_B - 1)
    with jax.named_scope("draft"):
      y_BxG, q_BxGxV, d_cache = _draft(draft, last_B, s.d_cache, cfg, g_BxG1xV, d_head_DxV)
    with jax.named_scope("verify"):
      logits_BxG1xV, t_cache = target(jnp.concatenate([last_B[:, None], y_BxG], axis=1), s.t_cache, head_DxV)
    p_BxG1xV = cfg.policy.probs(logits_BxG1xV)
    a_B, z_B = _verify(p_BxG1xV, q_BxGxV, y_BxG, eps, u_BxG, None if g_BxG1xV is None else g_BxG1xV[:, G], cfg)
    # emitted block: y_1..y_a then z, padded to G + 1
    idx_G1 = jnp.arange(G + 1)
    y_pad_BxG1 = jnp.concatenate([y_BxG, jnp.zeros_like(y_BxG[:, :1])], axis=1)
    emit_BxG1 = jnp.where(idx_G1 < a_B[:, None], y_pad_BxG1, z_B[:, None])
    count_B = a_B + 1
    is_eos = (emit_BxG1 == eos) & (idx_G1 < count_B[:, None])
    first_eos_B = jnp.argmax(is_eos, axis=1)
    hit_eos_B = jnp.any(is_eos, axis=1)
    count_B = jnp.where(hit_eos_B, first_eos_B + 1, count_B)
    count_B = jnp.minimum(count_B, N - s.num_B)
    active = ~s.done_B
    count_B = jnp.where(active, count_B, 0)
    emit_BxG1 = jnp.where(idx_G1 < count_B[:, None], emit_BxG1, cfg.pad_id)
    out = write_rows(s.out_BxM, emit_BxG1, s.num_B)
    seq = write_rows(s.seq_BxS, emit_BxG1, s.len_B)
    num_B = s.num_B + count_B
    len_B = s.len_B + count_B
    done_B = s.done_B | (active & (hit_eos_B | (num_B >= N)))
    with jax.named_scope("draft"):
      d_cache = _catch_up(draft, d_cache, seq, len_B, (a_B == G) & ~done_B)
    blk_B = jnp.minimum(s.blocks_B, N - 1)
    acc_B = jnp.where(active, a_B, _take(s.accepted_BxK, blk_B))
    accepted = write_rows(s.accepted_BxK, acc_B[:, None], blk_B)
    return SpecState(seq_BxS=seq, len_B=len_B, out_BxM=out, num_B=num_B, done_B=done_B, accepted_BxK=accepted,
                     blocks_B=s.blocks_B + active.astype(jnp.int32), t_cache=t_cache.rollback(len_B - 1),
                     d_cache=d_cache.rollback(len_B - 1), step=s.step + 1, rng=rng)

  s = lax.while_loop(lambda s: ~jnp.all(s.done_B), body, init)
  return SpecOutput(tokens_BxN=s.out_BxM[:, :N], num_B=s.num_B, accepted_BxK=s.accepted_BxK,
                    target_calls_B=s.blocks_B, draft_calls_B=s.blocks_B * G)


def speculative_generate(target, draft, prompt_BxP, prompt_len_B, cfg: SpecConfig, key=None,
                         eps: float = 1.0) -> SpecOutput:
  """Speculative sampling of up to cfg.max_new_tokens tokens per row (see the module docstring)."""
  check_same_vocab(target, draft)
  if not 0.0 < eps <= 1.0:
    raise ValueError(f"lenience eps must be in (0, 1], got {eps}")
  if cfg.policy.greedy and eps != 1.0:
    raise ValueError(f"lenience eps={eps} needs temperature > 0 (greedy speculative decoding is exact only)")
  prompt_BxP = jnp.asarray(prompt_BxP, jnp.int32)
  prompt_len_B = jnp.asarray(prompt_len_B, jnp.int32)
  max_len = min(target.cfg.max_len, draft.cfg.max_len)
  check_prompts(prompt_BxP, prompt_len_B, cfg.max_new_tokens + cfg.gamma + 1, max_len,
                what="max_new_tokens + gamma + 1", vocab_size=target.cfg.vocab_size)
  key = jax.random.key(0) if key is None else key
  return _speculative(target, draft, prompt_BxP, prompt_len_B, key, jnp.float32(eps), cfg)
