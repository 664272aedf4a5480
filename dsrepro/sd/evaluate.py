"""Evaluate a target/draft pair: empirical SD statistics, teacher-forced acceptance, latencies and speedups.

Conventions (DistillSpec, arXiv 2310.08461, Sec. 3 and App. D):
* empirical alpha_hat = accepted / drafted tokens and tau = tokens emitted / target calls, from real SD runs;
* teacher-forced alpha = mean over each sequence of beta_t = sum_v min(p_t, q_t) (T > 0) or [argmax p_t ==
  argmax q_t] (T = 0), on the target's own outputs;
* c = t_draft(1 token) / t_target(1 token) measured on this hardware with the KV cache at batch 1;
* predicted speedup = tau * t_target / (gamma * t_draft + t_verify) with t_verify the gamma + 1 token target call;
* realized speedup = (plain target decoding time) / (SD time) per generated token, same prompts, batch 1.
"""
from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dsrepro.models.transformer import next_token
from dsrepro.sd import acceptance
from dsrepro.sd.decode import DecodeConfig, generate, prefill
from dsrepro.models.kvcache import init_cache
from dsrepro.sd.speculative import SpecConfig, speculative_generate


def _batches(n: int, batch_size: int):
  for i in range(0, n, batch_size):
    yield i, min(i + batch_size, n)


def _pad_rows(x, b):
  """Pad the leading axis to b rows by repeating the last row (keeps jit shapes static)."""
  x = np.asarray(x)
  return x if len(x) == b else np.concatenate([x, np.repeat(x[-1:], b - len(x), 0)])


def run_sd(target, draft, prompts_NxP, plen_N, cfg: SpecConfig, key, batch_size: int = 64, eps: float = 1.0) -> dict:
  """Speculative sampling over N prompts in fixed-size batches; per-row outputs and stats, plus a summary."""
  n = len(prompts_NxP)
  bs = min(batch_size, n)
  outs = []
  for i, (a, b) in enumerate(_batches(n, bs)):
    o = speculative_generate(target, draft, _pad_rows(prompts_NxP[a:b], bs), _pad_rows(plen_N[a:b], bs), cfg,
                             key=jax.random.fold_in(key, i), eps=eps)
    outs.append(jax.tree.map(lambda x: np.asarray(x)[:b - a], o))
  cat = lambda f: np.concatenate([getattr(o, f) for o in outs])
  res = dict(tokens_NxT=cat("tokens_BxN"), num_N=cat("num_B"), accepted_NxK=cat("accepted_BxK"),
             target_calls_N=cat("target_calls_B"))
  res["summary"] = acceptance.sd_summary(res["accepted_NxK"], cfg.gamma, num_tokens_B=res["num_N"],
                                      target_calls_B=res["target_calls_N"])
  return res


def run_plain(model, prompts_NxP, plen_N, cfg: DecodeConfig, key, batch_size: int = 64) -> dict:
  """Plain autoregressive decoding over N prompts in fixed-size batches."""
  n = len(prompts_NxP)
  bs = min(batch_size, n)
  toks, nums = [], []
  for i, (a, b) in enumerate(_batches(n, bs)):
    o = generate(model, _pad_rows(prompts_NxP[a:b], bs), _pad_rows(plen_N[a:b], bs), cfg, jax.random.fold_in(key, i))
    toks.append(np.asarray(o.tokens_BxN)[:b - a])
    nums.append(np.asarray(o.num_B)[:b - a])
  return dict(tokens_NxT=np.concatenate(toks), num_N=np.concatenate(nums))


@functools.partial(jax.jit, static_argnames=("temperature",))
def _beta(target, draft, seq_BxL, temperature):
  """beta of each next-token prediction: [B, L - 1] (position t predicts token t + 1)."""
  p_logits = next_token(target(seq_BxL)[0], seq_BxL, seq_BxL)[0]
  q_logits = next_token(draft(seq_BxL)[0], seq_BxL, seq_BxL)[0]
  return acceptance.token_acceptance(p_logits, q_logits, temperature)


def teacher_forced_alpha(target, draft, seq_NxL, mask_NxL, temperature: float, batch_size: int = 32) -> np.ndarray:
  """alpha(x) per sequence: mean of beta_t over the output tokens (DistillSpec Eq. 1); ``seq_NxL, mask_NxL`` as
  ``decode.join_outputs`` returns them (mask on the output tokens)."""
  n = len(seq_NxL)
  bs = min(batch_size, n)
  betas = []
  for a, b in _batches(n, bs):
    beta = _beta(target, draft, jnp.asarray(_pad_rows(seq_NxL[a:b], bs)), float(temperature))
    betas.append(np.asarray(beta)[:b - a])
  return np.asarray(acceptance.sequence_alpha(np.concatenate(betas), np.asarray(mask_NxL)[:, 1:]))


