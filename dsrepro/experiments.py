"""Cached experiment artefacts shared by every notebook: tokenizers, SFT models, distilled drafts, evaluations.

Everything trained lives under ``<root>/<profile>/<kind>-<hash of its config>/`` (root: ``$DSREPRO_RUNS`` or
``<repo>/runs``), so a rerun, or another notebook asking for the same artefact, loads it instead of training again.
A config includes the identity (run directory name) of every model it starts from, so changing an upstream
setting retrains everything downstream and nothing else.

Evaluation results are cached too (JSON under ``<root>/<profile>/eval/``): one record per (target, draft, task,
decoding, gamma, lenience) with empirical alpha / tau from real SD runs, teacher-forced alpha, c and speedups.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import jax
import numpy as np

from dsrepro import data as data_lib
from dsrepro import evaluate, metrics, runs, theory
from dsrepro import tokenizer as tok_lib
from dsrepro.decode import DecodeConfig
from dsrepro.models import garden_config
from dsrepro.profiles import Profile
from dsrepro.speculative import SpecConfig
from dsrepro.train import eval_loss, train_sft


def default_root() -> Path:
  """The artefact cache root: ``$DSREPRO_RUNS`` if set, else ``<repo>/runs`` for a source checkout (the package's
  parent holds pyproject.toml), else ``./runs`` (a pip-installed package must not write into site-packages)."""
  env = os.environ.get("DSREPRO_RUNS")
  if env:
    return Path(env)
  repo = Path(__file__).resolve().parent.parent
  return repo / "runs" if (repo / "pyproject.toml").is_file() else Path.cwd() / "runs"


def _root(p: Profile, root=None) -> Path:
  return Path(root or default_root()) / p.name


def context_len(p: Profile) -> int:
  """Model context: the longest of a training row and an SD run (prompt + new tokens + gamma + 1)."""
  need = max(p.pad_len, p.max_prompt_len + 1 + p.max_new_tokens + max(p.gammas) + 1)
  return -(-need // 8) * 8


# ---------------------------------------------------------------- data and tokenizer

def tokenizer_for(p: Profile, task: str, root=None):
  cfg = dict(task=task, vocab_size=p.vocab_size, n_train=p.n_train)
  run_dir = runs.run_dir_for(_root(p, root), f"tokenizer-{task}", cfg)
  if not runs.is_done(run_dir):
    texts = list(data_lib.task_texts(task, "train", limit=p.n_train or None))
    tok_lib.save_tokenizer(tok_lib.train_tokenizer(texts, vocab_size=p.vocab_size), run_dir / "tokenizer")
    runs.mark_done(run_dir, {"n_texts": len(texts)})
  return tok_lib.load_tokenizer(run_dir / "tokenizer"), run_dir.name


class TaskData:
  """Encoded splits of one task under one profile (train / validation arrays, evaluation prompts)."""

  def __init__(self, p: Profile, task: str, root=None):
    spec = data_lib.TASKS[task] if task in data_lib.TASKS else data_lib.load_task(task, "train")  # raises if unknown
    self.task, self.metric = task, spec.metric
    self.tokenizer, self.tok_id = tokenizer_for(p, task, root)
    self.pad_id, self.eos_id = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
    mp, mt = min(p.max_prompt_len, spec.max_input_len), min(p.max_target_len, spec.max_output_len)
    self.max_prompt_len = mp
    enc = lambda ex: tok_lib.encode_examples(self.tokenizer, ex, mp, mt, pad_to=p.pad_len)
    as_dict = lambda e: {"tokens": np.asarray(e.tokens_NxL), "loss_mask": np.asarray(e.loss_mask_NxL)}
    train = enc(data_lib.load_task(task, "train", limit=p.n_train or None))
    self.train, self.train_prompt_len = as_dict(train), np.asarray(train.prompt_len_N)
    val = data_lib.load_task(task, "validation")
    self.val = as_dict(enc(val[:max(p.n_eval, 64)]))
    self.eval_examples = val[:p.n_eval]
    self.eval_prompts_NxP, self.eval_plen_N = (np.asarray(x) for x in tok_lib.encode_prompts(
        self.tokenizer, [e.prompt for e in self.eval_examples], mp, pad_to=mp))
    self.eval_refs = [e.target.strip() for e in self.eval_examples]

  def decode(self, tokens_NxT, num_N) -> list[str]:
    return [tok_lib.decode_until_eos(self.tokenizer, np.asarray(t)[:int(n)]).strip()
            for t, n in zip(tokens_NxT, num_N)]


@functools.lru_cache(maxsize=16)
def task_data(p: Profile, task: str, root=None) -> TaskData:
  return TaskData(p, task, root)


# ---------------------------------------------------------------- models

@functools.lru_cache(maxsize=64)
def _load(run_dir: str):
  return runs.load_model(run_dir)


def sft_model(p: Profile, task: str, size: str, root=None, which: str | None = None):
  """The SFT model of a garden size on a task. Returns (model, run id). ``which`` picks the train config
  ("target" | "draft" | "garden"; default by size: the profile's target, its draft (or the garden's smallest),
  else a garden-only size)."""
  td = task_data(p, task, root)
  if which is None:
    which = ("target" if size == p.target_size else "draft" if size in (p.draft_size, p.garden[0])
             else "garden")
  tcfg = {"target": p.sft_target, "draft": p.sft_draft, "garden": p.sft_garden}[which]
  mcfg = garden_config(size, len(td.tokenizer), max_len=context_len(p))
  run_dir = runs.run_dir_for(_root(p, root), f"sft-{task}-{size}",
                             dict(model=mcfg, train=tcfg, tokenizer=td.tok_id, n_train=p.n_train))
  if not runs.is_done(run_dir):
    print(f"[dsrepro] SFT {size} on {task} ({p.name}) -> {run_dir}", flush=True)
    train_sft(mcfg, tcfg, td.train, run_dir, eval_data=td.val, desc=f"sft {task}/{size}")
  return _load(str(run_dir)), run_dir.name


def heldout_loss(p: Profile, task: str, model, root=None) -> float:
  return eval_loss(model, task_data(p, task, root).val, batch_size=32)


def kd_model(p: Profile, task: str, label: str, kd, student_size: str | None = None, teacher=None, root=None,
             steps: int | None = None, track: bool = False):
  """A distilled draft: ``kd`` (a distill.KDConfig) from the SFT student of ``student_size`` (default the draft
  size) against ``teacher`` = (model, run id) (default the task's SFT target). Returns (model, run id)."""
  import dataclasses
  from dsrepro import distill
  td = task_data(p, task, root)
  kd = dataclasses.replace(kd, max_new_tokens=p.max_target_len)  # generated data as long as the targets (fits
  # the context: context_len >= pad_len = prompt + target + 2)
  student, s_id = sft_model(p, task, student_size or p.draft_size, root)
  teacher, t_id = teacher or sft_model(p, task, p.target_size, root)
  tcfg = p.kd if steps is None else _with_steps(p.kd, steps)
  if track:  # p.track_points alignment evaluations during the run (Fig. 3a), the last one at the end
    tcfg = dataclasses.replace(tcfg, eval_every=max(1, tcfg.steps // p.track_points))
  run_dir = runs.run_dir_for(_root(p, root), f"kd-{task}-{label}",
                             dict(kd=kd, train=tcfg, student=s_id, teacher=t_id, track=track))
  if not runs.is_done(run_dir):
    print(f"[dsrepro] KD {label} on {task} ({p.name}) -> {run_dir}", flush=True)
    eval_fn = _tracker(p, td, teacher) if track else None
    distill.distill(student, teacher, kd, tcfg, _kd_data(td), run_dir, eval_fn=eval_fn,
                    pad_id=td.pad_id, eos_id=td.eos_id)
  return _load(str(run_dir)), run_dir.name


def adaspec_model(p: Profile, task: str, root=None):
  """AdaSPEC draft (and its reference model) for the task's SFT pair. Returns (draft, run id)."""
  from dsrepro import distill
  td = task_data(p, task, root)
  student, s_id = sft_model(p, task, p.draft_size, root)
  teacher, t_id = sft_model(p, task, p.target_size, root)
  run_dir = runs.run_dir_for(_root(p, root), f"adaspec-{task}",
                             dict(k=p.adaspec_k, train=p.kd, student=s_id, teacher=t_id))
  draft_dir = run_dir / "draft"
  if not runs.is_done(draft_dir):
    print(f"[dsrepro] AdaSPEC on {task} ({p.name}) -> {run_dir}", flush=True)
    distill.adaspec(student, teacher, p.kd, _kd_data(td), run_dir, k=p.adaspec_k, pad_id=td.pad_id,
                    eos_id=td.eos_id)
  return _load(str(draft_dir)), run_dir.name + "/draft"


def _with_steps(cfg, steps):
  import dataclasses
  return dataclasses.replace(cfg, steps=steps, warmup_steps=max(1, steps // 10), ckpt_every=max(10, steps // 4),
                             log_every=max(1, steps // 20))


def _kd_data(td: TaskData) -> dict:
  return dict(td.train, prompt_len=td.train_prompt_len)


def _tracker(p: Profile, td: TaskData, teacher):
  """Alignment tracking during KD (Fig. 3a): alpha / tau for every gamma and temperature on held-out prompts."""
  from dsrepro import distill
  return distill.alignment_eval_fn(teacher, td.eval_prompts_NxP, td.eval_plen_N, gammas=p.gammas,
                                   temperatures=p.temperatures, max_new_tokens=p.max_new_tokens, eos_id=td.eos_id,
                                   pad_id=td.pad_id, key=jax.random.key(p.seed), task_metric=td.metric,
                                   tokenizer=td.tokenizer, refs=td.eval_refs)


def tracker_at_init(p: Profile, task: str, root=None) -> dict:
  """The Fig. 3a tracker on the SFT draft every KD run starts from, i.e. step 0 of every tracked curve (same
  prompts and random keys as during KD). Evaluated once and cached."""
  td = task_data(p, task, root)
  draft, d_id = sft_model(p, task, p.draft_size, root)
  teacher, t_id = sft_model(p, task, p.target_size, root)
  cfg = dict(draft=d_id, target=t_id, task=task, gammas=p.gammas, T=p.temperatures, n=p.n_eval,
             new=p.max_new_tokens, seed=p.seed)
  return _cached_json(_eval_path(p, root, "tracker0", cfg), lambda: _tracker(p, td, teacher)(draft))


# ---------------------------------------------------------------- evaluation

def _eval_path(p: Profile, root, kind: str, cfg: dict) -> Path:
  return _root(p, root) / "eval" / f"{kind}-{runs.config_hash(cfg)}.json"


def _cached_json(path: Path, fn):
  if path.exists():
    return runs.read_json(path)
  out = fn()
  path.parent.mkdir(parents=True, exist_ok=True)
  runs.write_json(path, out)
  return out


def outputs(p: Profile, task: str, model, model_id: str, temperature: float, root=None) -> dict:
  """A model's own outputs on the evaluation prompts: tokens, texts, task score and quality under the target."""
  td = task_data(p, task, root)
  cfg = dict(model=model_id, task=task, T=temperature, n=p.n_eval, new=p.max_new_tokens, seed=p.seed)

  def run():
    res = evaluate.run_plain(model, td.eval_prompts_NxP, td.eval_plen_N,
                             DecodeConfig(max_new_tokens=p.max_new_tokens, temperature=temperature,
                                          eos_id=td.eos_id, pad_id=td.pad_id),
                             jax.random.key(p.seed), batch_size=p.eval_batch)
    texts = td.decode(res["tokens_NxT"], res["num_N"])
    target, _ = sft_model(p, task, p.target_size, root)
    return dict(tokens=res["tokens_NxT"].tolist(), num=res["num_N"].tolist(), texts=texts,
                task_score=metrics.task_score(td.metric, texts, td.eval_refs) if td.metric != "none" else float("nan"),
                target_ll=target_loglik(target, td, res["tokens_NxT"], res["num_N"]))
  return _cached_json(_eval_path(p, root, "outputs", cfg), run)


def target_loglik(target, td: TaskData, tokens_NxT, num_N) -> float:
  """Mean per-token log-likelihood of outputs under ``target`` (our scale-robust quality measure)."""
  seq, mask = evaluate.join_outputs(td.eval_prompts_NxP, td.eval_plen_N, np.asarray(tokens_NxT), np.asarray(num_N),
                                    td.pad_id)
  return -eval_loss(target, {"tokens": seq, "loss_mask": np.roll(mask, 1, axis=1)}, batch_size=32)


def forward_latency(p: Profile, model, n_tokens: int, context: int, root=None) -> float:
  """Batch-1 latency of one cached forward of ``n_tokens`` tokens; measured once per ARCHITECTURE (weights do not
  change it) and cached, so every figure uses the same number for the same model shape."""
  cfg = dict(model=model.cfg, n=n_tokens, ctx=context, backend=jax.default_backend())
  return _cached_json(_eval_path(p, root, "latency", cfg),
                      lambda: evaluate.forward_latency(model, n_tokens, context, reps=60))


def pair_latencies(p: Profile, target, draft, gamma: int, context: int, root=None) -> dict:
  """t_draft (1 token), t_target (1 token), t_verify (gamma + 1 tokens) and c, from the cached latencies."""
  t_d = forward_latency(p, draft, 1, context, root)
  t_t = forward_latency(p, target, 1, context, root)
  t_v = forward_latency(p, target, gamma + 1, context, root)
  return dict(t_draft=t_d, t_target=t_t, t_verify=t_v, c=t_d / t_t)


def sd_records(p: Profile, task: str, target, target_id: str, draft, draft_id: str, root=None,
               gammas=None, temperatures=None, eps: float = 1.0, lenience_fn: str = "lin",
               wall_time: bool = False) -> list[dict]:
  """SD evaluation records of one (target, draft) pair over gammas x temperatures (cached)."""
  td = task_data(p, task, root)
  gammas = tuple(gammas or p.gammas)
  temperatures = tuple(p.temperatures if temperatures is None else temperatures)
  cfg = dict(t=target_id, d=draft_id, task=task, g=gammas, T=temperatures, eps=eps, f=lenience_fn,
             n=p.n_eval, new=p.max_new_tokens, wall=wall_time, nlat=p.n_latency_prompts, seed=p.seed)

  def run():
    lat = {g: pair_latencies(p, target, draft, g, td.max_prompt_len, root) for g in gammas}
    recs = []
    for T in temperatures:
      tgt_out = outputs(p, task, target, target_id, T, root)
      seq, mask = evaluate.join_outputs(td.eval_prompts_NxP, td.eval_plen_N, np.asarray(tgt_out["tokens"]),
                                        np.asarray(tgt_out["num"]), td.pad_id)
      alpha_tf_N = evaluate.teacher_forced_alpha(target, draft, seq, mask, T)
      for g in gammas:
        cfg_sd = SpecConfig(gamma=g, max_new_tokens=p.max_new_tokens, temperature=T, lenience_fn=lenience_fn,
                            eos_id=td.eos_id, pad_id=td.pad_id)
        res = evaluate.run_sd(target, draft, td.eval_prompts_NxP, td.eval_plen_N, cfg_sd, jax.random.key(p.seed),
                              batch_size=p.eval_batch, eps=eps)
        s, L = res["summary"], lat[g]
        texts = td.decode(res["tokens_NxT"], res["num_N"])
        rec = dict(task=task, target=target_id, draft=draft_id, temperature=T,
                   decoding="greedy" if T == 0 else f"T={T:g}", gamma=g, eps=eps, lenience_fn=lenience_fn,
                   alpha_hat=s["alpha_hat"], tau=s["tau"], tau_per_example=np.asarray(s["tau_B"]).tolist(),
                   alpha_tf=float(np.nanmean(alpha_tf_N)), alpha_tf_per_example=alpha_tf_N.tolist(),
                   tau_theory=float(theory.expected_block_efficiency(float(np.nanmean(alpha_tf_N)), g)),
                   c=L["c"], t_draft=L["t_draft"], t_target=L["t_target"], t_verify=L["t_verify"],
                   speedup_c=float(s["tau"] / (L["c"] * g + 1)),
                   speedup_pred=float(theory.predicted_speedup(s["tau"], L["t_target"], L["t_draft"],
                                                               L["t_verify"], g)),
                   task_score=metrics.task_score(td.metric, texts, td.eval_refs) if td.metric != "none"
                   else float("nan"),
                   target_ll=target_loglik(target, td, res["tokens_NxT"], res["num_N"]))
        if wall_time:
          k = p.n_latency_prompts
          w = evaluate.wall_time_speedup(target, draft, td.eval_prompts_NxP[:k], td.eval_plen_N[:k], cfg_sd,
                                         jax.random.key(p.seed))
          rec.update(speedup_wall=w["speedup"], plain_s_per_token=w["plain_s_per_token"],
                     sd_s_per_token=w["sd_s_per_token"])
        recs.append(rec)
    return recs
  return _cached_json(_eval_path(p, root, "sd", cfg), run)
