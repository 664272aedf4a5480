"""DistillSpec knowledge distillation of a draft (student) from a target (teacher), and AdaSPEC selective KD.

``distill(student, teacher, kd, train_cfg, data, run_dir)`` trains a COPY of ``student`` with
``dsrepro.train.train_loop`` (checkpoints, exact resume, metrics.jsonl, DONE, reuse of finished runs) on
``kd_loss``: the divergence ``kd.divergence`` between teacher and student next-token distributions, both at
``kd.temperature``, averaged over the loss-masked tokens of sequences from ``kd.data`` (``dsrepro.kd.batches``).
The recipes themselves (Table 1, the Fig. 4 grid) are in ``dsrepro.kd.recipes``.

AdaSPEC (arXiv 2510.19779; ``adaspec``): stage 1 distils a copy of the draft's initial weights into the reference
model with FKL on the fixed ground-truth data (= SupervisedKD); stage 2 distils the draft from its initial weights
with the selective FKL loss (``dsrepro.kd.adaspec``) on the same fixed data, as the authors' code does (their KD
runs on the fine-tuning dataset, not on generated samples). Epochs: both stages use ``train_cfg.steps`` -- the
SAME number of steps as any DistillSpec run, for a compute-matched comparison (the authors scale the epochs of
stage 2 by 1/k, i.e. about the same number of SELECTED tokens as full KD; pass a larger ``train_cfg`` to reproduce
that). Its optimised loss is sum over kept tokens / all valid tokens; its ``kd_loss`` entry in the logs is the
plain FKL over all valid tokens (comparable with DistillSpec runs), with ``selected_frac`` and ``ref_kd_loss``.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dsrepro import scores
from dsrepro.keys import named_key
from dsrepro.kd import adaspec as adaspec_lib
from dsrepro.kd import batches, divergences
from dsrepro.kd.recipes import KDConfig
from dsrepro.models.transformer import check_same_vocab, next_token
from dsrepro.sd import evaluate
from dsrepro.sd.decode import DecodeConfig
from dsrepro.sd.sampling import decoding_label
from dsrepro.sd.speculative import SpecConfig
from dsrepro.tokenizer import decode_until_eos
from dsrepro.sharding import ShardingRules, shard_model
from dsrepro.train import TrainConfig, make_mesh, train_loop

__all__ = ["kd_loss", "make_kd_loss", "distill", "adaspec", "alignment_key", "parse_alignment_key",
           "alignment_eval_fn"]

# ------------------------------------------------------------------------------------------------ loss


def kd_loss(student, batch: dict, teacher, ref=None, *, kd: KDConfig = KDConfig()):
  """Distillation loss on ``batch = {"tokens": [B, L], "loss_mask": [B, L]}``; returns ``(loss, aux)``.

  Logits at position t are compared on the prediction of token t + 1, weighted by ``loss_mask[:, t + 1]`` (the SFT
  shift). Teacher (and reference) logits are constants. Plain KD: ``divergence_loss`` (mean over valid tokens).
  AdaSPEC (``kd.adaspec_k``): ``adaspec_loss`` with the frozen reference ``ref``.
  aux: "kd_loss" (the divergence averaged over all valid tokens), "tokens"; AdaSPEC adds "selected_frac",
  "threshold" and "ref_kd_loss" (FKL of the reference model).
  """
  tokens_BxL = batch["tokens"]
  shift = lambda m: next_token(m(tokens_BxL)[0], tokens_BxL, batch["loss_mask"])
  t_logits_BxTxV, _, mask_BxT = shift(teacher)
  t_logits_BxTxV = jax.lax.stop_gradient(t_logits_BxTxV)
  s_logits_BxTxV = shift(student)[0]
  n_tokens = jnp.sum(mask_BxT)
  if kd.adaspec_k is None:
    loss = divergences.divergence_loss(kd.divergence, t_logits_BxTxV, s_logits_BxTxV, mask_BxT, kd.temperature,
                                       kd.beta)
    return loss, {"kd_loss": loss, "tokens": n_tokens}
  if ref is None:
    raise ValueError("AdaSPEC (kd.adaspec_k set) needs the reference model: kd_loss(..., ref=model)")
  r_logits_BxTxV = jax.lax.stop_gradient(shift(ref)[0])
  loss, aux = adaspec_lib.adaspec_loss(t_logits_BxTxV, s_logits_BxTxV, r_logits_BxTxV, mask_BxT, kd.adaspec_k,
                                       kd.temperature)
  full = divergences.masked_mean(divergences.fkl(t_logits_BxTxV, s_logits_BxTxV, kd.temperature), mask_BxT)
  ref_full = divergences.masked_mean(divergences.fkl(t_logits_BxTxV, r_logits_BxTxV, kd.temperature), mask_BxT)
  return loss, {**aux, "kd_loss": jax.lax.stop_gradient(full), "ref_kd_loss": ref_full, "tokens": n_tokens}


def make_kd_loss(kd: KDConfig) -> Callable:
  """``kd_loss`` bound to ``kd`` as a train_loop ``loss_fn``. One function object per LOSS (divergence, beta,
  temperature, adaspec_k; the data fields do not enter the loss), so train_loop's compiled-step cache shares one
  compiled step between, e.g., SupervisedKD, SeqKD and GKD runs with the same TrainConfig and row width."""
  return _bound_loss(KDConfig(divergence=kd.divergence, beta=kd.beta, temperature=kd.temperature,
                              adaspec_k=kd.adaspec_k))


@functools.lru_cache(maxsize=32)
def _bound_loss(kd: KDConfig) -> Callable:

  def loss_fn(student, batch, teacher, ref=None):
    return kd_loss(student, batch, teacher, ref, kd=kd)

  return loss_fn


# ------------------------------------------------------------------------------------------------ training


def _special_id(name: str, arg, data: dict):
  """An id given as keyword argument or as data[name]; both must agree when both are given."""
  in_data = data.get(name) if isinstance(data, dict) else None
  if arg is not None and in_data is not None and int(arg) != int(in_data):
    raise ValueError(f"{name}={arg} (argument) differs from data[{name!r}]={in_data}")
  v = arg if arg is not None else in_data
  return None if v is None else int(v)


def _check_data(data: dict, vocab_size: int) -> tuple[int, int]:
  """Validates the training data; returns (L, prompt width = max prompt length)."""
  missing = {"tokens", "loss_mask", "prompt_len"} - set(data)
  if missing:
    raise ValueError(f"distillation data lacks {sorted(missing)} (needs tokens, loss_mask, prompt_len)")
  tokens, mask, plen = (np.asarray(data[k]) for k in ("tokens", "loss_mask", "prompt_len"))
  if tokens.ndim != 2 or tokens.shape[0] < 1 or tokens.shape[1] < 2 or mask.shape != tokens.shape:
    raise ValueError(f"tokens {tokens.shape} and loss_mask {mask.shape} must both be [N >= 1, L >= 2]")
  if not np.issubdtype(tokens.dtype, np.integer) or not np.issubdtype(plen.dtype, np.integer):
    raise ValueError(f"tokens ({tokens.dtype}) and prompt_len ({plen.dtype}) must be integer arrays")
  if plen.shape != tokens.shape[:1] or plen.min() < 1 or plen.max() > tokens.shape[1]:
    raise ValueError(f"prompt_len {plen.shape} must be [N={tokens.shape[0]}] with values in [1, "
                     f"{tokens.shape[1]}], got range [{plen.min()}, {plen.max()}]")
  lo, hi = int(tokens.min()), int(tokens.max())
  if lo < 0 or hi >= vocab_size:
    raise ValueError(f"data tokens range [{lo}, {hi}] outside vocab_size={vocab_size}")
  return tokens.shape[1], int(plen.max())


def distill(student, teacher, kd: KDConfig, train_cfg: TrainConfig, data: dict, run_dir: str | os.PathLike, *,
            ref=None, eval_fn: Callable | None = None, pad_id: int | None = None, eos_id: int | None = None,
            mesh=None, stop_after: int | None = None, desc: str | None = None,
            rules: ShardingRules = ShardingRules(), teacher_dtype: str | None = None):
  """Distil ``teacher`` into a copy of ``student`` (the initialisation; never modified) under ``run_dir``.

  ``data``: {"tokens": int [N, L] prompt + target (right-padded), "loss_mask": float [N, L] (1 on targets),
  "prompt_len": int [N]} as from ``tokenizer.encode_examples`` (tokens_NxL, loss_mask_NxL, prompt_len_N).
  ``pad_id`` / ``eos_id``: keyword arguments or ``data["pad_id"]`` / ``data["eos_id"]``; required when ``kd``
  generates data (generation stops at eos; rows are padded with pad). Rows are ``max(L, P + kd.max_new_tokens)``
  wide when anything is generated (P = the longest prompt), else L. ``ref``: the frozen AdaSPEC reference model,
  required iff ``kd.adaspec_k`` is set. ``eval_fn(model) -> dict`` runs every ``train_cfg.eval_every`` steps and at
  the end (e.g. ``alignment_eval_fn``). A DONE run_dir is loaded, not retrained. ``mesh`` / ``stop_after`` /
  ``desc`` / ``rules`` go to train_loop (``mesh=sharding.make_mesh(fsdp=k)`` shards the student, its optimizer
  state and the teacher over k devices); ``teacher_dtype`` casts the frozen teacher's parameters (e.g.
  "bfloat16"). Returns the distilled Transformer.
  """
  check_same_vocab(student, teacher, ("student", "teacher"))
  if kd.adaspec_k is not None and ref is None:
    raise ValueError(f"KDConfig.adaspec_k={kd.adaspec_k} needs the reference model (ref=...)")
  if kd.adaspec_k is None and ref is not None:
    raise ValueError("ref is only used by AdaSPEC; set KDConfig.adaspec_k or drop ref")
  if ref is not None:
    check_same_vocab(ref, teacher, ("reference", "teacher"))
  model = nnx.clone(student)
  L, prompt_width = _check_data(data, student.cfg.vocab_size)
  pad_id, eos_id = _special_id("pad_id", pad_id, data), _special_id("eos_id", eos_id, data)
  decode_cfg, width = None, L
  if kd.generates:
    if pad_id is None or eos_id is None:
      raise ValueError(f"KDConfig.data={kd.data!r} generates sequences: pass pad_id and eos_id (got pad_id={pad_id},"
                       f" eos_id={eos_id})")
    decode_cfg = DecodeConfig(max_new_tokens=kd.max_new_tokens, temperature=float(kd.temperature), eos_id=eos_id,
                              pad_id=pad_id)
    width = max(L, prompt_width + kd.max_new_tokens)
  for name, m in (("student", student), ("teacher", teacher), ("reference", ref)):
    if m is not None and width > m.cfg.max_len:
      raise ValueError(f"rows of {width} tokens (data width {L}, prompt width {prompt_width}, max_new_tokens "
                       f"{kd.max_new_tokens}) exceed the {name}'s max_len={m.cfg.max_len}")
  # The teacher is placed like the student's parameters in train_loop (by the same sharding rules over the mesh;
  # replicated on one device), optionally cast to ``teacher_dtype`` (e.g. "bfloat16": half its memory).
  mesh = make_mesh() if mesh is None else mesh
  teacher = shard_model(teacher, mesh, rules, dtype=teacher_dtype)
  batch_fn = batches.kd_batch_fn(data, kd.sources, kd.mix, train_cfg.batch_size, train_cfg.seed, width=width,
                                 prompt_width=prompt_width, decode_cfg=decode_cfg, teacher=teacher)
  frozen = {"teacher": teacher} if ref is None else {"teacher": teacher, "ref": ref}
  desc = desc or (f"adaspec[k={kd.adaspec_k}]" if kd.adaspec_k is not None else f"kd[{kd.data}/{kd.divergence}]")
  return train_loop(model, make_kd_loss(kd), batch_fn, train_cfg, run_dir, eval_fn=eval_fn, frozen=frozen,
                    desc=desc, mesh=mesh, stop_after=stop_after, rules=rules)


def adaspec(student, teacher, train_cfg: TrainConfig, data: dict, run_dir: str | os.PathLike, k: float = 0.4, *,
            ref=None, eval_fn: Callable | None = None, temperature: float = 1.0, pad_id: int | None = None,
            eos_id: int | None = None, mesh=None):
  """AdaSPEC: returns ``(draft, ref)``. Stage 1 (run_dir/ref, skipped when ``ref`` is given): ref = SupervisedKD
  (FKL, ground truth) of a copy of ``student``; a SupervisedKD draft trained from the same student with the same
  TrainConfig IS that reference, so callers that have one pass it. Stage 2 (run_dir/draft): the draft, from
  ``student``'s weights, trained with selective FKL (``adaspec_k=k``) on the ground-truth data with the finished
  ref frozen. Both stages run ``train_cfg.steps`` steps (compute-matched with DistillSpec; see the module doc);
  each is resumable and reused when DONE. ``eval_fn`` is used in stage 2 only; pad_id / eos_id / mesh go to both
  stages (the ids are not needed for ground-truth data, but are checked against data["pad_id"] /
  data["eos_id"] as in ``distill``)."""
  run_dir = Path(run_dir)
  ref_kd = KDConfig(divergence="fkl", data="ground_truth", temperature=temperature)
  if ref is None:
    ref = distill(student, teacher, ref_kd, train_cfg, data, run_dir / "ref", pad_id=pad_id, eos_id=eos_id,
                  mesh=mesh, desc="adaspec-ref")
  draft_kd = dataclasses.replace(ref_kd, adaspec_k=k)
  draft = distill(student, teacher, draft_kd, train_cfg, data, run_dir / "draft", ref=ref, eval_fn=eval_fn,
                  pad_id=pad_id, eos_id=eos_id, mesh=mesh, desc=f"adaspec[k={k}]")
  return draft, ref


# ------------------------------------------------------------------------------------------------ evaluation


ALIGNMENT_METRICS = ("alpha", "tau")


def alignment_key(metric: str, gamma: int, temperature: float) -> str:
  """The metrics.jsonl key of an alignment measurement, e.g. ``"alpha/g5/T1"``; read back with
  ``parse_alignment_key`` (this module owns the format)."""
  if metric not in ALIGNMENT_METRICS:
    raise ValueError(f"alignment metric must be one of {ALIGNMENT_METRICS}, got {metric!r}")
  return f"{metric}/g{int(gamma)}/T{float(temperature):g}"


def parse_alignment_key(key: str) -> dict | None:
  """``{"metric", "gamma", "temperature", "decoding"}`` of an ``alignment_key``; None for any other key."""
  parts = key.split("/")
  if len(parts) != 3 or parts[0] not in ALIGNMENT_METRICS or parts[1][:1] != "g" or parts[2][:1] != "T":
    return None
  temperature = float(parts[2][1:])
  return dict(metric=parts[0], gamma=int(parts[1][1:]), temperature=temperature,
              decoding=decoding_label(temperature))


def alignment_eval_fn(teacher, prompts_NxP, prompt_len_N, gammas=(3, 5, 7), temperatures=(0.0, 1.0),
                      max_new_tokens: int = 64, eos_id: int | None = None, pad_id: int = 0, key=None,
                      task_metric: str | None = None, tokenizer=None, refs=None, batch_size: int = 64) -> Callable:
  """``eval_fn(draft) -> dict`` of floats for train_loop: real speculative decoding of ``prompts`` with the
  teacher as target, for every (gamma, T): ``alignment_key("alpha", gamma, T)`` (empirical acceptance, accepted /
  drafted) and ``alignment_key("tau", gamma, T)`` (block efficiency, tokens / target calls). With task_metric, tokenizer
  and refs (one reference string per prompt): "task_score" = scores.task_score of the draft's own greedy outputs
  (decoded up to eos). The random keys are fixed across calls (common random numbers: curves over training steps
  differ only through the draft)."""
  prompts_NxP, prompt_len_N = np.asarray(prompts_NxP, np.int32), np.asarray(prompt_len_N, np.int32)
  if prompts_NxP.ndim != 2 or prompt_len_N.shape != prompts_NxP.shape[:1]:
    raise ValueError(f"prompts {prompts_NxP.shape} must be [N, P] and prompt_len {prompt_len_N.shape} [N]")
  task = (task_metric, tokenizer, refs)
  if any(x is not None for x in task) and any(x is None for x in task):
    raise ValueError("task_score needs all of task_metric, tokenizer and refs")
  if refs is not None and len(refs) != len(prompts_NxP):
    raise ValueError(f"refs has {len(refs)} entries for {len(prompts_NxP)} prompts")
  gammas, temperatures = tuple(gammas), tuple(float(t) for t in temperatures)
  if not gammas or not temperatures:
    raise ValueError(f"need at least one gamma and one temperature, got {gammas} and {temperatures}")
  specs = [SpecConfig(gamma=int(g), max_new_tokens=max_new_tokens, temperature=t, eos_id=eos_id, pad_id=pad_id)
           for g in gammas for t in temperatures]
  key = named_key(0, "alignment") if key is None else key
  greedy = DecodeConfig(max_new_tokens=max_new_tokens, temperature=0.0, eos_id=eos_id, pad_id=pad_id)

  def eval_fn(draft) -> dict:
    check_same_vocab(draft, teacher, ("draft", "teacher"))
    out = {}
    for i, cfg in enumerate(specs):
      res = evaluate.run_sd(teacher, draft, prompts_NxP, prompt_len_N, cfg, jax.random.fold_in(key, i), batch_size)
      out[alignment_key("alpha", cfg.gamma, cfg.temperature)] = float(res["summary"]["alpha_hat"])
      out[alignment_key("tau", cfg.gamma, cfg.temperature)] = float(res["summary"]["tau"])
    if task_metric is not None:
      gen = evaluate.run_plain(draft, prompts_NxP, prompt_len_N, greedy, key, batch_size)
      preds = [decode_until_eos(tokenizer, row[:n]) for row, n in zip(gen["tokens_NxT"], gen["num_N"])]
      out["task_score"] = float(scores.task_score(task_metric, preds, list(refs)))
    return out

  return eval_fn
