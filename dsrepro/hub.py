"""Checkpoints and task data from the Hugging Face hub, for machines that have internet.

* ``fetch_checkpoint("EleutherAI/pythia-1.4b")`` downloads a model with ``huggingface_hub.snapshot_download`` into
  the HF cache (``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``; a cached snapshot is used without
  network) and returns its folder, which ``dsrepro.models.hf.import_hf`` reads. ``resolve_checkpoint`` takes
  a local directory or a hub id.
* ``fetch_task("gsm8k", root)`` downloads a task with ``datasets.load_dataset`` and writes it into
  ``root/<folder>/`` in exactly the layout ``dsrepro.data`` reads (the files of ``data.TASKS[task].files`` with
  the fields its loaders use), with a progress bar per file and a SOURCE.md saying where it came from.
  ``try_fetch_task`` is the non-raising form ``data.find_task_dir`` uses for a missing task.

Offline (``HF_HUB_OFFLINE=1`` / ``HF_DATASETS_OFFLINE=1``, or the hub unreachable), with ``DSREPRO_FETCH=0``, or
without the optional ``datasets`` package (``pip install "dsrepro[data]"``), nothing is downloaded and the error
names what was searched and why nothing was fetched. Downloading, caching, retries and progress are the
libraries' own; this module only chooses what to fetch and converts rows to our files.

The paper's tasks (DistillSpec arXiv 2310.08461, AdaSPEC arXiv 2510.19779) come from these hub datasets; a full
download differs from the staged snapshot described in ``data/manifest.json`` (``data.check_task_files`` says
how), e.g. XSum's 204k training documents instead of 997.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from tqdm.auto import tqdm

try:  # a dependency of transformers; tests replace this name with a fake
  from huggingface_hub import snapshot_download
except ImportError:  # pragma: no cover
  snapshot_download = None

__all__ = ["Fetched", "TaskFile", "HubTask", "HUB_TASKS", "looks_like_repo_id", "hf_cache_dir", "fetch_checkpoint",
           "resolve_checkpoint", "fetch_task", "try_fetch_task"]

CHECKPOINT_PATTERNS = ("config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json",
                       "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                       "merges.txt", "tokenizer.model")
BIN_PATTERNS = ("pytorch_model.bin", "pytorch_model*.bin", "pytorch_model.bin.index.json")


@dataclasses.dataclass(frozen=True)
class Fetched:
  """The folder a fetch produced, or None and the reason nothing was fetched (one line, for error messages)."""
  path: Path | None
  reason: str = ""


# ------------------------------------------------------------------------------------------------ checkpoints


def looks_like_repo_id(s: str) -> bool:
  """``owner/name`` (letters, digits, ``-_.``), as hub ids are; a path that exists on disk is not one."""
  return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", s)) and not os.path.exists(s)


def hf_cache_dir() -> str:
  from huggingface_hub import constants
  return str(constants.HF_HUB_CACHE)


def _has_weights(d: Path) -> bool:
  from dsrepro.models.hf import WEIGHT_FILES
  return (d / "config.json").is_file() and any((d / f).is_file() for f in WEIGHT_FILES)


def _offline_reason() -> str:
  if os.environ.get("DSREPRO_FETCH") == "0":
    return "fetching is disabled (DSREPRO_FETCH=0)"
  for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
      return f"offline mode ({var}={os.environ[var]})"
  return ""


def _one_line(e: BaseException) -> str:
  return f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"


def fetch_checkpoint(repo_id: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
  """The local folder of hub model ``repo_id`` (config, weights, tokenizer): the cached snapshot if there is one,
  else downloaded by ``huggingface_hub.snapshot_download`` (safetensors; pytorch_model.bin only when a repo has no
  safetensors) with its progress bars. Offline or unreachable: FileNotFoundError naming the id, the cache
  searched and the reason."""
  cache = str(cache_dir) if cache_dir is not None else hf_cache_dir()
  if snapshot_download is None:
    raise FileNotFoundError(f"no checkpoint {repo_id!r}: not a local directory, and huggingface_hub is not "
                            "installed to fetch it from the hub")
  kw = dict(revision=revision, cache_dir=cache_dir)
  reasons = []
  for local_only in (True, False):
    if not local_only and (why := _offline_reason()):
      reasons.append(why)
      break
    try:
      path = Path(snapshot_download(repo_id, local_files_only=local_only, allow_patterns=list(CHECKPOINT_PATTERNS),
                                    **kw))
      if not _has_weights(path) and not local_only:  # an older repo with only pytorch_model.bin
        path = Path(snapshot_download(repo_id, allow_patterns=list(CHECKPOINT_PATTERNS + BIN_PATTERNS), **kw))
      if _has_weights(path):
        return path
      reasons.append(f"the {'cached' if local_only else 'downloaded'} snapshot {path} has no config.json and weights")
    except Exception as e:  # noqa: BLE001 -- offline, not found, gated, network: all reported, none retried here
      reasons.append(("cache: " if local_only else "hub: ") + _one_line(e))
  raise FileNotFoundError(
      f"no checkpoint {repo_id!r}{f' (revision {revision})' if revision else ''}: not a local directory "
      f"({Path(repo_id).absolute()}), not in the HF cache ({cache}), and not fetched from the hub ("
      + "; ".join(reasons) + "); pass a local HF model directory, or run once with internet (or set HF_HUB_CACHE "
      "to a cache holding it)")


def resolve_checkpoint(path_or_id: str | os.PathLike, revision: str | None = None) -> Path:
  """A local directory as is; a hub id (``owner/name``, not an existing path) through :func:`fetch_checkpoint`."""
  s = os.fspath(path_or_id)
  if os.path.isdir(s) or not looks_like_repo_id(s):
    return Path(s)
  return fetch_checkpoint(s, revision=revision)


# ------------------------------------------------------------------------------------------------ tasks

Row = dict


@dataclasses.dataclass(frozen=True)
class TaskFile:
  """One file of a task folder: written from hub split ``split`` (rows ``start:stop`` of it, Python slice
  bounds, negative from the end), each row converted by ``convert(i, row)`` (i = the row's index in the split)
  to a JSON object (``.jsonl``) or a line of text (``.txt``)."""
  name: str
  split: str
  convert: Callable[[int, Row], dict | str]
  start: int | None = None
  stop: int | None = None


@dataclasses.dataclass(frozen=True)
class HubTask:
  """Where a task lives on the hub: ``datasets.load_dataset(dataset, config, split=...)`` for each file."""
  dataset: str
  config: str | None
  files: tuple[TaskFile, ...]


def _keep(*fields: str) -> Callable[[int, Row], dict]:
  return lambda i, r: {k: r[k] for k in fields}


def _wmt(prefix: str) -> Callable[[int, Row], dict]:
  return lambda i, r: {"id": f"{prefix}-{i}", "en": r["translation"]["en"], "de": r["translation"]["de"]}


def _line(i: int, r: Row) -> str:
  return " ".join(r["text"].split("\n")).rstrip()  # one sentence / paragraph per line ("" for WikiText blanks)


_MBPP = ("task_id", "text", "code", "test_list", "test_setup_code", "challenge_test_list")
_WMT_TRAIN_ROWS = 20_000   # a prompt pool, like the staged newstest2010-12 proxy (8,495 pairs), not all 4.5M
_LM1B_ROWS = 20_000        # sentences per LM1B file (the staged files hold ~12k each)
_ALPACA_TEST = 500         # Alpaca has one split: its last 500 examples are our test.jsonl

# The datasets of data._HUB, converted to the files and fields of data.TASKS / data's loaders.
HUB_TASKS: dict[str, HubTask] = {
    "gsm8k": HubTask("openai/gsm8k", "main", (
        TaskFile("train.jsonl", "train", _keep("question", "answer")),
        TaskFile("test.jsonl", "test", _keep("question", "answer")))),
    "xsum": HubTask("EdinburghNLP/xsum", None, tuple(
        TaskFile(f"{s}.jsonl", s, _keep("document", "summary", "id")) for s in ("train", "validation", "test"))),
    "cnn_dailymail": HubTask("abisee/cnn_dailymail", "3.0.0", (
        TaskFile("test.jsonl", "test", lambda i, r: {"idx": i, "article": r["article"],
                                                     "highlights": r["highlights"]}),)),
    "wmt14_en_de": HubTask("wmt/wmt14", "de-en", (
        TaskFile("train_proxy.jsonl", "train", _wmt("train"), stop=_WMT_TRAIN_ROWS),
        TaskFile("validation.jsonl", "validation", _wmt("newstest2013")),
        TaskFile("test.jsonl", "test", _wmt("newstest2014")))),
    "lm1b": HubTask("lm1b", None, (
        TaskFile("dev.txt", "train", _line, stop=_LM1B_ROWS),
        TaskFile("test.txt", "test", _line, stop=_LM1B_ROWS))),
    "alpaca": HubTask("tatsu-lab/alpaca", None, (
        TaskFile("train.jsonl", "train", _keep("instruction", "input", "output"), stop=-_ALPACA_TEST),
        TaskFile("test.jsonl", "train", _keep("instruction", "input", "output"), start=-_ALPACA_TEST))),
    "mbpp": HubTask("google-research-datasets/mbpp", "full", tuple(
        TaskFile(f"{s}.jsonl", s, _keep(*_MBPP)) for s in ("train", "validation", "test", "prompt"))),
    "wikitext2": HubTask("Salesforce/wikitext", "wikitext-2-v1", (
        TaskFile("valid.txt", "validation", _line),
        TaskFile("test.txt", "test", _line))),
}


def _load_dataset_fn():
  """``datasets.load_dataset``, imported only now (an optional dependency); ImportError when missing."""
  import datasets  # noqa: PLC0415
  return datasets.load_dataset


def _rows(ds, start: int | None, stop: int | None) -> tuple[Iterable[tuple[int, Row]], int]:
  lo, hi, _ = slice(start, stop).indices(len(ds))
  part = ds.select(range(lo, hi)) if hasattr(ds, "select") else ds[lo:hi]
  return zip(range(lo, hi), part), max(hi - lo, 0)


def _write(path: Path, items: Iterable[dict | str], total: int, desc: str) -> int:
  """Write JSON lines / text lines atomically (a temporary name, renamed when complete); returns the count."""
  tmp, n = path.with_name(f".{path.name}.tmp-{os.getpid()}"), 0
  try:
    with open(tmp, "w", encoding="utf-8") as f:
      for item in tqdm(items, total=total, desc=desc, unit="row", leave=False):
        f.write((item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)) + "\n")
        n += 1
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)
  return n


def fetch_task(task: str, data_root: str | os.PathLike) -> Path:
  """Download ``task`` with ``datasets.load_dataset`` and write ``data_root/<folder>/`` (the files
  ``data.TASKS[task].files`` and SOURCE.md); returns the folder. Raises FileNotFoundError with the reason when
  nothing can be fetched (no ``datasets``, offline, the hub unreachable or the dataset missing)."""
  from dsrepro import data  # noqa: PLC0415  (data calls back into this module for a missing task)
  if task not in HUB_TASKS:
    raise ValueError(f"unknown task {task!r}; tasks on the hub: {sorted(HUB_TASKS)}")
  spec, hub = data.TASKS[task], HUB_TASKS[task]
  if why := _offline_reason():
    raise FileNotFoundError(f"task {task!r} not fetched: {why}")
  try:
    load_dataset = _load_dataset_fn()
  except ImportError:
    raise FileNotFoundError(f"task {task!r} not fetched: the optional `datasets` package is not installed "
                            "(pip install \"dsrepro[data]\" or pip install datasets)") from None
  splits = {}
  for f in hub.files:
    if f.split not in splits:
      try:
        splits[f.split] = load_dataset(hub.dataset, hub.config, split=f.split)
      except Exception as e:  # noqa: BLE001 -- offline / not found / gated / network errors, reported as one
        raise FileNotFoundError(f"task {task!r} not fetched: datasets.load_dataset({hub.dataset!r}, "
                                f"{hub.config!r}, split={f.split!r}) failed ({_one_line(e)})") from e
  folder = Path(data_root).expanduser() / spec.folder
  folder.mkdir(parents=True, exist_ok=True)
  counts = {}
  for f in hub.files:  # each file appears whole or not at all; the folder counts once every file is there
    rows, total = _rows(splits[f.split], f.start, f.stop)
    counts[f.name] = _write(folder / f.name, (f.convert(i, r) for i, r in rows), total, f"{task}/{f.name}")
  missing = [n for n in spec.files if n not in counts]
  if missing:
    raise AssertionError(f"HUB_TASKS[{task!r}] does not write {missing}, which data.TASKS needs")
  lines = [f"# {task}: fetched from the Hugging Face hub by dsrepro.hub.fetch_task", "",
           f"`datasets.load_dataset({hub.dataset!r}, {hub.config!r})`", ""]
  for f in hub.files:
    part = "" if f.start is None and f.stop is None else f"[{f.start or ''}:{f.stop or ''}]"
    lines.append(f"- `{f.name}`: split `{f.split}`{part}, {counts[f.name]} rows")
  (folder / "SOURCE.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
  return folder


def try_fetch_task(task: str, data_root: str | os.PathLike) -> Fetched:
  """:func:`fetch_task`, with the reason instead of the error when nothing could be fetched."""
  try:
    return Fetched(fetch_task(task, data_root))
  except FileNotFoundError as e:
    return Fetched(None, str(e))
