"""Efficiency measures of speculative decoding (REFERENCE.md sec. 2) and task scores.

* Token acceptance beta_t = sum_v min(p_t(v), q_t(v)) = 1 - TVD(p_t, q_t) (Leviathan et al. 2023, Cor. 3.6);
  p = target, q = draft, both softmaxed at the decoding temperature. At temperature 0 (greedy SD) the draft token
  argmax q is accepted iff it equals argmax p, so beta_t is 1.0 or 0.0.
* Sequence acceptance alpha(x) = mean of beta over the valid tokens of the output (paper Eq. 1).
* Empirical SD statistics (``sd_summary``) come from real speculative runs: alpha_hat = accepted / drafted and
  tau = tokens emitted / target calls (block efficiency).
* Task scores take lists of strings; ROUGE, BLEU and GSM8K accuracy are all on a 0-100 scale.
"""
from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["token_acceptance", "sequence_alpha", "mean_alpha", "sd_summary", "extract_final_number",
           "gsm8k_accuracy", "rouge", "bleu", "TASK_METRICS", "task_score"]


# ------------------------------------------------------------------------------------------------ acceptance


def token_acceptance(p_logits_BxLxV, q_logits_BxLxV, temperature):
  """Per-token acceptance probability of speculative sampling: [B, L].

  temperature > 0: beta = sum_v min(p, q) with p = softmax(p_logits / T), q = softmax(q_logits / T).
  temperature == 0 (greedy SD): beta = 1.0 where argmax p == argmax q else 0.0 -- greedy SD accepts the draft's
  argmax token exactly when the target's argmax agrees.
  """
  if p_logits_BxLxV.shape != q_logits_BxLxV.shape:
    raise ValueError(f"target and draft logits differ in shape: {p_logits_BxLxV.shape} vs "
                     f"{q_logits_BxLxV.shape}")
  if temperature < 0:
    raise ValueError(f"temperature must be >= 0, got {temperature!r}")
  if temperature == 0:
    same_BxL = jnp.argmax(p_logits_BxLxV, axis=-1) == jnp.argmax(q_logits_BxLxV, axis=-1)
    return same_BxL.astype(jnp.float32)
  p = jax.nn.softmax(jnp.asarray(p_logits_BxLxV, jnp.float32) / temperature, axis=-1)
  q = jax.nn.softmax(jnp.asarray(q_logits_BxLxV, jnp.float32) / temperature, axis=-1)
  return jnp.sum(jnp.minimum(p, q), axis=-1)


def sequence_alpha(beta_BxL, mask_BxL):
  """alpha_B: mean of beta over each row's valid tokens (paper Eq. 1); nan for a row with no valid token."""
  beta_BxL = jnp.asarray(beta_BxL, jnp.float32)
  mask_BxL = jnp.asarray(mask_BxL, jnp.float32)
  if beta_BxL.shape != mask_BxL.shape:
    raise ValueError(f"beta and mask differ in shape: {beta_BxL.shape} vs {mask_BxL.shape}")
  n_B = jnp.sum(mask_BxL, axis=-1)
  s_B = jnp.sum(jnp.where(mask_BxL != 0, beta_BxL, 0.0) * mask_BxL, axis=-1)
  return jnp.where(n_B > 0, s_B / jnp.maximum(n_B, 1.0), jnp.nan)


def mean_alpha(beta_BxL, mask_BxL):
  """E_x[alpha(x)]: the mean of ``sequence_alpha`` over rows that have at least one valid token (nan if none)."""
  alpha_B = sequence_alpha(beta_BxL, mask_BxL)
  ok_B = ~jnp.isnan(alpha_B)
  n = jnp.sum(ok_B)
  return jnp.where(n > 0, jnp.sum(jnp.where(ok_B, alpha_B, 0.0)) / jnp.maximum(n, 1), jnp.nan)


