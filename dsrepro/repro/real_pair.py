"""Distil a REAL pretrained draft against a REAL pretrained target (local HF checkpoints) and measure SD before / after.

``distill_real_pair(target_path, draft_path, task)`` imports both checkpoints with :func:`dsrepro.models.hf.import_hf`
(GPT-2, GPT-NeoX / Pythia, Llama, Qwen2: any pair of these, also mixed architectures), distils the draft towards the
target with DistillSpec (``recipes.ALGORITHMS[algorithm]``, default on-policy GKD) or AdaSPEC (``distill.adaspec``),
then runs real speculative decoding with the raw and the distilled draft on held-out prompts of the task and returns
one row per (draft, decoding, gamma): alpha_hat, tau, c and the speedup tau / (c gamma + 1).

Choices:
  * Same vocabulary is required: the tokenizers must have the same token -> id map (``tokenizer.check_same_vocab``)
    and the two models the same ``vocab_size`` (rows of the embedding / LM head). Both are checked before anything
    is trained; a mismatch is a ValueError naming both sizes. Families usually share both (GPT-2 sizes: 50257;
    Pythia 14M..2.8B: 50304; Llama-2 7B / 13B and TinyLlama-1.1B: 32000), but padded heads can differ inside a
    family (e.g. Pythia-6.9B, Qwen2.5-7B vs the small Qwen2.5 sizes): such pairs are refused, not silently cut.
  * The TARGET's tokenizer encodes the data (it equals the draft's anyway). Tokenizers without a pad (or bos) token
    use eos for it (as ``tokenizer.load_tokenizer``); one without eos is an error (generation must stop somewhere).
  * Data: the task's "train" split (first ``n_train``) is the KD prompt pool with its ground-truth targets (used by
    the ground-truth algorithms and AdaSPEC), its "validation" split (first ``n_eval``) gives the evaluation prompts.
    Prompts are left-truncated to ``max_prompt_len`` tokens (bos included); targets are cut to ``max_target_len``
    (default ``max_new_tokens``), and on-policy data is generated ``max_new_tokens`` long, so KD rows are at most
    ``max_prompt_len + max(max_target_len, max_new_tokens)`` tokens.
  * The draft is trained in float32 (Adafactor, cosine schedule with 10% warmup, gradient clipping 1.0: the
    profiles' KD recipe); ``target_dtype="bfloat16"`` halves the target's memory (divergences and sampling are
    computed in float32 either way).
  * Caching: the run lives in ``run_dir/realpair-<method>-<hash>`` where the hash covers the checkpoints' identity
    (resolved paths, the config.json text and the weight files' names and sizes) and every setting that changes
    training. A finished (DONE) run is loaded, an interrupted one resumes from its last checkpoint. The evaluation
    table is cached as JSON in the same folder, keyed by the evaluation settings.
  * Evaluation: common random numbers (the same key for the raw and the distilled draft, per (gamma, T)). c is
    measured once per gamma with ``evaluate.latencies`` (batch 1, KV cache, ``max_prompt_len`` tokens of context)
    and shared by both drafts: distillation changes the weights, not the architecture, so not the latency.

Memory and time (estimates from the arithmetic below, NOT measured: this module was written without a GPU; the
numbers assume Pythia-31M as draft and Pythia-1.4B as target, batch_size 8, prompts 128, new tokens 64):
  * Target weights: 1.4B params = 5.6 GB in float32 (2.8 GB in bfloat16). Import holds the model plus one tensor.
  * Training: the draft (31M params, 125 MB) with gradients and Adafactor's factored moments stays under 0.5 GB.
    Each step holds teacher and student logits of 8 rows x 192 tokens x 50304 classes (310 MB each in float32)
    plus their softmaxes and gradients: ~2-3 GB. Peak about 9 GB in float32 (6 GB with a bfloat16 target): a 16 GB
    GPU (Colab T4) suffices. On-policy GKD samples 64 tokens from the draft per step (cheap: the draft is small);
    one step is ~4 TFLOP of target forward (8 x 192 tokens), i.e. tens of ms on an A100 / H100, so 200 steps take
    about a minute on such a GPU, plus XLA compilation (roughly a minute per program for a 24-layer target).
  * Evaluation: the target's KV cache is 24 layers x 2 x 2048 x ~200 positions x 4 bytes = 80 MB per row in
    float32, so ``eval_batch`` = 32 rows add ~2.5 GB. There are len(gammas) x len(temperatures) SD programs to
    compile (the raw and the distilled draft share them); the SD runs themselves take seconds on a GPU. Expect
    the whole call to take some 5-15 minutes on one GPU, most of it compilation.
  * CPU: fine for tiny checkpoints (the tests) and usable for targets up to ~100-200M parameters; a 1.4B target
    costs minutes per KD step on a laptop-class CPU.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from dsrepro import data as data_lib
from dsrepro import runs
from dsrepro import tokenizer as tok_lib
from dsrepro.kd import distill as distill_lib
from dsrepro.kd import recipes
from dsrepro.models.hf import checkpoint_fingerprint, import_hf
from dsrepro.models.transformer import check_same_vocab
from dsrepro.sd import evaluate
from dsrepro.sd.sampling import decoding_label
from dsrepro.sd.speculative import SpecConfig
from dsrepro.sd.theory import speedup_from_tau
from dsrepro.train import TrainConfig, with_steps

__all__ = ["METHODS", "COLUMNS", "check_paths", "load_pair", "pair_data", "distill_real_pair", "save_results",
           "plot_tau"]

METHODS = ("distillspec", "adaspec")
COLUMNS = ["draft", "decoding", "temperature", "gamma", "alpha_hat", "tau", "c", "speedup", "t_draft", "t_target",
           "task", "method", "algorithm", "n_eval"]


def check_paths(target_path, draft_path) -> tuple[Path, Path]:
  """Both paths non-empty and existing directories (the notebook's first check); returns them resolved."""
  out = []
  for name, p in (("target_path", target_path), ("draft_path", draft_path)):
    if not p or not str(p).strip():
      raise ValueError(f"{name} is empty: set target_path and draft_path to local HF checkpoint directories "
                       "(config.json, weights and tokenizer files), e.g. the folders written by "
                       "save_pretrained / huggingface-cli download")
    path = Path(p).expanduser().resolve()
    if not path.is_dir():
      raise FileNotFoundError(f"{name}={str(p)!r}: no such directory ({path})")
    out.append(path)
  return out[0], out[1]


def _with_specials(tok, path):
  if tok is None:
    raise ValueError(f"checkpoint {str(path)!r} has no tokenizer files: save the tokenizer next to the model "
                     "(tokenizer.save_pretrained(path))")
  return tok_lib.ensure_specials(tok, path)


def load_pair(target_path, draft_path, target_dtype: str = "float32"):
  """(target, draft, tokenizer): both checkpoints imported, vocabularies checked (module doc); the draft in
  float32, the target in ``target_dtype``."""
  target_path, draft_path = check_paths(target_path, draft_path)
  target, t_tok = import_hf(target_path, dtype=target_dtype)
  draft, d_tok = import_hf(draft_path, dtype="float32")
  t_tok, d_tok = _with_specials(t_tok, target_path), _with_specials(d_tok, draft_path)
  tok_lib.check_same_vocab(t_tok, d_tok, ("target tokenizer", "draft tokenizer"))
  check_same_vocab(target, draft, (f"target model ({target_path})", f"draft model ({draft_path})"))
  vt = target.cfg.vocab_size
  if len(t_tok) > vt:
    raise ValueError(f"the tokenizer has {len(t_tok)} tokens but the models only vocab_size={vt} rows")
  return target, draft, t_tok


def pair_data(tok, task: str, n_train: int, n_eval: int, max_prompt_len: int, max_target_len: int,
              data_dir=None) -> dict:
  """{"train": distill data dict (tokens, loss_mask, prompt_len), "prompts": [N, P], "plen": [N]}."""
  if task not in data_lib.TASKS:
    raise ValueError(f"unknown task {task!r}; known tasks: {sorted(data_lib.TASKS)}")
  spec = data_lib.TASKS[task]
  mp, mt = min(max_prompt_len, spec.max_input_len), min(max_target_len, spec.max_output_len)
  train = data_lib.load_task(task, "train", limit=n_train, data_dir=data_dir)
  val = data_lib.load_task(task, "validation", limit=n_eval, data_dir=data_dir)
  if not train or not val:
    raise ValueError(f"task {task!r}: got {len(train)} train and {len(val)} validation examples")
  enc = tok_lib.encode_examples(tok, train, mp, mt)
  prompts, plen = tok_lib.encode_prompts(tok, [e.prompt for e in val], mp, pad_to=mp)
  return {"train": {"tokens": np.asarray(enc.tokens_NxL), "loss_mask": np.asarray(enc.loss_mask_NxL),
                    "prompt_len": np.asarray(enc.prompt_len_N)},
          "prompts": np.asarray(prompts), "plen": np.asarray(plen)}


def _as_tuple(x, cast) -> tuple:
  """A sequence, a single number or a comma-separated string ("3,5,7") as a tuple of ``cast``."""
  if isinstance(x, str):
    x = [s for s in x.replace(" ", "").split(",") if s]
  elif not isinstance(x, Sequence):
    x = [x]
  out = tuple(cast(v) for v in x)
  if not out:
    raise ValueError("need at least one gamma and one temperature")
  return out


def distill_real_pair(target_path, draft_path, task: str = "gsm8k", method: str = "distillspec",
                      algorithm: str = recipes.DISTILLSPEC, steps: int = 200, batch_size: int = 8,
                      learning_rate: float = 0.02,
                      n_train: int = 2000, n_eval: int = 64, max_prompt_len: int = 128, max_new_tokens: int = 64,
                      gammas=(3, 5, 7), temperatures=(0.0, 1.0), run_dir=None, seed: int = 0, *,
                      max_target_len: int | None = None, adaspec_k: float = 0.4, target_dtype: str = "float32",
                      eval_batch: int = 32, data_dir=None) -> pd.DataFrame:
  """Distil the draft checkpoint against the target checkpoint on ``task``; SD table before / after (module doc).

  ``method``: "distillspec" (``recipes.ALGORITHMS[algorithm]``: supervised_kd, seqkd, imitkd, f_distill, gkd) or
  "adaspec" (``distill.adaspec`` with ``adaspec_k``; ``algorithm`` is ignored). ``learning_rate`` is Adafactor's
  relative step size (0.01-0.05 for fine-tuning). ``gammas`` / ``temperatures``: sequences or comma-separated
  strings. ``run_dir``: the cache root (default ``artefacts.default_root() / "real_pair"``). Returns one row per
  (draft in raw / distilled, decoding, gamma) with columns ``COLUMNS``."""
  if method not in METHODS:
    raise ValueError(f"method={method!r}; expected one of {METHODS}")
  if method == "distillspec" and algorithm not in recipes.ALGORITHMS:
    raise ValueError(f"algorithm={algorithm!r}; expected one of {sorted(recipes.ALGORITHMS)}")
  gammas, temperatures = _as_tuple(gammas, int), _as_tuple(temperatures, float)
  max_target_len = max_new_tokens if max_target_len is None else max_target_len
  if run_dir is None or not str(run_dir):
    from dsrepro.repro.artefacts import default_root
    run_dir = default_root() / "real_pair"
  t_path, d_path = check_paths(target_path, draft_path)
  target, draft, tok = load_pair(t_path, d_path, target_dtype)
  d = pair_data(tok, task, n_train, n_eval, max_prompt_len, max_target_len, data_dir)
  pad_id, eos_id = int(tok.pad_token_id), int(tok.eos_token_id)

  tcfg = with_steps(TrainConfig(batch_size=batch_size, learning_rate=learning_rate, optimizer="adafactor",
                                schedule="cosine", clip_norm=1.0, seed=seed), steps)
  if method == "distillspec":
    kd = dataclasses.replace(recipes.ALGORITHMS[algorithm], max_new_tokens=max_new_tokens)
    recipe = dict(kd=kd)
  else:
    recipe = dict(k=adaspec_k)
  cfg = dict(target=checkpoint_fingerprint(t_path), draft=checkpoint_fingerprint(d_path), target_dtype=target_dtype,
             task=task, method=method, train=tcfg, n_train=n_train, max_prompt_len=max_prompt_len,
             max_target_len=max_target_len, **recipe)
  rdir = runs.run_dir_for(run_dir, f"realpair-{method}", cfg)
  print(f"[dsrepro] real pair {method} on {task} -> {rdir}", flush=True)
  if method == "distillspec":
    distilled = distill_lib.distill(draft, target, kd, tcfg, d["train"], rdir, pad_id=pad_id, eos_id=eos_id)
  else:
    distilled, _ = distill_lib.adaspec(draft, target, tcfg, d["train"], rdir, k=adaspec_k, pad_id=pad_id,
                                       eos_id=eos_id)

  ecfg = dict(gammas=gammas, temperatures=temperatures, n_eval=len(d["plen"]), max_new_tokens=max_new_tokens,
              seed=seed, backend=jax.default_backend())
  eval_path = rdir / f"eval-{runs.config_hash(ecfg)}.json"
  if eval_path.is_file():
    rows = runs.read_json(eval_path)
  else:
    rows = _evaluate(target, {"raw": draft, "distilled": distilled}, d, gammas, temperatures, max_new_tokens,
                     max_prompt_len, pad_id, eos_id, seed, eval_batch)
    runs.write_json(eval_path, rows)
  algo = algorithm if method == "distillspec" else f"adaspec(k={adaspec_k:g})"
  df = pd.DataFrame(rows)
  df["task"], df["method"], df["algorithm"], df["n_eval"] = task, method, algo, len(d["plen"])
  return df[COLUMNS]


def _evaluate(target, drafts: dict, d: dict, gammas, temperatures, max_new_tokens, context, pad_id, eos_id, seed,
              eval_batch) -> list[dict]:
  key = jax.random.key(seed)
  lat = {g: evaluate.latencies(target, drafts["raw"], g, context=context) for g in gammas}
  rows = []
  for name, draft in drafts.items():
    for i, T in enumerate(temperatures):
      for j, g in enumerate(gammas):
        cfg = SpecConfig(gamma=g, max_new_tokens=max_new_tokens, temperature=T, eos_id=eos_id, pad_id=pad_id)
        s = evaluate.run_sd(target, draft, d["prompts"], d["plen"], cfg, jax.random.fold_in(key, i * 1000 + j),
                            batch_size=eval_batch)["summary"]
        L = lat[g]
        rows.append(dict(draft=name, decoding=decoding_label(T), temperature=T, gamma=g,
                         alpha_hat=s["alpha_hat"], tau=s["tau"], c=L["c"],
                         speedup=speedup_from_tau(s["tau"], g, L["c"]),
                         t_draft=L["t_draft"], t_target=L["t_target"]))
  return rows


def plot_tau(df: pd.DataFrame, path) -> Path:
  """Bar plot of tau, raw vs distilled draft, one group per (decoding, gamma); saved as PNG at ``path``."""
  import matplotlib.pyplot as plt
  groups = list(dict.fromkeys(zip(df["decoding"], df["gamma"])))
  x, w = np.arange(len(groups)), 0.38
  fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(groups) + 1.5), 3.4))
  for k, (name, color) in enumerate((("raw", "#9e9e9e"), ("distilled", "#1f77b4"))):
    sub = df[df["draft"] == name].set_index(["decoding", "gamma"])["tau"]
    ax.bar(x + (k - 0.5) * w, [sub.get(gr, np.nan) for gr in groups], w, label=f"{name} draft", color=color)
  ax.set_xticks(x, [f"{dec}\nγ={g}" for dec, g in groups])
  ax.set_ylabel("block efficiency τ (tokens / target call)")
  title = f"{df['task'].iloc[0]}: {df['algorithm'].iloc[0]}" if len(df) else "no data"
  ax.set_title(title)
  ax.legend(frameon=False)
  ax.grid(axis="y", alpha=0.3)
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=150, bbox_inches="tight")
  plt.close(fig)
  return path


def save_results(df: pd.DataFrame, out_dir, name: str = "real_pair") -> tuple[Path, Path]:
  """Writes ``<out_dir>/<name>.csv`` and the tau bar plot ``<out_dir>/<name>.png``; returns both paths."""
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  csv = out / f"{name}.csv"
  df.to_csv(csv, index=False)
  return csv, plot_tau(df, out / f"{name}.png")
