"""Cached experiment artefacts shared by every figure: tokenizers, SFT models, distilled drafts, evaluations.

Everything trained lives under ``<root>/<profile>/<kind>-<hash of its config>/`` (root: ``$DSREPRO_RUNS`` or
``<repo>/runs``), so a rerun, or another figure asking for the same artefact, loads it instead of training again.
A config includes the identity (run directory name) of every model it starts from, so changing an upstream
setting retrains everything downstream and nothing else. A model comes back as a :class:`Trained` record.

Evaluation results are cached too (JSON under ``<root>/<profile>/eval/``): one :class:`SDRecord` per (target,
draft, task, decoding, gamma, lenience) with empirical alpha / tau from real SD runs, teacher-forced alpha, c and
speedups.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from pathlib import Path

import jax
import numpy as np

from dsrepro import data as data_lib
from dsrepro import runs, scores
from dsrepro import tokenizer as tok_lib
from dsrepro.kd import distill
from dsrepro.kd.recipes import KDConfig
from dsrepro.models.transformer import Transformer, garden_config
from dsrepro.repro.profiles import Profile
from dsrepro.sd import evaluate, theory
from dsrepro.sd.decode import DecodeConfig, join_outputs
from dsrepro.sd.sampling import decoding_label
from dsrepro.sd.speculative import SpecConfig
from dsrepro.train import eval_loss, train_sft, with_steps


def default_root() -> Path:
  """The artefact cache root: ``$DSREPRO_RUNS`` if set, else ``<repo>/runs`` for a source checkout (the package's
  parent holds pyproject.toml), else ``./runs`` (a pip-installed package must not write into site-packages)."""
  env = os.environ.get("DSREPRO_RUNS")
  if env:
    return Path(env)
  repo = Path(__file__).resolve().parent.parent.parent
  return repo / "runs" if (repo / "pyproject.toml").is_file() else Path.cwd() / "runs"


def profile_root(p: Profile, root=None) -> Path:
  """Where the profile's artefacts live: ``<root or default_root()>/<profile name>``."""
  return Path(root or default_root()) / p.name


