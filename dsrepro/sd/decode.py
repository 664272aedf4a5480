"""Autoregressive decoding with the KV cache, fully under ``jax.jit`` / ``lax.while_loop``.

``generate(model, prompt_BxP, prompt_len_B, cfg, key)``: prompts are right-padded; row b's prompt is
``prompt_BxP[b, :prompt_len_B[b]]``. The settings in :class:`DecodeConfig` are static (hashable) and the model's
structure (config) is static, so calls with the same shapes and settings reuse one compiled program
(``TRACE_COUNT["generate"]`` counts traces, for tests).

Tokens are drawn by the config's :class:`dsrepro.sd.sampling.Policy`. Randomness: ``key`` seeds a
``lax.rng_bit_generator`` state that the loop carries; each step draws its B x V bits in one op (see
``dsrepro.sd.sampling`` for why).
"""
from __future__ import annotations

import dataclasses
import functools
from collections import Counter

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dsrepro.errors import ConfigError
from dsrepro.sd.sampling import Policy, gumbel_from_bits
from dsrepro.models.kvcache import KVCache, init_cache

TRACE_COUNT: Counter = Counter()


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
  """Static decoding settings. temperature 0 = greedy; eos_id None = never stop early."""
  max_new_tokens: int
  temperature: float = 0.0
  top_k: int = 0
  top_p: float = 1.0
  eos_id: int | None = None
  pad_id: int = 0

  def __post_init__(self):
    if self.max_new_tokens < 1:
      raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
    Policy(self.temperature, self.top_k, self.top_p)  # validates them

  @property
  def policy(self) -> Policy:
    return Policy(self.temperature, self.top_k, self.top_p)


@flax.struct.dataclass
class DecodeState:
  """Loop state of plain decoding (B rows, N = max_new_tokens)."""
  step: jax.Array        # [] int32, tokens generated so far (by the longest row)
  out_BxN: jax.Array     # [B, N] int32 generated tokens (pad after a row stops)
  num_B: jax.Array       # [B] int32 generated tokens per row (EOS included)
  done_B: jax.Array      # [B] bool
  last_B: jax.Array      # [B] int32 the token to feed next
  cache: KVCache
  key: jax.Array         # [4] uint32 lax.rng_bit_generator state


@flax.struct.dataclass
class DecodeOutput:
  tokens_BxN: jax.Array  # [B, N] generated tokens, pad_id after each row's end
  num_B: jax.Array       # [B] number of generated tokens (EOS included)


def check_prompts(prompt_BxP, prompt_len_B, need: int, max_len: int, what: str = "max_new_tokens",
                  vocab_size: int | None = None) -> None:
  """Validate prompts eagerly, on the host before jit: shapes, lengths (clear errors instead of silent cache
  overflow) and token ids, which must lie in [0, vocab_size) (never negative when vocab_size is not given): an
  out-of-vocabulary id would otherwise be clipped or zeroed silently by the embedding gather. Raises
  errors.ConfigError (a ValueError) naming the offending value."""
  if prompt_BxP.ndim != 2:
    raise ConfigError(f"prompt must be [B, P], got shape {tuple(prompt_BxP.shape)}")
  if prompt_len_B.shape != (prompt_BxP.shape[0],):
    raise ConfigError(f"prompt_len has shape {tuple(prompt_len_B.shape)}; expected ({prompt_BxP.shape[0]},) to "
                      f"match the prompt batch of shape {tuple(prompt_BxP.shape)}")
  lens = np.asarray(prompt_len_B)
  if lens.min() < 1 or lens.max() > prompt_BxP.shape[1]:
    raise ConfigError(f"prompt lengths must be in [1, {prompt_BxP.shape[1]}], got min {lens.min()} max "
                      f"{lens.max()}")
  total = prompt_BxP.shape[1] + need
  if total > max_len:
    raise ConfigError(f"prompt length {prompt_BxP.shape[1]} + {what} ({need}) = {total} exceeds the model context "
                      f"max_len={max_len}")
  ids = np.asarray(prompt_BxP)
  hi = np.iinfo(np.int64).max if vocab_size is None else int(vocab_size)
  bad = (ids < 0) | (ids >= hi)
  if bad.any():
    b, t = (int(i) for i in np.argwhere(bad)[0])
    where = "in the prompt" if t < lens[b] else "in the padding after the prompt"
    vocab = f"[0, {hi})" if vocab_size is not None else "[0, vocab_size)"
    raise ConfigError(f"prompt token id {int(ids[b, t])} at row {b}, position {t} ({where}; {int(bad.sum())} bad "
                      f"id(s) in all) is outside the model's vocabulary {vocab}; encode prompts with the model's "
                      "own tokenizer and pad with its pad id")


def random_bits(rng, shape):
  """``(new rng state, uint32 bits of shape)``: one ``lax.rng_bit_generator`` call on the [4] uint32 state that the
  decoding loops carry. Threefry: on CPU it draws a block's 12K words in ~40 us, the default (Philox) in ~115 us
  (benchmarks/speculative.py)."""
  return lax.rng_bit_generator(rng, shape, dtype=jnp.uint32, algorithm=lax.RandomAlgorithm.RNG_THREE_FRY)


