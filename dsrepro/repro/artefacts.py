"""Cached experiment artefacts shared by every figure: the tokenizer, pretrained bases, SFT models, distilled
drafts, evaluations.

The chain: ONE tokenizer and one base model per garden size, pretrained on general text (``dsrepro.pretrain``);
task SFT starts from the base; every distilled draft starts from the SFT draft. Seeds: pretraining and SFT use
``p.seed``; a training recipe is repeated over ``kd_seeds(p)`` (training seed and data order), so recipe claims
get intervals over seeds x prompts.

Everything trained lives under ``<root>/<profile>/<kind>-<hash of its config>/`` (root: ``$DSREPRO_RUNS`` or
``<repo>/runs``), so a rerun, or another figure asking for the same artefact, loads it instead of training again.
A config includes the identity (run directory name) of every model it starts from, so changing an upstream
setting retrains everything downstream and nothing else. A model comes back as a :class:`Trained` record.

Their evaluations (outputs, latencies, SD records, wall time) are cached by ``repro.evaluations``.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from dsrepro import data as data_lib
from dsrepro import pretrain, runs, scores
from dsrepro import tokenizer as tok_lib
from dsrepro.kd import distill
from dsrepro.kd.recipes import KDConfig
from dsrepro.models.hf import checkpoint_fingerprint
from dsrepro.models.transformer import Transformer, garden_config, make_model
from dsrepro.repro.profiles import Profile
from dsrepro.train import eval_loss, sft_batch_fn, sft_loss, train_loop, with_steps


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

def kd_seeds(p: Profile) -> tuple[int, ...]:
  """The training seeds of a repeated KD recipe: ``p.kd_seeds`` runs, seeds ``1000 p.seed + i``."""
  return tuple(1000 * p.seed + i for i in range(p.kd_seeds))


@functools.lru_cache(maxsize=4)
def _corpus(p: Profile):
  return pretrain.corpus(p.pretrain_corpus)


def tokenizer(p: Profile, root=None):
  """The profile's ONE tokenizer; (tokenizer, id). Pretrained here: a byte-level BPE trained on the pretraining
  corpus (cached). From HF checkpoints (``p.hf_models``): the target checkpoint's own tokenizer."""
  if p.hf_models:
    path = checkpoint_dir(p, p.target_size)
    return tok_lib.load_tokenizer(path), f"hf-tokenizer-{runs.config_hash(checkpoint_fingerprint(path))}"
  cfg = dict(corpus=p.pretrain_corpus, vocab_size=p.vocab_size)
  run_dir = runs.run_dir_for(profile_root(p, root), "tokenizer", cfg)
  if not runs.is_done(run_dir):
    texts = _corpus(p)
    tok_lib.save_tokenizer(tok_lib.train_tokenizer([t for _, t in texts], vocab_size=p.vocab_size),
                           run_dir / "tokenizer")
    runs.mark_done(run_dir, {"n_texts": len(texts)})
  return tok_lib.load_tokenizer(run_dir / "tokenizer"), run_dir.name


def checkpoint_dir(p: Profile, size: str) -> Path:
  """The local folder of an HF base checkpoint of the profile (``p.hf_models``: size -> hub id): the folder
  ``$DSREPRO_CHECKPOINTS/<size>`` when that variable is set (used or rejected, never replaced by the hub), else
  the hub id through ``hub.resolve_checkpoint`` (the HF cache, or downloaded when online)."""
  from dsrepro import hub
  from dsrepro.errors import DataNotFound
  ids = dict(p.hf_models)
  if size not in ids:
    raise ValueError(f"profile {p.name!r} has no checkpoint for size {size!r}; its hf_models: {', '.join(ids)}")
  local = os.environ.get("DSREPRO_CHECKPOINTS")
  if local:
    d = Path(local).expanduser() / size
    if not (d / "config.json").is_file():
      raise DataNotFound(f"no checkpoint {size!r} under DSREPRO_CHECKPOINTS={local!r}: expected {d}/config.json "
                         f"and weights; put the checkpoint of {ids[size]} there or unset DSREPRO_CHECKPOINTS to "
                         "use the hub")
    return d
  return hub.resolve_checkpoint(ids[size])


@functools.lru_cache(maxsize=8)
def _import(path: Path, max_len: int) -> Transformer:
  from dsrepro.models.hf import import_hf
  return import_hf(path, max_len=max_len)[0]