def context_len(p: Profile) -> int:
  """Model context: the longest of a training row and an SD run (prompt + new tokens + gamma + 1)."""
  need = max(p.pad_len, p.max_prompt_len + 1 + p.max_new_tokens + max(p.gammas) + 1)
  return -(-need // 8) * 8


@dataclasses.dataclass(frozen=True)
class Trained:
  """A trained model and its identity: ``id`` (the run directory's name) enters the config of everything built
  from it; ``run_dir`` holds its checkpoints and training log."""
  model: Transformer
  id: str
  run_dir: Path

  def log(self) -> list[dict]:
    """The run's training records (``runs.read_metrics``)."""
    return runs.read_metrics(self.run_dir)


# ---------------------------------------------------------------- data and tokenizer

def tokenizer_for(p: Profile, task: str, root=None):
  """The profile's BPE tokenizer for a task (trained on its training texts, cached); returns (tokenizer, id)."""
  cfg = dict(task=task, vocab_size=p.vocab_size, n_train=p.n_train)
  run_dir = runs.run_dir_for(profile_root(p, root), f"tokenizer-{task}", cfg)
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

  def score(self, tokens_NxT, num_N) -> float:
    """The task metric of decoded outputs against the references (nan for tasks without one)."""
    if self.metric == "none":
      return math.nan
    return scores.task_score(self.metric, self.decode(tokens_NxT, num_N), self.eval_refs)

  def kd_data(self) -> dict:
    return dict(self.train, prompt_len=self.train_prompt_len)


@functools.lru_cache(maxsize=16)
def task_data(p: Profile, task: str, root=None) -> TaskData:
  return TaskData(p, task, root)


# ---------------------------------------------------------------- models

@functools.lru_cache(maxsize=64)
def _load(run_dir: Path) -> Transformer:
  return runs.load_model(run_dir)


def _trained(run_dir: Path, train) -> Trained:
  """The model of ``run_dir``, trained first by ``train()`` unless the run is finished."""
  if not runs.is_done(run_dir):
    train()
  return Trained(_load(run_dir), run_dir.name, run_dir)


def sft_model(p: Profile, task: str, size: str, root=None, which: str | None = None) -> Trained:
  """The SFT model of a garden size on a task. ``which`` picks the train config ("target" | "draft" | "garden";
  default by size: the profile's target, its draft (or the garden's smallest), else a garden-only size)."""
  td = task_data(p, task, root)
  if which is None:
    which = ("target" if size == p.target_size else "draft" if size in (p.draft_size, p.garden[0])
             else "garden")
  tcfg = {"target": p.sft_target, "draft": p.sft_draft, "garden": p.sft_garden}[which]
  mcfg = garden_config(size, len(td.tokenizer), max_len=context_len(p))
  run_dir = runs.run_dir_for(profile_root(p, root), f"sft-{task}-{size}",
                             dict(model=mcfg, train=tcfg, tokenizer=td.tok_id, n_train=p.n_train))

  def train():
    print(f"[dsrepro] SFT {size} on {task} ({p.name}) -> {run_dir}", flush=True)
    train_sft(mcfg, tcfg, td.train, run_dir, eval_data=td.val, desc=f"sft {task}/{size}")
  return _trained(run_dir, train)


def target(p: Profile, task: str, root=None) -> Trained:
  """The profile's SFT target on a task."""
  return sft_model(p, task, p.target_size, root)


def sft_draft(p: Profile, task: str, root=None) -> Trained:
  """The profile's SFT draft on a task: the starting point of every distilled draft."""
  return sft_model(p, task, p.draft_size, root)


def heldout_loss(p: Profile, task: str, model, root=None) -> float:
  return eval_loss(model, task_data(p, task, root).val, batch_size=32)


def kd_model(p: Profile, task: str, label: str, kd: KDConfig, student_size: str | None = None,
             teacher: Trained | None = None, root=None, steps: int | None = None, track: bool = False) -> Trained:
  """A distilled draft: ``kd`` from the SFT student of ``student_size`` (default the draft size) against
  ``teacher`` (default the task's SFT target)."""
  td = task_data(p, task, root)
  kd = dataclasses.replace(kd, max_new_tokens=p.max_target_len)  # generated data as long as the targets (fits
  # the context: context_len >= pad_len = prompt + target + 2)
  student = sft_model(p, task, student_size or p.draft_size, root)
  teacher = teacher or target(p, task, root)
  tcfg = p.kd if steps is None else with_steps(p.kd, steps)
  if track:  # p.track_points alignment evaluations during the run (Fig. 3a), the last one at the end
    tcfg = dataclasses.replace(tcfg, eval_every=max(1, tcfg.steps // p.track_points))
  run_dir = runs.run_dir_for(profile_root(p, root), f"kd-{task}-{label}",
                             dict(kd=kd, train=tcfg, student=student.id, teacher=teacher.id, track=track))

  def train():
    print(f"[dsrepro] KD {label} on {task} ({p.name}) -> {run_dir}", flush=True)
    eval_fn = _tracker(p, td, teacher.model) if track else None
    distill.distill(student.model, teacher.model, kd, tcfg, td.kd_data(), run_dir, eval_fn=eval_fn,
                    pad_id=td.pad_id, eos_id=td.eos_id)
  return _trained(run_dir, train)


def adaspec_model(p: Profile, task: str, root=None) -> Trained:
  """AdaSPEC draft (and its reference model, trained first) for the task's SFT pair."""
  td = task_data(p, task, root)
  student, teacher = sft_draft(p, task, root), target(p, task, root)
  run_dir = runs.run_dir_for(profile_root(p, root), f"adaspec-{task}",
                             dict(k=p.adaspec_k, train=p.kd, student=student.id, teacher=teacher.id))

  def train():
    print(f"[dsrepro] AdaSPEC on {task} ({p.name}) -> {run_dir}", flush=True)
    distill.adaspec(student.model, teacher.model, p.kd, td.kd_data(), run_dir, k=p.adaspec_k, pad_id=td.pad_id,
                    eos_id=td.eos_id)
  draft = _trained(run_dir / "draft", train)
  return dataclasses.replace(draft, id=f"{run_dir.name}/draft")


def _tracker(p: Profile, td: TaskData, teacher):
  """Alignment tracking during KD (Fig. 3a): alpha / tau for every gamma and temperature on held-out prompts."""
  return distill.alignment_eval_fn(teacher, td.eval_prompts_NxP, td.eval_plen_N, gammas=p.gammas,
                                   temperatures=p.temperatures, max_new_tokens=p.max_new_tokens, eos_id=td.eos_id,
                                   pad_id=td.pad_id, key=jax.random.key(p.seed), task_metric=td.metric,
                                   tokenizer=td.tokenizer, refs=td.eval_refs)


def tracker_at_init(p: Profile, task: str, root=None) -> dict:
  """The Fig. 3a tracker on the SFT draft every KD run starts from, i.e. step 0 of every tracked curve (same
  prompts and random keys as during KD). Evaluated once and cached."""
  td = task_data(p, task, root)
  draft, teacher = sft_draft(p, task, root), target(p, task, root)
  cfg = dict(draft=draft.id, target=teacher.id, task=task, gammas=p.gammas, T=p.temperatures, n=p.n_eval,
             new=p.max_new_tokens, seed=p.seed)
  return _cached_json(_eval_path(p, root, "tracker0", cfg), lambda: _tracker(p, td, teacher.model)(draft.model))


# ---------------------------------------------------------------- evaluation

def _eval_path(p: Profile, root, kind: str, cfg: dict) -> Path:
  return profile_root(p, root) / "eval" / f"{kind}-{runs.config_hash(cfg)}.json"


def _cached_json(path: Path, fn):
  if path.exists():
    return runs.read_json(path)
  out = fn()
  runs.write_json(path, out)
  return out


def outputs(p: Profile, task: str, m: Trained, temperature: float, root=None) -> dict:
  """A model's own outputs on the evaluation prompts: tokens, texts, task score and quality under the target."""
  td = task_data(p, task, root)
  cfg = dict(model=m.id, task=task, T=temperature, n=p.n_eval, new=p.max_new_tokens, seed=p.seed)

  def run():
    res = evaluate.run_plain(m.model, td.eval_prompts_NxP, td.eval_plen_N,
                             DecodeConfig(max_new_tokens=p.max_new_tokens, temperature=temperature,
                                          eos_id=td.eos_id, pad_id=td.pad_id),
                             jax.random.key(p.seed), batch_size=p.eval_batch)
    return dict(tokens=res["tokens_NxT"].tolist(), num=res["num_N"].tolist(),
                texts=td.decode(res["tokens_NxT"], res["num_N"]),
                task_score=td.score(res["tokens_NxT"], res["num_N"]),
                target_ll=target_loglik(target(p, task, root).model, td, res["tokens_NxT"], res["num_N"]))
  return _cached_json(_eval_path(p, root, "outputs", cfg), run)


def target_loglik(model, td: TaskData, tokens_NxT, num_N) -> float:
  """Mean per-token log-likelihood of outputs under ``model`` (our scale-robust quality measure)."""
  seq, mask = join_outputs(td.eval_prompts_NxP, td.eval_plen_N, np.asarray(tokens_NxT), np.asarray(num_N), td.pad_id)
  return -eval_loss(model, {"tokens": seq, "loss_mask": mask}, batch_size=32)


def forward_latency(p: Profile, model, n_tokens: int, context: int, root=None) -> float:
  """Batch-1 latency of one cached forward of ``n_tokens`` tokens; measured once per ARCHITECTURE (weights do not
  change it) and cached, so every figure uses the same number for the same model shape."""
  cfg = dict(model=model.cfg, n=n_tokens, ctx=context, backend=jax.default_backend())
  return _cached_json(_eval_path(p, root, "latency", cfg),
                      lambda: evaluate.forward_latency(model, n_tokens, context, reps=60))


def pair_latencies(p: Profile, target_model, draft_model, gamma: int, context: int, root=None) -> dict:
  """t_draft (1 token), t_target (1 token), t_verify (gamma + 1 tokens) and c, from the cached latencies."""
  t_d = forward_latency(p, draft_model, 1, context, root)
  t_t = forward_latency(p, target_model, 1, context, root)
  t_v = forward_latency(p, target_model, gamma + 1, context, root)
  return dict(t_draft=t_d, t_target=t_t, t_verify=t_v, c=t_d / t_t)


@dataclasses.dataclass(frozen=True)
class SDRecord:
  """Speculative decoding of one (target, draft) pair on a task's evaluation prompts at one decoding and gamma.

  alpha_hat = accepted / drafted and tau = tokens / target calls from real SD runs; alpha_tf = teacher-forced
  acceptance on the target's own outputs (DistillSpec Eq. 1) and tau_theory = tau(alpha_tf, gamma); c and the
  t_* latencies are batch-1 forward times; speedup_c = tau / (c gamma + 1) (the paper's model), speedup_pred =
  tau t_target / (gamma t_draft + t_verify), speedup_wall = measured target-only / SD wall time (nan unless
  measured). task_score and target_ll score the SD outputs."""
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
  tau_per_example: list
  alpha_tf: float
  alpha_tf_per_example: list
  tau_theory: float
  c: float
  t_draft: float
  t_target: float
  t_verify: float
  speedup_c: float
  speedup_pred: float
  task_score: float
  target_ll: float
  speedup_wall: float = math.nan
  plain_s_per_token: float = math.nan
  sd_s_per_token: float = math.nan


def sd_records(p: Profile, task: str, target_m: Trained, draft_m: Trained, root=None, gammas=None,
               temperatures=None, eps: float = 1.0, lenience_fn: str = "lin",
               wall_time: bool = False) -> list[SDRecord]:
  """SD evaluation records of one (target, draft) pair over gammas x temperatures (cached)."""
  td = task_data(p, task, root)
  gammas = tuple(gammas or p.gammas)
  temperatures = tuple(p.temperatures if temperatures is None else temperatures)
  cfg = dict(t=target_m.id, d=draft_m.id, task=task, g=gammas, T=temperatures, eps=eps, f=lenience_fn,
             n=p.n_eval, new=p.max_new_tokens, wall=wall_time, nlat=p.n_latency_prompts, seed=p.seed)
  tgt, drf = target_m.model, draft_m.model

  def run():
    lat = {g: pair_latencies(p, tgt, drf, g, td.max_prompt_len, root) for g in gammas}
    recs = []
    for T in temperatures:
      tgt_out = outputs(p, task, target_m, T, root)
      seq, mask = join_outputs(td.eval_prompts_NxP, td.eval_plen_N, np.asarray(tgt_out["tokens"]),
                               np.asarray(tgt_out["num"]), td.pad_id)
      alpha_tf_N = evaluate.teacher_forced_alpha(tgt, drf, seq, mask, T)
      for g in gammas:
        cfg_sd = SpecConfig(gamma=g, max_new_tokens=p.max_new_tokens, temperature=T, lenience_fn=lenience_fn,
                            eos_id=td.eos_id, pad_id=td.pad_id)
        res = evaluate.run_sd(tgt, drf, td.eval_prompts_NxP, td.eval_plen_N, cfg_sd, jax.random.key(p.seed),
                              batch_size=p.eval_batch, eps=eps)
        s, L = res["summary"], lat[g]
        alpha_tf = float(np.nanmean(alpha_tf_N))
        rec = dict(task=task, target=target_m.id, draft=draft_m.id, temperature=T, decoding=decoding_label(T),
                   gamma=g, eps=eps, lenience_fn=lenience_fn, alpha_hat=s["alpha_hat"], tau=s["tau"],
                   tau_per_example=np.asarray(s["tau_B"]).tolist(), alpha_tf=alpha_tf,
                   alpha_tf_per_example=alpha_tf_N.tolist(),
                   tau_theory=float(theory.expected_block_efficiency(alpha_tf, g)),
                   c=L["c"], t_draft=L["t_draft"], t_target=L["t_target"], t_verify=L["t_verify"],
                   speedup_c=float(theory.speedup_from_tau(s["tau"], g, L["c"])),
                   speedup_pred=float(theory.predicted_speedup(s["tau"], L["t_target"], L["t_draft"],
                                                               L["t_verify"], g)),
                   task_score=td.score(res["tokens_NxT"], res["num_N"]),
                   target_ll=target_loglik(tgt, td, res["tokens_NxT"], res["num_N"]))
        if wall_time:
          k = p.n_latency_prompts
          w = evaluate.wall_time_speedup(tgt, drf, td.eval_prompts_NxP[:k], td.eval_plen_N[:k], cfg_sd,
                                         jax.random.key(p.seed))
          rec.update(speedup_wall=w["speedup"], plain_s_per_token=w["plain_s_per_token"],
                     sd_s_per_token=w["sd_s_per_token"])
        recs.append(rec)
    return recs
  return [SDRecord(**r) for r in _cached_json(_eval_path(p, root, "sd", cfg), run)]