@jax.jit
def _step(model, tokens_BxL, cache):
  return model(tokens_BxL, cache)[0]


def forward_latency(model, n_tokens: int, context: int = 128, reps: int = 30, clock=time.perf_counter) -> float:
  """Median seconds of one cached forward of n_tokens at batch 1 with `context` tokens already in the cache.

  One jitted call per forward: includes Python dispatch (~0.1-0.5 ms on CPU), which the SD while loop does not
  pay; see ``loop_latency`` for the in-loop cost. clock: see ``wall_time_speedup``."""
  cache = init_cache(model.cfg, 1, min(model.cfg.max_len, context + n_tokens)).rollback(jnp.array([context]))
  toks = jnp.ones((1, n_tokens), jnp.int32)
  _step(model, toks, cache).block_until_ready()
  times = []
  for _ in range(reps):
    t0 = clock()
    _step(model, toks, cache).block_until_ready()
    times.append(clock() - t0)
  return float(np.median(times))


@functools.partial(jax.jit, static_argnames=("n_tokens", "calls"))
def _loop(model, cache, n_tokens, calls):
  head_DxV = model.head_weight() if n_tokens > 1 else None  # multi-token calls as SD's verify makes them
  def body(i, c):
    cache, acc = c
    tok = (i + (acc > 0).astype(jnp.int32)) % 2   # depends on the last logits: nothing is hoisted
    logits_BxLxV, cache = model(jnp.full((1, n_tokens), tok, jnp.int32), cache, head_DxV)
    # consume ALL logits (a single entry would let XLA slice the LM head down to one column)
    return cache.rollback(cache.end_B - n_tokens), acc + jnp.max(logits_BxLxV)
  return lax.fori_loop(0, calls, body, (cache, jnp.float32(0)))[1]


def loop_latency(model, n_tokens: int, context: int = 128, cache_len: int | None = None, calls: int = 16,
                 reps: int = 5, clock=time.perf_counter) -> float:
  """Seconds of one cached batch-1 forward of n_tokens INSIDE a jitted loop, as in the SD / decoding loops.

  A ``lax.fori_loop`` runs the forward ``calls`` times; each call's tokens depend on the max of all the previous
  logits (nothing is hoisted or sliced away) and the cache is rolled back to ``context`` after each call (every
  call sees the same context). Per-call time = (min time of 2 + calls forwards - min time of 2 forwards) / calls:
  the difference cancels Python dispatch and the minimum over ``reps`` runs discards interference from other
  processes. ``cache_len`` (default context + n_tokens) is the buffer length attention runs over (SD allocates
  prompt + max_new_tokens + gamma + 1). Calls of more than one token get the output projection precomputed
  outside the loop (``Transformer.head_weight``), as SD's verify call does."""
  cache_len = context + n_tokens if cache_len is None else cache_len
  if cache_len < context + n_tokens:
    raise ValueError(f"cache_len={cache_len} < context + n_tokens = {context + n_tokens}")
  cache = init_cache(model.cfg, 1, cache_len).rollback(jnp.array([context]))
  t = {}
  for n in (2, 2 + calls):
    _loop(model, cache, n_tokens, n).block_until_ready()
    t[n] = []
  for _ in range(reps):
    for n in t:
      t0 = clock()
      _loop(model, cache, n_tokens, n).block_until_ready()
      t[n].append(clock() - t0)
  return max((min(t[2 + calls]) - min(t[2])) / calls, 1e-9)


@functools.partial(jax.jit, static_argnames=("cache_len", "logits"))
def _prefill(model, prompt_BxP, plen_B, cache_len, logits):
  last_BxV, cache = prefill(model, prompt_BxP, plen_B, cache_len)
  return (last_BxV, cache) if logits else cache


def prefill_latency(model, prompt_len: int, cache_len: int, reps: int = 5, logits: bool = True,
                    clock=time.perf_counter) -> float:
  """Fastest of ``reps`` jitted batch-1 prefills of a prompt_len-token prompt into a cache_len cache (seconds).

  Plain decoding prefills the target and samples from its last logits (logits=True); SD prefills the target and
  the draft and keeps only their caches (logits=False: XLA drops the LM heads). Subtracting these from wall
  times leaves the decoding loops."""
  prompt = jnp.ones((1, prompt_len), jnp.int32)
  plen = jnp.array([prompt_len], jnp.int32)
  jax.block_until_ready(_prefill(model, prompt, plen, cache_len, logits))
  times = []
  for _ in range(reps):
    t0 = clock()
    jax.block_until_ready(_prefill(model, prompt, plen, cache_len, logits))
    times.append(clock() - t0)
  return min(times)


