"""Task scores of generated text (lists of strings in, a 0-100 number out): GSM8K accuracy of the final number,
ROUGE (rouge-score, Porter stemming) and corpus BLEU (sacrebleu). DistillSpec (arXiv 2310.08461, Sec. 5.1) scores
XSum and CNN/DM by ROUGE-2, WMT En-De by BLEU and GSM8K by the accuracy of the final answer.
"""
from __future__ import annotations

import math
import re

import numpy as np

__all__ = ["extract_final_number", "gsm8k_accuracy", "rouge", "bleu", "TASK_METRICS", "task_score", "per_example"]

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


def per_example(metric_name, preds, refs) -> np.ndarray:
  """The task score of each prediction on the 0-100 scale, for intervals over prompts: GSM8K accuracy (0 or 100)
  and ROUGE F1 per pair (their means are ``task_score``); BLEU is a corpus statistic and "none" has no score, so
  both give nan per example."""
  preds, refs = _check_lists(preds, refs) if metric_name != "none" else (list(preds), list(refs))
  if metric_name == "accuracy":
    return np.array([100.0 * _same_number(extract_final_number(p), extract_final_number(r))
                     for p, r in zip(preds, refs)])
  if metric_name in ("rouge1", "rouge2", "rougeL"):
    from rouge_score import rouge_scorer
    scorer = rouge_scorer.RougeScorer([metric_name], use_stemmer=True)
    return np.array([100.0 * scorer.score(r, p)[metric_name].fmeasure for p, r in zip(preds, refs)])
  if metric_name in ("bleu", "none"):
    return np.full(len(preds), np.nan)
  raise ValueError(f"unknown task metric {metric_name!r}; known: {', '.join(TASK_METRICS)}")
