"""Task data: the DistillSpec / AdaSPEC tasks as (prompt, target) pairs, read from local files.

The files are laid out as in ``shared/data/<folder>/`` (see its README and SOURCE.md files); nothing is downloaded.
Every loader is deterministic: no shuffling, splits are carved by file position.

Prompt formats (the target always starts with a space, so ``prompt + target`` reads naturally):

======================  ===================================================================  ========================
task                    prompt                                                               target
======================  ===================================================================  ========================
gsm8k (AdaSPEC style)   ``Question: {question}\\nAnswer the question step by step and end    `` {solution}``: ``<<..>>``
                        with 'The final answer is: N'.\\nAnswer:``                           removed, ``#### N`` ->
                                                                                             ``The final answer is: N``
                                                                                             (commas dropped from N)
xsum, cnn_dailymail     ``Summarize the following article.\\n{document}\\nSummary:``          `` {summary}`` (CNN
                                                                                             highlights joined by " ")
wmt14_en_de             ``Translate English to German.\\nEnglish: {en}\\nGerman:``            `` {de}``
alpaca                  the Stanford Alpaca template, with or without the ``### Input:``     `` {output}``
                        block, ending in ``### Response:``
mbpp                    ``{text}\\nYour code should pass these tests:\\n{tests}\\nCode:``      `` {code}`` (``\\r\\n``,
                        (tests = ``test_list`` joined by newlines)                           ``\\r`` -> ``\\n``)
lm1b, wikitext2         the first ``max(3, n // 3)`` of the line's n words                   `` {remaining words}``
======================  ===================================================================  ========================

Splits ("train" is the distillation / training prompt pool):

* gsm8k: train = train.jsonl minus its last 500; validation = last 500 of train.jsonl; test = test.jsonl (1,319).
* xsum: train / validation / test .jsonl (997 / 100 / 1,000).
* cnn_dailymail: only test.jsonl exists (CNN/DM test split!). ``idx >= 500`` -> train (500, a prompt pool of
  test-split text), ``idx < 100`` -> validation (100), ``100 <= idx < 500`` -> test (400). Disjoint by ``idx``.
* wmt14_en_de: train = train_proxy.jsonl (newstest2010-12, 8,495), validation = newstest2013 (3,000),
  test = newstest2014 (3,003).
* lm1b: train = dev.txt; test.txt's kept sentences: first half (floor) -> validation, the rest -> test.
* wikitext2: train = valid.txt; test.txt's kept paragraphs: first half (floor) -> validation, the rest -> test.
* alpaca: train = train.jsonl lines 0..4299, validation = its last 200 lines, test = test.jsonl; examples with an empty
  ``output`` (one in train, one in test) are dropped, so train 4,299 / validation 200 / test 499.
* mbpp: train / validation / test .jsonl (374 / 90 / 500); ``prompt.jsonl`` (few-shot items) and the two
  ``test_setup_code`` snippets are not used.

LM lines (lm1b, wikitext2) are whitespace-split and re-joined with single spaces; a line is kept only if it has at least
6 words (so the continuation has at least 3) and is not a WikiText heading (`` = Title = ``).

Lengths are in tokens (paper: XSum 1024/64, CNN/DM 2048/128, WMT 80/80, GSM8K 256/320, LM1B 128/128). Our choices:
alpaca 256/256 and mbpp 256/256 (cover ~99% of prompts / outputs), wikitext2 128/128 (as LM1B; long paragraphs are
truncated by the encoder). Metrics: gsm8k "accuracy" (final number), xsum/cnn_dailymail "rouge2", wmt14_en_de "bleu",
alpaca "rougeL"; "none" for mbpp (we run no code) and the LM tasks (score them by target perplexity from log-probs).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from dsrepro.errors import ConfigError, DataError, DataNotFound, one_line

__all__ = ["TaskSpec", "Example", "TASKS", "SPLITS", "METRICS", "load_task", "task_texts", "data_search_paths",
           "find_task_dir", "manifest", "check_task_files"]

SPLITS = ("train", "validation", "test")
METRICS = ("accuracy", "rouge2", "rougeL", "bleu", "none")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """A task: its folder under a data root, the files it needs, max lengths in tokens and its task metric."""
  name: str
  folder: str
  files: tuple[str, ...]
  max_input_len: int
  max_output_len: int
  metric: str


@dataclasses.dataclass(frozen=True)
class Example:
  prompt: str
  target: str
  id: str


TASKS: dict[str, TaskSpec] = {s.name: s for s in [
    TaskSpec("gsm8k", "gsm8k", ("train.jsonl", "test.jsonl"), 256, 320, "accuracy"),
    TaskSpec("xsum", "xsum", ("train.jsonl", "validation.jsonl", "test.jsonl"), 1024, 64, "rouge2"),
    TaskSpec("cnn_dailymail", "cnn_dailymail", ("test.jsonl",), 2048, 128, "rouge2"),
    TaskSpec("wmt14_en_de", "wmt14_en_de", ("train_proxy.jsonl", "validation.jsonl", "test.jsonl"), 80, 80, "bleu"),
    TaskSpec("lm1b", "lm1b", ("dev.txt", "test.txt"), 128, 128, "none"),
    TaskSpec("alpaca", "alpaca", ("train.jsonl", "test.jsonl"), 256, 256, "rougeL"),
    TaskSpec("mbpp", "mbpp", ("train.jsonl", "validation.jsonl", "test.jsonl"), 256, 256, "none"),
    TaskSpec("wikitext2", "wikitext2", ("valid.txt", "test.txt"), 128, 128, "none"),
]}

_GSM8K_PROMPT = ("Question: {q}\nAnswer the question step by step and end with 'The final answer is: N'.\n"
                 "Answer:")
_SUMMARY_PROMPT = "Summarize the following article.\n{doc}\nSummary:"
_WMT_PROMPT = "Translate English to German.\nEnglish: {en}\nGerman:"
_ALPACA_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                 "context. Write a response that appropriately completes the request.\n\n"
                 "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:")
_ALPACA_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                    "the request.\n\n### Instruction:\n{instruction}\n\n### Response:")
_MBPP_PROMPT = "{text}\nYour code should pass these tests:\n{tests}\nCode:"

_GSM8K_VAL, _CNN_TRAIN_FROM, _CNN_VAL_BELOW, _ALPACA_VAL = 500, 500, 100, 200
_LM_MIN_WORDS, _LM_MIN_PROMPT = 6, 3


def _spec(name: str) -> TaskSpec:
  if name not in TASKS:
    raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
  return TASKS[name]


def _repo_root() -> Path:
  return Path(__file__).resolve().parent.parent


def data_search_paths() -> list[Path]:
  """Data roots, in search order: ./data, ../shared/data (relative to the CWD), then <repo>/data and
  <repo>/../shared/data (repo = the parent of the dsrepro package); absolute, de-duplicated. If $DSREPRO_DATA is
  set it is the ONLY root: an explicitly set path is used or rejected, never replaced by another."""
  if os.environ.get("DSREPRO_DATA"):
    return [Path(os.environ["DSREPRO_DATA"]).expanduser().resolve()]
  cwd, repo = Path.cwd(), _repo_root()
  cands = [cwd / "data", cwd / ".." / "shared" / "data", repo / "data", repo / ".." / "shared" / "data"]
  out = []
  for p in cands:
    p = p.resolve()
    if p not in out:
      out.append(p)
  return out


def _has_files(d: Path, files: Sequence[str]) -> bool:
  return all((d / f).is_file() for f in files)


def find_task_dir(task: str, search_paths: Sequence[str | Path] | None = None) -> Path:
  """First ``<path>/<folder>`` (over ``search_paths``, default :func:`data_search_paths`) holding all the task's files.

  With the default search, a task found nowhere is fetched from the hub with `datasets` into :func:`fetch_root`
  when that is possible (``dsrepro.hub.try_fetch_task``: the extra ``pip install dsrepro[data]``, a network,
  and neither ``HF_DATASETS_OFFLINE`` nor ``DSREPRO_FETCH=0``). Otherwise raises :class:`DataNotFound` (a
  FileNotFoundError) naming the task, every path searched, the files expected and why nothing was fetched."""
  spec = _spec(task)
  env = search_paths is None and os.environ.get("DSREPRO_DATA")
  paths = data_search_paths() if search_paths is None else [Path(p).expanduser().resolve() for p in search_paths]
  for p in paths:
    if _has_files(p / spec.folder, spec.files):
      return p / spec.folder
  missing = lambda d: ("missing " + ", ".join(f for f in spec.files if not (d / f).is_file()) if d.is_dir()
                       else "no such directory")
  searched = "; ".join(f"{p / spec.folder} ({missing(p / spec.folder)})" for p in paths) or "(no paths)"
  if env:
    fix = (f"put the files in {paths[0] / spec.folder}/, point DSREPRO_DATA at the data root holding "
           f"'{spec.folder}/', or unset DSREPRO_DATA to search ./data, ../shared/data and <repo>/data")
    msg = (f"no data for task {task!r} under DSREPRO_DATA={env!r}: expected files {list(spec.files)} in "
           f"{searched}; {fix}")
  else:
    msg = (f"no data for task {task!r}: expected files {list(spec.files)} in a folder '{spec.folder}/' under a "
           f"data root; searched in order: {searched}; set $DSREPRO_DATA to the data root holding "
           f"'{spec.folder}/' or pass data_dir")
  if search_paths is None:  # the default search: fetch it with `datasets` when that is possible (dsrepro.hub)
    from dsrepro import hub
    fetched = hub.try_fetch_task(task, fetch_root())
    if fetched.path is not None:
      return fetched.path
    msg += f"; {fetched.reason}"
  raise DataNotFound(msg)


def fetch_root() -> Path:
  """Where a task fetched from the hub is written: ``$DSREPRO_DATA`` if set, else ``<repo>/data`` in a source
  checkout (git ignores the task folders there), else ``./data``."""
  if os.environ.get("DSREPRO_DATA"):
    return Path(os.environ["DSREPRO_DATA"]).expanduser().resolve()
  repo = _repo_root()
  return repo / "data" if (repo / "pyproject.toml").is_file() else Path.cwd() / "data"


def _task_dir(spec: TaskSpec, data_dir: str | Path | None) -> Path:
  if data_dir is None:
    return find_task_dir(spec.name)
  d = Path(data_dir).expanduser().resolve()
  if _has_files(d, spec.files) and not _has_files(d / spec.folder, spec.files):
    return d  # data_dir is the task folder itself
  return find_task_dir(spec.name, [d])


def manifest() -> dict:
  """The staged task files' sha256 / size / line counts (``<repo>/data/manifest.json``; {} when not shipped)."""
  path = _repo_root() / "data" / "manifest.json"
  return json.loads(path.read_text())["tasks"] if path.is_file() else {}


