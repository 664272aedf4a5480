"""Speculative sampling (Leviathan et al. 2023; DistillSpec Alg. A.1): lossless, greedy and lossy, batched, jitted.

One block for row b, whose sequence so far is ``x[0..n]`` (``last = x[n]`` not yet in either cache):

1. Draft gamma tokens with the draft's KV cache. The first draft call feeds two tokens ``x[n-1], x[n]`` at
   positions n-1, n (rewriting x[n-1] is harmless: same token, same context); this keeps the draft cache complete
   even when the previous block accepted everything, at the price of a 2-token instead of a 1-token call.
   Later calls feed one token each: gamma draft calls per block in total.
2. Verify: ONE target call over ``x[n], y_1 .. y_gamma`` (gamma + 1 positions) gives p_1 .. p_{gamma+1}.
3. Accept y_i while ``u_i * q_i(y_i) < f(p_i(y_i), eps)`` (i.e. u_i < min(1, f/q)); a = number accepted.
4. a < gamma: emit z ~ norm(max(0, p_{a+1} - q_{a+1})) (p_{a+1} if that is all zero); a == gamma: z ~ p_{gamma+1}.
   Greedy (temperature 0): accept while y_i == argmax p_i, z = argmax p_{a+1}: output == greedy target decoding.
5. Emit y_1..y_a, z; roll both caches back to the new length - 1 (the new last token is fed next block).

Lenience (lossy SD, DistillSpec Sec. 5.3): f_lin = p / eps, f_sq = p / eps^2, f_exp = p^eps; eps = 1 is lossless.
eps is a traced argument (sweeping it does not recompile); lenience must be 1 in greedy mode.

Rows advance independently (own accepted lengths, own EOS / max_new_tokens). Stats per row: accepted count per
block (``accepted_BxK``, -1 for blocks not run), target calls, draft calls.

Speed choices (CPU, batch 1; see benchmarks/speculative.py): the loop is one ``lax.while_loop`` with no host sync
and one trace per (shapes, SpecConfig) (``TRACE_COUNT``).
* Randomness: ``key`` seeds a ``lax.rng_bit_generator`` state carried in the loop; each block draws ALL its random
  bits in one op (gamma + 1 Gumbel vectors for the draft samples and the correction/bonus token, gamma uniforms
  for the accept tests). jax.random's threefry is lowered on CPU as a rolled while loop per call, and the
  split/fold_in/categorical/uniform calls made ~8 such loops per block. Sampling is Gumbel-max (argmax of
  logits / T + Gumbel), the rule of ``jax.random.categorical``, so samples are exact; the stream differs from
  jax.random's for a given key. Greedy mode draws no random bits.
* The draft probs q are one softmax over the stacked [B, gamma, V] logits after drafting (not gamma small ones).
* Batch-1 updates of seq / out / accepted are dynamic_update_slices, not scatters.
* The models go to ``jax.jit`` as pytrees (NNX modules are pytrees): ~0.5 ms of Python per model and call,
  against ~5 ms for ``nnx.split`` plus hashing a static graph definition.
What is left beyond the model calls (benchmarks/results/speculative.json): ~2-3% of a block for sampling and
accept/reject, <1% for the 2-token first draft call, and ~6-7% because the target's weights stream evicts the
draft's from the CPU caches between blocks (the isolated t_draft is measured hot).
"""
from __future__ import annotations

import dataclasses
import functools
from collections import Counter

import flax.struct
import jax
import jax.numpy as jnp
from jax import lax

from dsrepro.sd.decode import check_prompts, prefill
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
  t_cache: KVCache
  d_cache: KVCache
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
  rng, bits = lax.rng_bit_generator(rng, (B, (G + 1) * V + G), dtype=jnp.uint32)
  g_BxG1xV = gumbel_from_bits(bits[:, :(G + 1) * V]).reshape(B, G + 1, V)
  return rng, g_BxG1xV, uniform_from_bits(bits[:, (G + 1) * V:])


