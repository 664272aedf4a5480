"""Tokenizers: train a small byte-level BPE, load HF ones, and encode (prompt, target) pairs into padded arrays.

Choices:
* Our tokenizer is GPT-2 style byte-level BPE (HF ``tokenizers``): ByteLevel pre-tokenizer with
  ``add_prefix_space=False`` and the GPT-2 split regex, ByteLevel decoder, all 256 bytes in the initial alphabet (so
  every string round-trips), special tokens ``<pad>``, ``<bos>``, ``<eos>`` = ids 0, 1, 2, and no post-processor:
  special tokens are never added implicitly, :func:`encode_examples` adds them itself.
* Tokenizers loaded from an HF directory with no pad token use eos as pad, and with no bos token use eos as bos (the
  GPT-2 / Pythia ``<|endoftext|>`` convention). Masks are built from positions, never by comparing ids, so pad == eos
  is harmless.
* Prompt and target are tokenized separately (targets start with a space, so the boundary falls on a word start),
  which keeps the prompt/target split exact.
* Decoding never applies ``clean_up_tokenization_spaces``, which would alter text such as " ." .
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from flax import struct
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast  # AutoTokenizer imports torch: only in from_pretrained

from dsrepro.errors import ConfigError, DamagedArtefact, DataNotFound, one_line

__all__ = ["SPECIAL_TOKENS", "train_tokenizer", "save_tokenizer", "load_tokenizer", "from_pretrained",
           "ensure_specials", "check_same_vocab", "Encoded", "encode_examples", "encode_prompts", "decode_until_eos"]

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048, min_frequency: int = 2) -> PreTrainedTokenizerFast:
  """Byte-level BPE trained on ``texts``; deterministic for the same texts. ``vocab_size`` counts the 256 byte
  tokens and the 3 special tokens, so it must be at least 259."""
  if vocab_size < 256 + len(SPECIAL_TOKENS):
    raise ConfigError(f"vocab_size must be >= {256 + len(SPECIAL_TOKENS)} (bytes + specials), got {vocab_size}")
  if min_frequency < 1:
    raise ConfigError(f"min_frequency must be >= 1, got {min_frequency}")
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                special_tokens=list(SPECIAL_TOKENS),
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(texts, trainer=trainer)
  return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                 clean_up_tokenization_spaces=False)


def save_tokenizer(tok: PreTrainedTokenizerFast, path: str | Path) -> Path:
  """Writes an HF tokenizer directory (tokenizer.json + configs) at ``path``; returns it."""
  path = Path(path)
  path.mkdir(parents=True, exist_ok=True)
  tok.save_pretrained(str(path))
  return path


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
  """Loads one of ours or any local HF tokenizer directory (no hub access). Missing pad / bos fall back to eos."""
  path = Path(path)
  if not path.is_dir():
    raise DataNotFound(f"tokenizer directory not found: {str(path.resolve())!r}; pass the folder written by "
                       "save_tokenizer / save_pretrained")
  try:
    tok = from_pretrained(path)
  except Exception as e:  # noqa: BLE001 -- tokenizers / transformers raise many types for a damaged file
    raise DamagedArtefact(path, f"cannot be loaded as a tokenizer ({type(e).__name__}: {one_line(e)[:200]})",
                          f"restore or re-save the tokenizer files in {path} (a cached tokenizer under runs/: "
                          "delete its run directory and rerun)") from e
  return ensure_specials(tok, path)


def from_pretrained(path: str | Path):
  """The HF tokenizer in a local directory (no hub access), as transformers loads it, with one exception.

  A tokenizer.json whose tokenizer_config.json declares a generic class (PreTrainedTokenizerFast /
  TokenizersBackend: ours, or one written by export_hf for a tokenizers-built vocabulary) is loaded as exactly that:
  transformers v5's AutoTokenizer would otherwise swap in the model type's own class (Qwen2Tokenizer for qwen2),
  which re-derives the vocabulary and breaks such tokenizers. It also keeps ``import torch`` (which AutoTokenizer
  pulls in through transformers' model configs) out of every process that only reads our tokenizers: each notebook
  kernel starts ~3.5 s sooner (measured on a 2-core VM)."""
  path = Path(path)
  declared = None
  if (path / "tokenizer_config.json").is_file():
    declared = json.loads((path / "tokenizer_config.json").read_text()).get("tokenizer_class")
  if declared in ("PreTrainedTokenizerFast", "TokenizersBackend") and (path / "tokenizer.json").is_file():
    return PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)
  from transformers import AutoTokenizer
  return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def ensure_specials(tok, where) -> PreTrainedTokenizerFast:
  """Require an eos token; a missing pad or bos falls back to eos (masks are built from positions, not ids)."""
  if tok.eos_token is None:
    raise ConfigError(f"tokenizer at {str(where)!r} has no eos token")
  if tok.pad_token is None:
    tok.pad_token = tok.eos_token
  if tok.bos_token is None:
    tok.bos_token = tok.eos_token
  return tok


def check_same_vocab(tok_a, tok_b, names: tuple[str, str] = ("target", "draft")) -> None:
  """Raises ValueError unless both tokenizers have the same token -> id map (added tokens included)."""
  va, vb = tok_a.get_vocab(), tok_b.get_vocab()
  na, nb = names
  if len(va) != len(vb):
    raise ConfigError(f"vocabularies differ: {na} has {len(va)} tokens, {nb} has {len(vb)}")
  if va != vb:
    tok = next(t for t, _ in sorted(va.items(), key=lambda kv: kv[1]) if vb.get(t) != va[t])
    raise ConfigError(f"vocabularies differ (both {len(va)} tokens): {na} maps {tok!r} to {va[tok]}, {nb} maps it "
                     f"to {vb.get(tok)}")


@struct.dataclass
class Encoded:
  """A right-padded batch; row n is ``[bos] + prompt + target + [eos]`` then pads (a pytree, so jit-friendly)."""
  tokens_NxL: np.ndarray      # int32, pad id after length_N
  loss_mask_NxL: np.ndarray   # float32, 1 on target tokens (incl. eos), 0 on bos / prompt / pad
  prompt_len_N: np.ndarray    # int32, bos + prompt tokens
  length_N: np.ndarray        # int32, valid tokens


def _special_id(tok, attr: str) -> int:
  i = getattr(tok, f"{attr}_token_id")
  if i is None:
    raise ConfigError(f"tokenizer has no {attr} token (use load_tokenizer, which falls back to eos)")
  return int(i)


def _encode(tok, texts: Sequence[str]) -> list[list[int]]:
  if not texts:
    return []
  return tok(list(texts), add_special_tokens=False)["input_ids"]


def _width(need: int, pad_to: int | None, pad_multiple: int) -> int:
  if pad_to is not None:
    if pad_to < need:
      raise ConfigError(f"pad_to={pad_to} is shorter than the longest row ({need} tokens)")
    return pad_to
  if pad_multiple < 1:
    raise ConfigError(f"pad_multiple must be >= 1, got {pad_multiple}")
  return max(pad_multiple, math.ceil(need / pad_multiple) * pad_multiple)


def _check_len(name: str, n: int) -> None:
  if n < 1:
    raise ConfigError(f"{name} must be >= 1, got {n}")


PROMPT_TAIL = 8  # tokens kept from the END of a cut prompt: its answer marker ("\nSummary:", "\nAnswer:", ...)


def _prompt_rows(tok, prompts: Sequence[str], max_prompt_len: int) -> list[list[int]]:
  """[bos] + the prompt, cut in the MIDDLE when longer than max_prompt_len - 1 tokens: its head (the instruction
  and the start of the document, where a news article puts what its summary says) and its last ``PROMPT_TAIL``
  tokens (the answer marker the model continues from) are kept."""
  bos, keep = _special_id(tok, "bos"), max_prompt_len - 1
  tail = min(PROMPT_TAIL, keep // 2)
  return [[bos] + (ids if len(ids) <= keep else ids[:keep - tail] + (ids[-tail:] if tail else []))
          for ids in _encode(tok, prompts)]


def encode_examples(tok, examples: Sequence, max_prompt_len: int, max_target_len: int, pad_to: int | None = None,
                    pad_multiple: int = 8) -> Encoded:
  """Encodes objects with ``.prompt`` and ``.target`` (e.g. data.Example) into an :class:`Encoded` batch.

  The prompt (bos counted) is cut in the middle to ``max_prompt_len`` tokens (``_prompt_rows``); target + eos is
  cut from the right to ``max_target_len`` (so a cut target has no eos). L = ``pad_to`` if given, else the longest
  row rounded up to a multiple of ``pad_multiple`` (fewer distinct shapes, fewer jit recompiles)."""
  _check_len("max_prompt_len", max_prompt_len)
  _check_len("max_target_len", max_target_len)
  if not examples:
    raise ConfigError("encode_examples got no examples")
  eos = _special_id(tok, "eos")
  prompts = _prompt_rows(tok, [e.prompt for e in examples], max_prompt_len)
  targets = [(ids + [eos])[:max_target_len] for ids in _encode(tok, [e.target for e in examples])]
  n = len(examples)
  L = _width(max(len(p) + len(t) for p, t in zip(prompts, targets)), pad_to, pad_multiple)
  tokens = np.full((n, L), _special_id(tok, "pad"), np.int32)
  mask = np.zeros((n, L), np.float32)
  plen, length = np.zeros(n, np.int32), np.zeros(n, np.int32)
  for i, (p, t) in enumerate(zip(prompts, targets)):
    tokens[i, :len(p) + len(t)] = p + t
    mask[i, len(p):len(p) + len(t)] = 1.0
    plen[i], length[i] = len(p), len(p) + len(t)
  return Encoded(tokens_NxL=tokens, loss_mask_NxL=mask, prompt_len_N=plen, length_N=length)


def encode_prompts(tok, prompts: Sequence[str], max_prompt_len: int, pad_to: int | None = None,
                   pad_multiple: int = 8) -> tuple[np.ndarray, np.ndarray]:
  """``(tokens_NxP, prompt_len_N)``: ``[bos] + prompt`` cut in the middle to ``max_prompt_len`` (head + answer
  marker, ``_prompt_rows``), right-padded, int32."""
  _check_len("max_prompt_len", max_prompt_len)
  if isinstance(prompts, str) or not prompts:
    raise ConfigError(f"encode_prompts needs a non-empty sequence of strings, got {prompts!r}")
  rows = _prompt_rows(tok, prompts, max_prompt_len)
  P = _width(max(map(len, rows)), pad_to, pad_multiple)
  tokens = np.full((len(rows), P), _special_id(tok, "pad"), np.int32)
  for i, r in enumerate(rows):
    tokens[i, :len(r)] = r
  return tokens, np.array([len(r) for r in rows], np.int32)


def decode_until_eos(tok, ids) -> str:
  """Decodes ``ids`` (1-D) up to, not including, the first eos or pad; other special tokens (bos) are skipped.

  Meant for generated ids: with HF tokenizers whose bos falls back to eos, a row starting with bos decodes to ""."""
  ids = [int(i) for i in np.asarray(ids).reshape(-1)]
  stops = {_special_id(tok, "eos"), _special_id(tok, "pad")}
  cut = next((k for k, i in enumerate(ids) if i in stops), len(ids))
  return tok.decode(ids[:cut], skip_special_tokens=True, clean_up_tokenization_spaces=False)