def base_model(p: Profile, size: str, root=None) -> "Trained":
  """The pretrained base of a model size: an HF checkpoint when the profile names one (``p.hf_models``), else
  pretrained here (dsrepro.pretrain; its run folder's corpus.json records the corpus: files with sha256, texts,
  characters, token count)."""
  if size in dict(p.hf_models):
    path = checkpoint_dir(p, size)
    return Trained(_import(path, context_len(p)), f"hf-{size}-{runs.config_hash(checkpoint_fingerprint(path))}",
                   path)
  tok, tok_id = tokenizer(p, root)
  mcfg = garden_config(size, len(tok), max_len=context_len(p))
  tcfg = dataclasses.replace(p.pretrain, seed=p.seed)
  run_dir = runs.run_dir_for(profile_root(p, root), f"base-{size}",
                             dict(model=mcfg, train=tcfg, tokenizer=tok_id, corpus=p.pretrain_corpus))

  def train():
    print(f"[dsrepro] pretrain {size} ({p.name}) -> {run_dir}", flush=True)
    texts = _corpus(p)
    ids = tok(list(t for _, t in texts), add_special_tokens=False)["input_ids"]
    rows = pretrain.pack(ids, context_len(p), tok.bos_token_id, tok.eos_token_id)
    runs.write_json(run_dir / "corpus.json", pretrain.corpus_record(texts, n_tokens=int(rows.size)))
    data = {"tokens": rows, "loss_mask": np.ones_like(rows, np.float32)}
    train_loop(make_model(mcfg, seed=tcfg.seed), sft_loss, sft_batch_fn(data, tcfg.batch_size, tcfg.seed), tcfg,
               run_dir, desc=f"pretrain {size}")
  return _trained(run_dir, train)


class TaskData:
  """Encoded splits of one task under one profile (train / validation arrays, evaluation prompts)."""

  def __init__(self, p: Profile, task: str, root=None):
    spec = data_lib.TASKS[task] if task in data_lib.TASKS else data_lib.load_task(task, "train")  # raises if unknown
    self.task, self.metric = task, spec.metric
    self.tokenizer, self.tok_id = tokenizer(p, root)
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

  def score_per_example(self, tokens_NxT, num_N) -> list[float]:
    """The task metric per output (``scores.per_example``: nan for BLEU and tasks without a metric)."""
    return scores.per_example(self.metric, self.decode(tokens_NxT, num_N), self.eval_refs).tolist()

  def kd_data(self) -> dict:
    return dict(self.train, prompt_len=self.train_prompt_len)


@functools.lru_cache(maxsize=16)
def task_data(p: Profile, task: str, root=None) -> TaskData:
  return TaskData(p, task, root)


# ---------------------------------------------------------------- models

@functools.lru_cache(maxsize=64)
def _load(run_dir: Path) -> Transformer:
  return runs.load_model(run_dir)


def clear_caches() -> None:
  """Forget the models, imported checkpoints, task data and corpora this process holds (kept so that one figure
  loads each once); ``notebooks.shared_kernel`` calls it between notebooks, so a shared kernel holds no more
  weights than a fresh one would."""
  for f in (_load, _import, task_data, _corpus):
    f.cache_clear()


def _trained(run_dir: Path, train) -> Trained:
  """The model of ``run_dir``, trained first by ``train()`` unless the run is finished."""
  if not runs.is_done(run_dir):
    train()
  return Trained(_load(run_dir), run_dir.name, run_dir)


def _per_task(cfg, p: Profile, td: "TaskData", **overrides):
  """A task's TrainConfig (``Profile.task_train``: epochs over its training set when the profile counts them)."""
  return dataclasses.replace(p.task_train(cfg, len(td.train["tokens"])), **overrides)