def check_task_files(task: str, task_dir: str | Path | None = None) -> list[str]:
  """How the task's files differ from the staged snapshot in ``data/manifest.json``: [] when they match (or the
  manifest does not list the task), else one line per file naming it and what differs. Differences are not
  errors (a full download differs from our snapshot on purpose); they explain numbers that differ from ours."""
  import hashlib
  spec = _spec(task)
  d = find_task_dir(task) if task_dir is None else Path(task_dir)
  out = []
  for name, want in manifest().get(spec.folder, {}).items():
    f = d / name
    if name not in spec.files and not f.exists():
      continue
    if not f.is_file():
      out.append(f"{f}: missing")
      continue
    b = f.read_bytes()
    lines = b.count(b"\n")
    if hashlib.sha256(b).hexdigest() != want["sha256"]:
      out.append(f"{f}: {len(b)} bytes / {lines} lines, the staged file has {want['bytes']} bytes / "
                 f"{want['lines']} lines (sha256 differs)")
  return out


class _Row(dict):
  """One JSONL record; ``where`` is "<file>, line <n>" for error messages."""
  where: str


_TYPE_NAMES = {str: "a string", int: "an integer", list: "a list of strings"}
_FIX = "fix or remove that line (the expected fields are listed in dsrepro/data.py)"