def sample_step(logits_BxV, rng, policy: Policy):
  """One token per row from logits; returns (token_B, new rng state). Greedy draws no bits."""
  if policy.greedy:
    return policy.sample(logits_BxV, None), rng
  rng, bits_BxV = random_bits(rng, logits_BxV.shape)
  return policy.sample(logits_BxV, gumbel_from_bits(bits_BxV)), rng


def prefill(model, prompt_BxP, prompt_len_B, cache_len: int) -> tuple[jax.Array, KVCache]:
  """Run the prompt through the model; returns logits at each row's last prompt token and the cache (end=len).

  Only those B rows go through the LM head (a [B, D] x [D, V] product, not [B*P, D] x [D, V])."""
  cache = init_cache(model.cfg, prompt_BxP.shape[0], cache_len)
  h_BxPxD, cache = model.hidden(prompt_BxP, cache)
  last_Bx1xD = jnp.take_along_axis(h_BxPxD, (prompt_len_B - 1)[:, None, None], axis=1)
  return model.logits(last_Bx1xD)[:, 0], cache.rollback(prompt_len_B)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _generate(model, prompt_BxP, prompt_len_B, key, cfg: DecodeConfig) -> DecodeOutput:
  """The model is a jit argument as a pytree (NNX modules are pytrees): ~0.5 ms of Python per call, against
  ~5 ms for nnx.split + hashing a static graphdef; its structure and config are the static part."""
  TRACE_COUNT["generate"] += 1
  B, P = prompt_BxP.shape
  N = cfg.max_new_tokens
  logits_BxV, cache = prefill(model, prompt_BxP, prompt_len_B, P + N)
  first_B, rng = sample_step(logits_BxV, jax.random.bits(key, (4,), jnp.uint32), cfg.policy)
  eos = -1 if cfg.eos_id is None else cfg.eos_id
  init = DecodeState(step=jnp.int32(1), out_BxN=jnp.full((B, N), cfg.pad_id, jnp.int32).at[:, 0].set(first_B),
                     num_B=jnp.ones((B,), jnp.int32), done_B=(first_B == eos) | (N == 1), last_B=first_B,
                     cache=cache, key=rng)

  def cond(s: DecodeState):
    return (s.step < N) & ~jnp.all(s.done_B)

  def body(s: DecodeState):
    logits_Bx1xV, cache = model(s.last_B[:, None], s.cache)
    tok_B, key = sample_step(logits_Bx1xV[:, 0], s.key, cfg.policy)
    tok_B = jnp.where(s.done_B, cfg.pad_id, tok_B)
    out = lax.dynamic_update_slice(s.out_BxN, tok_B[:, None], (0, s.step))
    num_B = s.num_B + (~s.done_B).astype(jnp.int32)
    done_B = s.done_B | (tok_B == eos) | (num_B >= N)
    return DecodeState(step=s.step + 1, out_BxN=out, num_B=num_B, done_B=done_B, last_B=tok_B, cache=cache, key=key)

  s = lax.while_loop(cond, body, init)
  return DecodeOutput(tokens_BxN=s.out_BxN, num_B=s.num_B)


def generate(model, prompt_BxP, prompt_len_B, cfg: DecodeConfig, key=None) -> DecodeOutput:
  """Decode up to cfg.max_new_tokens tokens per row after each row's prompt (batched, KV-cached, jitted)."""
  prompt_BxP = jnp.asarray(prompt_BxP, jnp.int32)
  prompt_len_B = jnp.asarray(prompt_len_B, jnp.int32)
  check_prompts(prompt_BxP, prompt_len_B, cfg.max_new_tokens, model.cfg.max_len, vocab_size=model.cfg.vocab_size)
  key = jax.random.key(0) if key is None else key
  return _generate(model, prompt_BxP, prompt_len_B, key, cfg)


def join_outputs(prompt_BxP, prompt_len_B, out_BxN, num_B, pad_id: int, width: int | None = None):
  """Rows ``prompt[:prompt_len] + out[:num]`` (numpy), right-padded with pad_id to ``width`` (default: the longest
  row). Returns ``(tokens_BxW int32, mask_BxW float32)`` with mask = 1 exactly on the output tokens: the
  ``tokenizer.encode_examples`` convention, so ``models.transformer.next_token`` scores them."""
  prompt_BxP, out_BxN = np.asarray(prompt_BxP), np.asarray(out_BxN)
  plen_Bx1, num_Bx1 = np.asarray(prompt_len_B)[:, None], np.asarray(num_B)[:, None]
  need = int(np.max(plen_Bx1 + num_Bx1))
  width = need if width is None else int(width)
  if need > width:
    raise ValueError(f"a prompt + output of {need} tokens does not fit the row width {width}")
  cols_1xW = np.arange(width)[None, :]
  in_prompt = cols_1xW < plen_Bx1
  in_out = (cols_1xW >= plen_Bx1) & (cols_1xW < plen_Bx1 + num_Bx1)
  prompt_BxW = np.take_along_axis(prompt_BxP, np.clip(cols_1xW, 0, prompt_BxP.shape[1] - 1), axis=1)
  out_BxW = np.take_along_axis(out_BxN, np.clip(cols_1xW - plen_Bx1, 0, out_BxN.shape[1] - 1), axis=1)
  tokens = np.where(in_prompt, prompt_BxW, np.where(in_out, out_BxW, pad_id)).astype(np.int32)
  return tokens, in_out.astype(np.float32)
