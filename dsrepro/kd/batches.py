"""Training batches for distillation: a fixed slice of the training set per step, each row's sequence from its source.

``kd_batch_fn(...)(step, model, key)`` (the ``batch_fn`` of ``dsrepro.train.train_loop``):

1. Rows: items ``step*B .. step*B + B - 1`` of the concatenation of per-epoch permutations of the N training
   examples, epoch e permuted by ``fold_in(named_key(seed, "data"), e)`` -- the scheme of ``train.sft_batch_fn``, so
   a ground-truth KD run sees exactly the batches its SFT run saw.
2. Sources: the batch is cut into consecutive row ranges, one per source (``split_rows``): a mixture "a+b" gives
   the FIRST ``floor(B (1 - mix) + 0.5)`` rows to source a and the rest to source b (a deterministic split, not a
   per-row coin flip, so the per-source generation batches have static shapes).
3. Each row's sequence:
   - "ground_truth": the encoded prompt + target, loss mask on the target tokens (as encoded);
   - "teacher" / "student": ``[prompt + y]`` with y ~ model(. | prompt) sampled by ``dsrepro.decode.generate``
     (jitted, KV-cached; temperature, eos and max_new_tokens from the DecodeConfig), from the frozen teacher or
     from the CURRENT student that train_loop passes in (on-policy: regenerated every step); loss mask on the
     generated tokens, EOS included.
   Every row is right-padded with pad_id to one fixed ``width`` (>= prompt width + max_new_tokens when anything
   is generated), so jit shapes never change from step to step.
4. Keys: generation for source s uses ``fold_in(step_key, crc32(s))`` of the step key from train_loop, so batches
   depend only on (seed, step, model at that step): resumption is exact.

The loss mask follows ``tokenizer.encode_examples``: it marks the tokens that are predicted (logits at position t
are scored against token t + 1 with ``mask[:, t + 1]``).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from dsrepro.sd.decode import DecodeConfig, generate, join_outputs
from dsrepro.keys import named_key
from dsrepro.train import epoch_indices

__all__ = ["SOURCES", "epoch_indices", "split_rows", "clean_prompts", "pad_width",
           "kd_batch_fn"]

SOURCES = ("ground_truth", "teacher", "student")


def split_rows(batch_size: int, sources: tuple[str, ...], mix: float) -> tuple[tuple[str, int, int], ...]:
  """``((source, start, stop), ...)`` row ranges; empty ranges are dropped. One source takes all rows; two sources
  split at ``floor(B (1 - mix) + 0.5)`` (round half up), the first source first."""
  if not 0.0 <= mix <= 1.0:
    raise ValueError(f"mix must be in [0, 1], got {mix!r}")
  if len(sources) == 1:
    return ((sources[0], 0, batch_size),)
  if len(sources) != 2:
    raise ValueError(f"need one or two data sources, got {sources!r}")
  cut = int(math.floor(batch_size * (1.0 - mix) + 0.5))
  ranges = ((sources[0], 0, cut), (sources[1], cut, batch_size))
  return tuple(r for r in ranges if r[2] > r[1])


def clean_prompts(tokens_BxL: np.ndarray, prompt_len_B: np.ndarray, width: int, pad_id: int) -> np.ndarray:
  """The first ``width`` columns with everything at or after each row's prompt length set to pad_id."""
  cols = np.arange(width)[None, :]
  return np.where(cols < prompt_len_B[:, None], tokens_BxL[:, :width], pad_id).astype(np.int32)


def pad_width(x_BxL: np.ndarray, width: int, value) -> np.ndarray:
  """Right-pad axis 1 to ``width`` with ``value``."""
  x_BxL = np.asarray(x_BxL)
  if x_BxL.shape[1] > width:
    raise ValueError(f"rows of width {x_BxL.shape[1]} do not fit the batch width {width}")
  return np.pad(x_BxL, ((0, 0), (0, width - x_BxL.shape[1])), constant_values=value)


def kd_batch_fn(data: dict, sources: tuple[str, ...], mix: float, batch_size: int, seed: int, *, width: int,
                prompt_width: int, decode_cfg: DecodeConfig | None, teacher=None) -> Callable:
  """The distillation batch_fn (see the module doc). ``data``: tokens [N, L] int, loss_mask [N, L] float,
  prompt_len [N] int (validated by the caller). ``decode_cfg`` (with pad/eos ids) is needed iff a source
  generates; ``teacher`` iff "teacher" is a source. Returns ``{"tokens": int32 [B, width], "loss_mask": float32
  [B, width]}``."""
  for s in sources:
    if s not in SOURCES:
      raise ValueError(f"unknown data source {s!r}; known: {', '.join(SOURCES)}")
  if "teacher" in sources and teacher is None:
    raise ValueError("data source 'teacher' needs the teacher model")
  generates = any(s != "ground_truth" for s in sources)
  if generates and decode_cfg is None:
    raise ValueError(f"data sources {sources} generate sequences and need a DecodeConfig")
  if generates and prompt_width + decode_cfg.max_new_tokens > width:
    raise ValueError(f"prompt width {prompt_width} + max_new_tokens {decode_cfg.max_new_tokens} exceeds the row "
                     f"width {width}")
  tokens_NxL, mask_NxL = np.asarray(data["tokens"]), np.asarray(data["loss_mask"])
  plen_N = np.asarray(data["prompt_len"])
  pad_id = decode_cfg.pad_id if decode_cfg is not None else 0
  indices = epoch_indices(len(tokens_NxL), batch_size, seed)
  ranges = split_rows(batch_size, sources, mix)

  def batch_fn(step, model, key):
    idx_B = indices(step)
    tokens_BxW = np.full((batch_size, width), pad_id, np.int32)
    mask_BxW = np.zeros((batch_size, width), np.float32)
    for source, a, b in ranges:
      rows = idx_B[a:b]
      if source == "ground_truth":
        tokens_BxW[a:b] = pad_width(tokens_NxL[rows], width, pad_id)
        mask_BxW[a:b] = pad_width(mask_NxL[rows], width, 0.0)
        continue
      prompt_BxP = clean_prompts(tokens_NxL[rows], plen_N[rows], prompt_width, pad_id)
      sampler = teacher if source == "teacher" else model
      out = generate(sampler, prompt_BxP, plen_N[rows], decode_cfg, named_key(key, source))
      tokens_BxW[a:b], mask_BxW[a:b] = join_outputs(prompt_BxP, plen_N[rows], out.tokens_BxN, out.num_B, pad_id,
                                                    width)
    return {"tokens": tokens_BxW, "loss_mask": mask_BxW}

  return batch_fn