def sft_model(p: Profile, task: str, size: str, root=None, which: str | None = None) -> Trained:
  """The SFT model of a garden size on a task, fine-tuned from its pretrained base. ``which`` picks the train
  config ("target" | "draft" | "garden"; default by size: the profile's target, its draft (or the garden's
  smallest), else a garden-only size)."""
  td = task_data(p, task, root)
  if which is None:
    which = ("target" if size == p.target_size else "draft" if size in (p.draft_size, p.garden[0])
             else "garden")
  tcfg = _per_task({"target": p.sft_target, "draft": p.sft_draft, "garden": p.sft_garden}[which], p, td,
                   seed=p.seed)
  base = base_model(p, size, root)
  run_dir = runs.run_dir_for(profile_root(p, root), f"sft-{task}-{size}",
                             dict(base=base.id, train=tcfg, n_train=p.n_train, prompt=p.max_prompt_len,
                                  target=p.max_target_len))

  def train():
    print(f"[dsrepro] SFT {size} on {task} ({p.name}) -> {run_dir}", flush=True)
    eval_fn = lambda m: {"eval_loss": eval_loss(m, td.val, batch_size=tcfg.batch_size)}
    train_loop(nnx.clone(base.model), sft_loss, sft_batch_fn(td.train, tcfg.batch_size, tcfg.seed), tcfg, run_dir,
               eval_fn=eval_fn, desc=f"sft {task}/{size}")
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
             teacher: Trained | None = None, root=None, steps: int | None = None, track: bool = False,
             seed: int | None = None) -> Trained:
  """A distilled draft: ``kd`` from the SFT student of ``student_size`` (default the draft size) against
  ``teacher`` (default the task's SFT target), trained with ``seed`` (default the first of ``kd_seeds(p)``)."""
  td = task_data(p, task, root)
  kd = dataclasses.replace(kd, max_new_tokens=p.max_target_len)  # generated data as long as the targets (fits
  # the context: context_len >= pad_len = prompt + target + 2)
  student = sft_model(p, task, student_size or p.draft_size, root)
  teacher = teacher or target(p, task, root)
  tcfg = _per_task(p.kd, p, td, seed=kd_seeds(p)[0] if seed is None else seed) if steps is None else \
      dataclasses.replace(with_steps(p.kd, steps), seed=kd_seeds(p)[0] if seed is None else seed)
  if track:  # p.track_points alignment evaluations during the run (Fig. 3a), the last one at the end
    tcfg = dataclasses.replace(tcfg, eval_every=max(1, tcfg.steps // p.track_points))
  run_dir = runs.run_dir_for(profile_root(p, root), f"kd-{task}-{label}",
                             dict(kd=kd, train=tcfg, student=student.id, teacher=teacher.id, track=track))

  def train():
    print(f"[dsrepro] KD {label} (seed {tcfg.seed}) on {task} ({p.name}) -> {run_dir}", flush=True)
    eval_fn = _tracker(p, td, teacher.model) if track else None
    distill.distill(student.model, teacher.model, kd, tcfg, td.kd_data(), run_dir, eval_fn=eval_fn,
                    pad_id=td.pad_id, eos_id=td.eos_id)
  return _trained(run_dir, train)


def recipe_model(p: Profile, task: str, name: str, seed: int, root=None) -> Trained:
  """The draft distilled with Table 1's recipe ``name`` (``kd.recipes.ALGORITHMS``) and KD seed ``seed``; on the
  profile's first task the run of the first KD seed also tracks alignment during training (Fig. 3a)."""
  from dsrepro.kd.recipes import ALGORITHMS
  track = seed == kd_seeds(p)[0] and task == p.tasks[0]
  return kd_model(p, task, name, ALGORITHMS[name], root=root, track=track, seed=seed)


def adaspec_model(p: Profile, task: str, root=None, seed: int | None = None) -> Trained:
  """AdaSPEC draft for the task's SFT pair, trained with ``seed``. Its reference model is the SupervisedKD draft
  of the same seed (FKL on the ground truth from the same SFT draft with the same TrainConfig: exactly AdaSPEC's
  stage 1), shared with Fig. 2 instead of trained twice."""
  from dsrepro.kd.recipes import SUPERVISED
  td = task_data(p, task, root)
  student, teacher = sft_draft(p, task, root), target(p, task, root)
  seed = kd_seeds(p)[0] if seed is None else seed
  ref = recipe_model(p, task, SUPERVISED, seed, root)
  tcfg = _per_task(p.kd, p, td, seed=seed)
  run_dir = runs.run_dir_for(profile_root(p, root), f"adaspec-{task}",
                             dict(k=p.adaspec_k, train=tcfg, student=student.id, teacher=teacher.id, ref=ref.id))

  def train():
    print(f"[dsrepro] AdaSPEC (seed {tcfg.seed}) on {task} ({p.name}) -> {run_dir}", flush=True)
    distill.adaspec(student.model, teacher.model, tcfg, td.kd_data(), run_dir, k=p.adaspec_k, ref=ref.model,
                    pad_id=td.pad_id, eos_id=td.eos_id)
  draft = _trained(run_dir / "draft", train)
  return dataclasses.replace(draft, id=f"{run_dir.name}/draft")


def _tracker(p: Profile, td: TaskData, teacher):
  """Alignment tracking during KD (Fig. 3a): alpha / tau at the middle gamma for every temperature on held-out
  prompts."""
  return distill.alignment_eval_fn(teacher, td.eval_prompts_NxP, td.eval_plen_N, gammas=(p.mid_gamma,),
                                   temperatures=p.temperatures, max_new_tokens=p.max_new_tokens, eos_id=td.eos_id,
                                   pad_id=td.pad_id, key=jax.random.key(p.seed), task_metric=td.metric,
                                   tokenizer=td.tokenizer, refs=td.eval_refs)


def tracker_at_init(p: Profile, task: str, root=None) -> dict:
  """The Fig. 3a tracker on the SFT draft every KD run starts from, i.e. step 0 of every tracked curve (same
  prompts and random keys as during KD). Evaluated once and cached."""
  td = task_data(p, task, root)
  draft, teacher = sft_draft(p, task, root), target(p, task, root)
  cfg = dict(draft=draft.id, target=teacher.id, task=task, gammas=(p.mid_gamma,), T=p.temperatures, n=p.n_eval,
             new=p.max_new_tokens, seed=p.seed)
  from dsrepro.repro.evaluations import cached_json, eval_path
  return cached_json(eval_path(p, root, "tracker0", cfg), lambda: _tracker(p, td, teacher.model)(draft.model))