def latencies(target, draft, gamma: int, context: int = 128, in_loop: bool = False,
              cache_len: int | None = None, reps: int | None = None, clock=time.perf_counter) -> dict:
  """t_draft (1 token), t_target (1 token), t_verify (gamma + 1 tokens) and c = t_draft / t_target.

  in_loop=False: ``forward_latency`` (one jitted call each, dispatch included); True: ``loop_latency`` (the
  per-call cost inside a jitted loop, with ``cache_len`` the cache buffer length). reps: None = their default."""
  kw = dict(clock=clock) if reps is None else dict(clock=clock, reps=reps)
  if in_loop:
    lat = lambda m, n: loop_latency(m, n, context, cache_len=cache_len, **kw)
  else:
    lat = lambda m, n: forward_latency(m, n, context, **kw)
  t_d = lat(draft, 1)
  t_t = lat(target, 1)
  t_v = lat(target, gamma + 1)
  return dict(t_draft=t_d, t_target=t_t, t_verify=t_v, c=t_d / t_t)


def wall_time_speedup(target, draft, prompts_NxP, plen_N, cfg: SpecConfig, key, reps: int = 1,
                      clock=time.perf_counter) -> dict:
  """Batch-1 wall time of plain target decoding vs SD on the same prompts (after compiling both).

  Prompt i uses key fold_in(key, i) for both decoders. reps > 1 runs each prompt reps times (plain and SD
  interleaved, same key, so the same tokens) and keeps each prompt's fastest run: robust to other processes
  on a shared machine. Times are whole ``generate`` / ``speculative_generate`` calls (Python included).
  clock: time.perf_counter (wall) or time.process_time (this process's CPU time: with the process pinned to one
  core, XLA runs one thread and this is the wall time the calls would take on an idle core, without the time
  other processes hold the core)."""
  plain_cfg = DecodeConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, eos_id=cfg.eos_id,
                           pad_id=cfg.pad_id)
  rows = [(jnp.asarray(prompts_NxP[i:i + 1]), jnp.asarray(plen_N[i:i + 1])) for i in range(len(prompts_NxP))]
  p0, l0 = rows[0]
  generate(target, p0, l0, plain_cfg, key).tokens_BxN.block_until_ready()
  speculative_generate(target, draft, p0, l0, cfg, key).tokens_BxN.block_until_ready()
  t_plain, t_sd = np.full(len(rows), np.inf), np.full(len(rows), np.inf)
  n_plain, n_sd, accepted, calls = [], [], [], []
  for r in range(reps):
    for i, (p, l) in enumerate(rows):
      k = jax.random.fold_in(key, i)
      t0 = clock()
      o = generate(target, p, l, plain_cfg, k)
      o.tokens_BxN.block_until_ready()
      t_plain[i] = min(t_plain[i], clock() - t0)
      t0 = clock()
      s = speculative_generate(target, draft, p, l, cfg, k)
      s.tokens_BxN.block_until_ready()
      t_sd[i] = min(t_sd[i], clock() - t0)
      if r == 0:
        n_plain.append(int(o.num_B[0]))
        n_sd.append(int(s.num_B[0]))
        accepted.append(np.asarray(s.accepted_BxK[0]))
        calls.append(int(s.target_calls_B[0]))
  summ = acceptance.sd_summary(np.stack(accepted), cfg.gamma, num_tokens_B=np.array(n_sd),
                              target_calls_B=np.array(calls))
  plain_tok, sd_tok = t_plain.sum() / sum(n_plain), t_sd.sum() / sum(n_sd)
  return dict(plain_s_per_token=plain_tok, sd_s_per_token=sd_tok, speedup=plain_tok / sd_tok, tau=summ["tau"],
              alpha_hat=summ["alpha_hat"], tokens_plain=sum(n_plain), tokens_sd=sum(n_sd),
              target_calls=sum(calls), sd_s_per_block=t_sd.sum() / sum(calls), plain_s_N=t_plain.tolist(),
              sd_s_N=t_sd.tolist(), plain_tokens_N=n_plain, sd_tokens_N=n_sd)