def _draft(d_model, s: SpecState, cfg: SpecConfig, g_BxG1xV):
  """gamma draft tokens per row; returns y_BxG, draft probs q_BxGxV and the draft cache.

  g_BxG1xV: Gumbel noise (None when greedy); draft token i is argmax(logits / T + g[:, i])."""
  n_B = s.len_B - 1                                  # position of the last token
  has_prev = n_B >= 1
  prev_B = _take(s.seq_BxS, jnp.maximum(n_B - 1, 0))
  last_B = _take(s.seq_BxS, n_B)
  feed_Bx2 = jnp.where(has_prev[:, None], jnp.stack([prev_B, last_B], 1),
                       jnp.stack([last_B, jnp.full_like(last_B, cfg.pad_id)], 1))
  cache = s.d_cache.rollback(jnp.maximum(n_B - 1, 0))
  logits_Bx2xV, cache = d_model(feed_Bx2, cache)
  logits_BxV = jnp.where(has_prev[:, None], logits_Bx2xV[:, 1], logits_Bx2xV[:, 0])
  cache = cache.rollback(n_B + 1)
  ys, logits = [], []
  for i in range(cfg.gamma):
    if i > 0:
      logits_Bx1xV, cache = d_model(ys[-1][:, None], cache)
      logits_BxV = logits_Bx1xV[:, 0]
    logits.append(logits_BxV)
    ys.append(cfg.policy.sample(logits_BxV, None if g_BxG1xV is None else g_BxG1xV[:, i]))
  # one softmax over the stacked [B, G, V] logits: fewer small ops than G separate ones
  return jnp.stack(ys, 1), cfg.policy.probs(jnp.stack(logits, 1)), cache


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
  init = SpecState(seq_BxS=seq, len_B=prompt_len_B, out_BxM=jnp.full((B, N + G + 1), cfg.pad_id, jnp.int32),
                   num_B=jnp.zeros((B,), jnp.int32), done_B=jnp.zeros((B,), bool),
                   accepted_BxK=jnp.full((B, N), -1, jnp.int32), blocks_B=jnp.zeros((B,), jnp.int32),
                   t_cache=t_cache.rollback(prompt_len_B - 1), d_cache=d_cache, step=jnp.int32(0),
                   rng=jax.random.bits(key, (4,), jnp.uint32))

  def body(s: SpecState) -> SpecState:
    rng, g_BxG1xV, u_BxG = _block_noise(s.rng, B, q_vocab, cfg)
    y_BxG, q_BxGxV, d_cache = _draft(draft, s, cfg, g_BxG1xV)
    n_B = s.len_B - 1
    feed_BxG1 = jnp.concatenate([_take(s.seq_BxS, n_B)[:, None], y_BxG], axis=1)
    logits_BxG1xV, t_cache = target(feed_BxG1, s.t_cache.rollback(n_B))
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
    out = write_rows(s.out_BxM[..., None, None], emit_BxG1[..., None, None], s.num_B)[..., 0, 0]
    seq = write_rows(s.seq_BxS[..., None, None], emit_BxG1[..., None, None], s.len_B)[..., 0, 0]
    num_B = s.num_B + count_B
    len_B = s.len_B + count_B
    done_B = s.done_B | (active & (hit_eos_B | (num_B >= N)))
    blk_B = jnp.minimum(s.blocks_B, N - 1)
    acc_B = jnp.where(active, a_B, _take(s.accepted_BxK, blk_B))
    accepted = write_rows(s.accepted_BxK[..., None, None], acc_B[:, None, None, None], blk_B)[..., 0, 0]
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
                what="max_new_tokens + gamma + 1")
  key = jax.random.key(0) if key is None else key
  return _speculative(target, draft, prompt_BxP, prompt_len_B, key, jnp.float32(eps), cfg)
