"""Cached evaluations of the artefacts: a model's own outputs and their quality, batch-1 call latencies, the
speculative-decoding records of a (target, draft) pair, and measured wall time.

Every result is a JSON file under ``<root>/<profile>/eval/<kind>-<hash of its config>.json``; the config names
the models by their run ids (``artefacts.Trained.id``), so a retrained model is re-evaluated and nothing else.
Evaluation prompts, random keys and lengths come from the profile (``n_eval`` validation prompts, ``p.seed``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dsrepro import runs
from dsrepro.models.transformer import next_token
from dsrepro.repro.artefacts import TaskData, Trained, profile_root, target, task_data
from dsrepro.repro.profiles import Profile
from dsrepro.sd import evaluate, theory
from dsrepro.sd.decode import DecodeConfig, join_outputs
from dsrepro.sd.sampling import decoding_label
from dsrepro.sd.speculative import SpecConfig

__all__ = ["outputs", "loglik", "target_loglik", "forward_latency", "pair_latencies", "SDRecord", "sd_records",
           "wall_time", "cached_json"]


def eval_path(p: Profile, root, kind: str, cfg: dict) -> Path:
  return profile_root(p, root) / "eval" / f"{kind}-{runs.config_hash(cfg)}.json"


def cached_json(path: Path, fn):
  if path.exists():
    return runs.read_json(path)
  out = fn()
  runs.write_json(path, out)
  return out


def outputs(p: Profile, task: str, m: Trained, temperature: float, root=None) -> dict:
  """A model's own outputs on the evaluation prompts: tokens, texts, task score (overall and per example) and
  quality under the target (mean log-likelihood; per example as sums and token counts)."""
  td = task_data(p, task, root)
  cfg = dict(model=m.id, task=task, T=temperature, n=p.n_eval, new=p.max_new_tokens, seed=p.seed)

  def run():
    res = evaluate.run_plain(m.model, td.eval_prompts_NxP, td.eval_plen_N,
                             DecodeConfig(max_new_tokens=p.max_new_tokens, temperature=temperature,
                                          eos_id=td.eos_id, pad_id=td.pad_id),
                             jax.random.key(p.seed), batch_size=p.eval_batch)
    ll = loglik(target(p, task, root).model, td, res["tokens_NxT"], res["num_N"])
    return dict(tokens=res["tokens_NxT"].tolist(), num=res["num_N"].tolist(),
                texts=td.decode(res["tokens_NxT"], res["num_N"]),
                task_score=td.score(res["tokens_NxT"], res["num_N"]),
                score_per_example=td.score_per_example(res["tokens_NxT"], res["num_N"]), **ll)
  return cached_json(eval_path(p, root, "outputs", cfg), run)


@jax.jit
def _row_loglik(model, tokens_BxL, mask_BxL):
  logits_BxTxV, targets_BxT, mask_BxT = next_token(model(tokens_BxL)[0], tokens_BxL, mask_BxL)
  lp_BxT = jnp.take_along_axis(jax.nn.log_softmax(logits_BxTxV, -1), targets_BxT[..., None], -1)[..., 0]
  return jnp.sum(lp_BxT * mask_BxT, axis=1), jnp.sum(mask_BxT, axis=1)


def loglik(model, td: TaskData, tokens_NxT, num_N, batch_size: int = 32) -> dict:
  """Log-likelihood of outputs under ``model``: ``target_ll`` = mean per token over all outputs (our
  scale-robust quality measure), and per example ``ll_sum_per_example`` / ``ll_n_per_example`` (for intervals)."""
  seq, mask = join_outputs(td.eval_prompts_NxP, td.eval_plen_N, np.asarray(tokens_NxT), np.asarray(num_N), td.pad_id)
  sums, counts = [], []
  for a in range(0, len(seq), batch_size):
    s, m = seq[a:a + batch_size], mask[a:a + batch_size]
    pad = batch_size - len(s)
    s, m = np.pad(s, ((0, pad), (0, 0)), constant_values=td.pad_id), np.pad(m, ((0, pad), (0, 0)))
    ls, lc = _row_loglik(model, jnp.asarray(s), jnp.asarray(m))
    sums.append(np.asarray(ls)[:batch_size - pad])
    counts.append(np.asarray(lc)[:batch_size - pad])
  ll_sum, ll_n = np.concatenate(sums).astype(np.float64), np.concatenate(counts).astype(np.float64)
  return dict(target_ll=float(ll_sum.sum() / max(ll_n.sum(), 1.0)), ll_sum_per_example=ll_sum.tolist(),
              ll_n_per_example=ll_n.tolist())


def target_loglik(model, td: TaskData, tokens_NxT, num_N) -> float:
  """Mean per-token log-likelihood of outputs under ``model``."""
  return loglik(model, td, tokens_NxT, num_N)["target_ll"]


def forward_latency(p: Profile, model, n_tokens: int, context: int, root=None) -> float:
  """Batch-1 seconds of one cached forward of ``n_tokens`` tokens INSIDE a jitted loop (``evaluate.loop_latency``:
  the cost SD and plain decoding pay per call, without Python dispatch), ``context`` tokens in the cache. Measured
  once per ARCHITECTURE (weights do not change it) and cached, so every figure uses the same number."""
  cfg = dict(model=model.cfg, n=n_tokens, ctx=context, backend=jax.default_backend(), kind="loop")
  return cached_json(eval_path(p, root, "latency", cfg),
                      lambda: evaluate.loop_latency(model, n_tokens, context))


def pair_latencies(p: Profile, target_model, draft_model, gamma: int, context: int, root=None) -> dict:
  """t_draft (1 token), t_target (1 token), t_verify (gamma + 1 tokens) and c = t_draft / t_target, in-loop."""
  t_d = forward_latency(p, draft_model, 1, context, root)
  t_t = forward_latency(p, target_model, 1, context, root)
  t_v = forward_latency(p, target_model, gamma + 1, context, root)
  return dict(t_draft=t_d, t_target=t_t, t_verify=t_v, c=t_d / t_t)


@dataclasses.dataclass(frozen=True)
class SDRecord:
  """Speculative decoding of one (target, draft) pair on a task's evaluation prompts at one decoding and gamma.

  alpha_hat = accepted / drafted and tau = tokens / target calls from real SD runs; alpha_tf = teacher-forced
  acceptance on the target's own outputs (DistillSpec Eq. 1) and tau_theory = tau(alpha_tf, gamma); c and the
  t_* latencies are in-loop batch-1 call times; speedup_c = tau / (c gamma + 1) (the paper's model), speedup_pred
  = tau t_target / (gamma t_draft + t_verify) (from the call latencies). task_score and target_ll score the SD
  outputs. The ``*_per_example`` lists (one entry per evaluation prompt) are what the bootstrap intervals
  resample: emitted tokens, target calls, accepted and drafted tokens, log-likelihood sums and token counts, task
  scores. Measured wall time is a separate measurement (:func:`wall_time`)."""
  task: str
  target: str
  draft: str
  temperature: float
  decoding: str
  gamma: int
  eps: float
  lenience_fn: str
  alpha_hat: float
  tau: float
  alpha_tf: float
  tau_theory: float
  c: float
  t_draft: float
  t_target: float
  t_verify: float
  speedup_c: float
  speedup_pred: float
  task_score: float
  target_ll: float
  tau_per_example: list
  alpha_tf_per_example: list
  tokens_per_example: list
  calls_per_example: list
  accepted_per_example: list
  drafted_per_example: list
  ll_sum_per_example: list
  ll_n_per_example: list
  score_per_example: list


_NO_QUALITY = dict(task_score=float("nan"), target_ll=float("nan"), score_per_example=[], ll_sum_per_example=[],
                   ll_n_per_example=[])


def _quality(target_model, td: TaskData, res: dict) -> dict:
  return dict(task_score=td.score(res["tokens_NxT"], res["num_N"]),
              score_per_example=td.score_per_example(res["tokens_NxT"], res["num_N"]),
              **loglik(target_model, td, res["tokens_NxT"], res["num_N"]))


def sd_records(p: Profile, task: str, target_m: Trained, draft_m: Trained, root=None, gammas=None,
               temperatures=None, eps: float = 1.0, lenience_fn: str = "lin",
               quality: bool = False) -> list[SDRecord]:
  """SD evaluation records of one (target, draft) pair over gammas x temperatures (cached). ``quality``: also
  score the SD outputs (task score, log-likelihood under the target: a target forward over every output). Lossless
  SD samples the target's distribution, so only lossy SD (Fig. 5b) needs it; otherwise those fields are nan /
  empty."""
  td = task_data(p, task, root)
  gammas = tuple(gammas or p.gammas)
  temperatures = tuple(p.temperatures if temperatures is None else temperatures)
  cfg = dict(t=target_m.id, d=draft_m.id, task=task, g=gammas, T=temperatures, eps=eps, f=lenience_fn,
             n=p.n_eval, new=p.max_new_tokens, seed=p.seed, quality=quality)
  tgt, drf = target_m.model, draft_m.model

  def run():
    lat = {g: pair_latencies(p, tgt, drf, g, td.max_prompt_len, root) for g in gammas}
    recs = []
    for T in temperatures:
      tgt_out = outputs(p, task, target_m, T, root)
      seq, mask = join_outputs(td.eval_prompts_NxP, td.eval_plen_N, np.asarray(tgt_out["tokens"]),
                               np.asarray(tgt_out["num"]), td.pad_id)
      alpha_tf_N = evaluate.teacher_forced_alpha(tgt, drf, seq, mask, T)
      alpha_tf = float(np.nanmean(alpha_tf_N))
      for g in gammas:
        cfg_sd = SpecConfig(gamma=g, max_new_tokens=p.max_new_tokens, temperature=T, lenience_fn=lenience_fn,
                            eos_id=td.eos_id, pad_id=td.pad_id)
        res = evaluate.run_sd(tgt, drf, td.eval_prompts_NxP, td.eval_plen_N, cfg_sd, jax.random.key(p.seed),
                              batch_size=p.eval_batch, eps=eps)
        s, L, acc_NxK = res["summary"], lat[g], np.asarray(res["accepted_NxK"])
        rec = dict(task=task, target=target_m.id, draft=draft_m.id, temperature=T, decoding=decoding_label(T),
                   gamma=g, eps=eps, lenience_fn=lenience_fn, alpha_hat=s["alpha_hat"], tau=s["tau"],
                   alpha_tf=alpha_tf, tau_theory=float(theory.expected_block_efficiency(alpha_tf, g)),
                   c=L["c"], t_draft=L["t_draft"], t_target=L["t_target"], t_verify=L["t_verify"],
                   speedup_c=float(theory.speedup_from_tau(s["tau"], g, L["c"])),
                   speedup_pred=float(theory.predicted_speedup(s["tau"], L["t_target"], L["t_draft"],
                                                               L["t_verify"], g)),
                   tau_per_example=np.asarray(s["tau_B"]).tolist(), alpha_tf_per_example=alpha_tf_N.tolist(),
                   tokens_per_example=np.asarray(res["num_N"]).tolist(),
                   calls_per_example=np.asarray(res["target_calls_N"]).tolist(),
                   accepted_per_example=np.where(acc_NxK >= 0, acc_NxK, 0).sum(1).tolist(),
                   drafted_per_example=(g * (acc_NxK >= 0).sum(1)).tolist(),
                   **(_quality(tgt, td, res) if quality else _NO_QUALITY))
        recs.append(rec)
    return recs
  return [SDRecord(**r) for r in cached_json(eval_path(p, root, "sd", cfg), run)]


def wall_time(p: Profile, task: str, target_m: Trained, draft_m: Trained, gamma: int, temperature: float,
              root=None, timing_round: int = 0) -> dict:
  """Measured batch-1 wall time of target-only decoding and of SD on the first ``p.n_latency_prompts`` evaluation
  prompts (``evaluate.wall_time_speedup``, fastest of ``p.latency_reps`` runs per prompt), cached; per prompt
  ``plain_s``, ``plain_tokens``, ``sd_s``, ``sd_tokens`` (for intervals) and the overall ``speedup``.
  ``timing_round`` r < ``p.wall_rounds``: the same measurement repeated at another time (its own cache entry)."""
  if not 0 <= timing_round < p.wall_rounds:
    raise ValueError(f"timing_round={timing_round!r} is out of range: profile {p.name!r} has wall_rounds="
                     f"{p.wall_rounds} (rounds 0 .. {p.wall_rounds - 1})")
  td = task_data(p, task, root)
  k = p.n_latency_prompts
  cfg = dict(t=target_m.id, d=draft_m.id, task=task, g=gamma, T=temperature, n=k, new=p.max_new_tokens,
             reps=p.latency_reps, seed=p.seed, backend=jax.default_backend(),
             **({"round": timing_round} if timing_round else {}))  # round 0 keeps the key it always had

  def run():
    spec = SpecConfig(gamma=gamma, max_new_tokens=p.max_new_tokens, temperature=temperature, eos_id=td.eos_id,
                      pad_id=td.pad_id)
    w = evaluate.wall_time_speedup(target_m.model, draft_m.model, td.eval_prompts_NxP[:k], td.eval_plen_N[:k],
                                   spec, jax.random.key(p.seed), reps=p.latency_reps)
    return dict(speedup=w["speedup"], plain_s=list(w["plain_s_N"]), sd_s=list(w["sd_s_N"]),
                plain_tokens=list(w["plain_tokens_N"]), sd_tokens=list(w["sd_tokens_N"]))
  return cached_json(eval_path(p, root, "wall", cfg), run)