def _read_text(path: Path) -> str:
  try:
    return path.read_text(encoding="utf-8")
  except UnicodeDecodeError as e:
    line = path.read_bytes()[:e.start].count(b"\n") + 1
    raise DataError(f"{path}, line {line}: not UTF-8 text ({e.reason} at byte {e.start}); re-export the file as "
                    "UTF-8") from None


def _jsonl(path: Path, **fields) -> list[_Row]:
  """The records of a JSONL file, each checked to be an object holding ``fields`` (name -> type: str, int, list of
  str, or None for any JSON value); a bad line raises DataError naming the file, line number and field."""
  rows = []
  for n, line in enumerate(_read_text(path).split("\n"), 1):
    if not line.strip():
      continue
    where = f"{path}, line {n}"
    try:
      r = json.loads(line)
    except json.JSONDecodeError as e:
      raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno}); {_FIX}") from None
    if not isinstance(r, dict):
      raise DataError(f"{where}: expected a JSON object with fields {sorted(fields)}, got {type(r).__name__}; "
                      f"{_FIX}")
    for name, typ in fields.items():
      if name not in r:
        raise DataError(f"{where}: missing field {name!r} (expected fields {sorted(fields)}, found "
                        f"{sorted(r)}); {_FIX}")
      v = r[name]
      bad = typ is not None and (not isinstance(v, typ) or isinstance(v, bool) or
                                 (typ is list and not all(isinstance(x, str) for x in v)))
      if bad:
        raise DataError(f"{where}: field {name!r} must be {_TYPE_NAMES[typ]}, got {one_line(repr(v))[:80]}; "
                        f"{_FIX}")
    row = _Row(r)
    row.where = where
    rows.append(row)
  return rows


