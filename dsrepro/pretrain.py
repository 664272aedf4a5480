"""Pretraining data: a general-text corpus, sequence packing, and the record of what was read.

DistillSpec (arXiv 2310.08461, Sec. 5) starts every draft and target from pretrained checkpoints; without hub
access we pretrain our own bases on the general text we have: LM1B and WikiText-2 (their training splits) and the
TRAINING splits of the tasks (prompt + target), never validation or test text (``data.load_task(..., "train")``
carves the splits). Every size of the garden is pretrained on the same packed stream with ONE tokenizer trained
on the same corpus, and task fine-tuning starts from these bases.

Packing: each document becomes ``[bos] + tokens + [eos]``; the documents, in corpus order, are concatenated into
one stream, which is cut into rows of ``seq_len`` tokens (the tail shorter than a row is dropped). Every token of a
row is a training target (documents are not masked from each other, as in standard LM pretraining).
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from dsrepro import data as data_lib

__all__ = ["corpus", "corpus_record", "pack"]


def corpus(sources: Sequence[str]) -> list[tuple[str, str]]:
  """``(source, text)`` of every TRAINING-split example (prompt + target) of the ``sources`` (names of
  ``data.TASKS``: "lm1b" and "wikitext2" are the general text), in that order."""
  out = []
  for name in dict.fromkeys(sources):
    out += [(name, ex.prompt + ex.target) for ex in data_lib.load_task(name, "train")]
  if not out:
    raise ValueError(f"empty pretraining corpus: sources={tuple(sources)}")
  return out


def corpus_record(texts: list[tuple[str, str]], n_tokens: int | None = None) -> dict:
  """What the corpus is made of, to store with the run: per source the files read (with sha256), the number of
  texts and characters; the sha256 of the whole text stream; and the token count when known."""
  sources = {}
  for name, text in texts:
    s = sources.setdefault(name, {"texts": 0, "chars": 0})
    s["texts"] += 1
    s["chars"] += len(text)
  for name, s in sources.items():
    d = data_lib.find_task_dir(name)
    s["files"] = {f: hashlib.sha256((d / f).read_bytes()).hexdigest() for f in data_lib.TASKS[name].files}
    s["dir"] = str(d)
  digest = hashlib.sha256()
  for _, text in texts:
    digest.update(text.encode("utf-8") + b"\0")
  return {"sources": sources, "sha256": digest.hexdigest(), "n_tokens": n_tokens}


def pack(token_lists: Sequence[Sequence[int]], seq_len: int, bos_id: int, eos_id: int) -> np.ndarray:
  """Packed rows ``[N, seq_len]`` int32 from documents ``[bos] + ids + [eos]`` concatenated in order."""
  if seq_len < 2:
    raise ValueError(f"seq_len must be >= 2, got {seq_len}")
  stream = np.fromiter((t for ids in token_lists for t in (bos_id, *ids, eos_id)), dtype=np.int32)
  n = len(stream) // seq_len
  if n == 0:
    raise ValueError(f"a corpus of {len(stream)} tokens does not fill one row of {seq_len}")
  return stream[:n * seq_len].reshape(n, seq_len)