def sd_summary(accepted_BxK, gamma, num_tokens_B=None, target_calls_B=None):
  """Summarise speculative-decoding runs (numpy in, numpy / float out).

  Args:
    accepted_BxK: int, accepted draft tokens in each block (0..gamma); -1 marks blocks that were not run.
    gamma: block size (draft tokens proposed per block).
    num_tokens_B: tokens emitted per row. Default: sum over run blocks of (accepted + 1).
    target_calls_B: target forward calls per row. Default: the number of run blocks (one verify call each).

  Every run block counts gamma drafted tokens, also a block cut short by EOS or the length budget, so alpha_hat is
  slightly pessimistic near the end of a sequence. Returns a dict with
    alpha_hat = total accepted / total drafted, alpha_hat_B per row,
    tau = total tokens / total target calls (block efficiency), tau_B per row (nan where a row made no call),
    and the totals n_blocks, n_accepted, n_drafted, n_tokens, n_target_calls.
  """
  acc_BxK = np.asarray(accepted_BxK)
  if acc_BxK.ndim != 2:
    raise ValueError(f"accepted_BxK must be 2-D, got shape {acc_BxK.shape}")
  if int(gamma) != gamma or gamma < 1:
    raise ValueError(f"gamma must be an integer >= 1, got {gamma!r}")
  if acc_BxK.size and (acc_BxK.min() < -1 or acc_BxK.max() > gamma):
    raise ValueError(f"accepted counts must be in [-1, gamma={gamma}], got range "
                     f"[{acc_BxK.min()}, {acc_BxK.max()}]")
  run_BxK = acc_BxK >= 0
  blocks_B = run_BxK.sum(axis=1)
  acc_B = np.where(run_BxK, acc_BxK, 0).sum(axis=1)
  tokens_B = acc_B + blocks_B if num_tokens_B is None else np.asarray(num_tokens_B)
  calls_B = blocks_B if target_calls_B is None else np.asarray(target_calls_B)
  for name, v in (("num_tokens_B", tokens_B), ("target_calls_B", calls_B)):
    if v.shape != blocks_B.shape:
      raise ValueError(f"{name} must have shape {blocks_B.shape}, got {v.shape}")
  drafted_B = gamma * blocks_B
  with np.errstate(divide="ignore", invalid="ignore"):
    alpha_B = np.where(drafted_B > 0, acc_B / np.maximum(drafted_B, 1), np.nan)
    tau_B = np.where(calls_B > 0, tokens_B / np.maximum(calls_B, 1), np.nan)
  n_drafted, n_calls = int(drafted_B.sum()), int(calls_B.sum())
  return {
      "alpha_hat": float(acc_B.sum() / n_drafted) if n_drafted else math.nan,
      "alpha_hat_B": alpha_B,
      "tau": float(tokens_B.sum() / n_calls) if n_calls else math.nan,
      "tau_B": tau_B,
      "n_blocks": int(blocks_B.sum()),
      "n_accepted": int(acc_B.sum()),
      "n_drafted": n_drafted,
      "n_tokens": int(tokens_B.sum()),
      "n_target_calls": n_calls,
  }


# ------------------------------------------------------------------------------------------------ task scores

_NUM = r"-?\$?\s?-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_FINAL = re.compile(r"the final answer is\s*:?\s*(" + _NUM + ")", re.IGNORECASE)
_HASH = re.compile(r"####\s*(" + _NUM + ")")
_ANY = re.compile(_NUM)


def _clean_number(s):
  neg = "-" in s
  s = s.replace(",", "").replace("$", "").replace(" ", "").replace("-", "").rstrip(".")
  return "-" + s if neg else s


def extract_final_number(text):
  """The final numeric answer of a GSM8K-style solution, as a string, or None.

  Preference: the number right after "The final answer is:" (case-insensitive, last occurrence), else the number
  after the last "####", else the last number in the text. Thousands commas, "$" and a trailing "." are stripped:
  "The final answer is: $1,234." -> "1234".
  """
  if text is None:
    return None
  for pat in (_FINAL, _HASH):
    hits = pat.findall(text)
    if hits:
      return _clean_number(hits[-1])
  hits = _ANY.findall(text)
  return _clean_number(hits[-1]) if hits else None


def _same_number(a, b):
  if a is None or b is None:
    return False
  try:
    return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-6)
  except ValueError:
    return False


def _check_lists(preds, refs):
  preds, refs = list(preds), list(refs)
  if len(preds) != len(refs):
    raise ValueError(f"preds and refs differ in length: {len(preds)} vs {len(refs)}")
  if not preds:
    raise ValueError("preds and refs are empty")
  return preds, refs


def gsm8k_accuracy(preds, refs):
  """Percent (0-100) of predictions whose final number equals the reference's (numeric compare, tol 1e-6).

  Both sides go through ``extract_final_number``, so refs may be bare numbers or full "... #### 72" solutions.
  """
  preds, refs = _check_lists(preds, refs)
  hits = [_same_number(extract_final_number(p), extract_final_number(r)) for p, r in zip(preds, refs)]
  return 100.0 * float(np.mean(hits))


def rouge(preds, refs):
  """Mean ROUGE-1/2/L F1 (x 100) with the rouge-score package, Porter stemming on."""
  from rouge_score import rouge_scorer
  preds, refs = _check_lists(preds, refs)
  keys = ("rouge1", "rouge2", "rougeL")
  scorer = rouge_scorer.RougeScorer(list(keys), use_stemmer=True)
  scores = [scorer.score(r, p) for p, r in zip(preds, refs)]
  return {k: 100.0 * float(np.mean([s[k].fmeasure for s in scores])) for k in keys}


def bleu(preds, refs):
  """sacrebleu corpus BLEU (default 13a tokenisation, one reference per prediction), 0-100."""
  import sacrebleu
  preds, refs = _check_lists(preds, refs)
  return float(sacrebleu.corpus_bleu(preds, [refs]).score)


TASK_METRICS = ("accuracy", "rouge1", "rouge2", "rougeL", "bleu", "none")


def task_score(metric_name, preds, refs):
  """Dispatch over ``TASK_METRICS``; "none" (tasks without a quality metric) returns nan."""
  if metric_name == "accuracy":
    return gsm8k_accuracy(preds, refs)
  if metric_name in ("rouge1", "rouge2", "rougeL"):
    return rouge(preds, refs)[metric_name]
  if metric_name == "bleu":
    return bleu(preds, refs)
  if metric_name == "none":
    return math.nan
  raise ValueError(f"unknown task metric {metric_name!r}; known: {', '.join(TASK_METRICS)}")