def _lines(path: Path) -> list[str]:
  return _read_text(path).split("\n")


def _gsm8k_target(answer: str, where: str = "GSM8K") -> str:
  lines = re.sub(r"<<.*?>>", "", answer).strip().split("\n")
  m = re.fullmatch(r"####\s*(.+?)\s*", lines[-1])
  if not m:
    raise DataError(f"{where}: field 'answer' does not end with '#### N' (got ...{one_line(repr(answer[-60:]))}); "
                    f"{_FIX}")
  return " " + "\n".join(lines[:-1] + [f"The final answer is: {m.group(1).replace(',', '')}"])


def _gsm8k(d: Path, split: str) -> list[Example]:
  stem = "test" if split == "test" else "train"
  rows = [Example(_GSM8K_PROMPT.format(q=r["question"]), _gsm8k_target(r["answer"], r.where), f"{stem}-{i}")
          for i, r in enumerate(_jsonl(d / f"{stem}.jsonl", question=str, answer=str))]
  if split == "test":
    return rows
  return rows[-_GSM8K_VAL:] if split == "validation" else rows[:-_GSM8K_VAL]


def _xsum(d: Path, split: str) -> list[Example]:
  return [Example(_SUMMARY_PROMPT.format(doc=r["document"]), " " + r["summary"], str(r["id"]))
          for r in _jsonl(d / f"{split}.jsonl", document=str, summary=str, id=None)]


def _cnn_dailymail(d: Path, split: str) -> list[Example]:
  keep = {"train": lambda i: i >= _CNN_TRAIN_FROM, "validation": lambda i: i < _CNN_VAL_BELOW,
          "test": lambda i: _CNN_VAL_BELOW <= i < _CNN_TRAIN_FROM}[split]
  return [Example(_SUMMARY_PROMPT.format(doc=r["article"]), " " + " ".join(r["highlights"].split("\n")),
                  str(r["idx"])) for r in _jsonl(d / "test.jsonl", idx=int, article=str, highlights=str)
          if keep(r["idx"])]


def _wmt14_en_de(d: Path, split: str) -> list[Example]:
  stem = "train_proxy" if split == "train" else split
  return [Example(_WMT_PROMPT.format(en=r["en"]), " " + r["de"], str(r["id"]))
          for r in _jsonl(d / f"{stem}.jsonl", id=None, en=str, de=str)]


def _alpaca_prompt(r: dict) -> str:
  if r["input"].strip():
    return _ALPACA_INPUT.format(instruction=r["instruction"], input=r["input"])
  return _ALPACA_NO_INPUT.format(instruction=r["instruction"])


def _alpaca(d: Path, split: str) -> list[Example]:
  stem = "test" if split == "test" else "train"
  rows = list(enumerate(_jsonl(d / f"{stem}.jsonl", instruction=str, input=str, output=str)))
  if split != "test":
    rows = rows[-_ALPACA_VAL:] if split == "validation" else rows[:-_ALPACA_VAL]
  return [Example(_alpaca_prompt(r), " " + r["output"], f"{stem}-{i}") for i, r in rows if r["output"].strip()]


def _mbpp(d: Path, split: str) -> list[Example]:
  out = []
  for r in _jsonl(d / f"{split}.jsonl", text=str, code=str, test_list=list, task_id=None):
    prompt = _MBPP_PROMPT.format(text=r["text"], tests="\n".join(r["test_list"]))
    out.append(Example(_newlines(prompt), " " + _newlines(r["code"]), str(r["task_id"])))
  return out


def _newlines(s: str) -> str:
  return s.replace("\r\n", "\n").replace("\r", "\n")


def _lm_examples(path: Path) -> list[Example]:
  out = []
  for i, line in enumerate(_lines(path)):
    s = line.strip()
    if s.startswith("=") and s.endswith("="):  # WikiText heading
      continue
    words = s.split()
    if len(words) < _LM_MIN_WORDS:
      continue
    k = max(_LM_MIN_PROMPT, len(words) // 3)
    out.append(Example(" ".join(words[:k]), " " + " ".join(words[k:]), f"{path.stem}-{i}"))
  return out


def _lm(train_file: str):
  def load(d: Path, split: str) -> list[Example]:
    if split == "train":
      return _lm_examples(d / train_file)
    rows = _lm_examples(d / "test.txt")
    half = len(rows) // 2
    return rows[:half] if split == "validation" else rows[half:]
  return load


_LOADERS = {"gsm8k": _gsm8k, "xsum": _xsum, "cnn_dailymail": _cnn_dailymail, "wmt14_en_de": _wmt14_en_de,
            "lm1b": _lm("dev.txt"), "alpaca": _alpaca, "mbpp": _mbpp, "wikitext2": _lm("valid.txt")}


def load_task(name: str, split: str, limit: int | None = None,
              data_dir: str | Path | None = None) -> list[Example]:
  """The examples of one split of a task, in file order (splits as in the module docstring); the first ``limit``.

  ``data_dir``: a data root holding ``<folder>/`` (or the task folder itself); default: search
  :func:`data_search_paths`."""
  spec = _spec(name)
  if split not in SPLITS:
    raise ConfigError(f"unknown split {split!r} for task {name!r}; splits: {', '.join(SPLITS)}")
  if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
    raise ConfigError(f"limit must be None or an int >= 0, got {limit!r}")
  rows = _LOADERS[name](_task_dir(spec, data_dir), split)
  return rows if limit is None else rows[:limit]


def task_texts(name: str, split: str = "train", limit: int | None = None,
               data_dir: str | Path | None = None) -> Iterator[str]:
  """``prompt + target`` of each example: text to train a tokenizer on."""
  for ex in load_task(name, split, limit, data_dir):
    yield ex.prompt + ex.target
