"""Run directories: content-addressed caching, atomic files, checkpoints and finished models.

A run lives in ``root/f"{kind}-{sha}"`` where ``sha`` is the first 12 hex digits of the sha256 of the canonical
JSON (sorted keys, no spaces) of its config, so the same config always maps to the same directory and a finished
run is reused instead of retrained. Layout of a run directory::

  config.json        the config that named the run (written by run_dir_for)
  model_config.json  the ModelConfig as a dict (load_model rebuilds the Transformer from it)
  train_config.json  the TrainConfig, for the record
  metrics.jsonl      one JSON object per logged step
  ckpt/<step>/       Orbax checkpoints {params, opt_state, step}; the last 2 are kept
  params/            final parameters (Orbax)
  DONE               JSON with the final metrics and the sha256 of every file above (ckpt/ excepted); written
                     last, so its presence means everything else is complete

Every small file is written to a temporary name and renamed (atomic on POSIX); Orbax commits checkpoint folders
the same way. So a run killed at any point never looks finished. A finished run is verified against the
checksums in DONE once per process (:func:`verify_run`, called by :func:`is_done` and the loaders): a damaged or
missing file raises :class:`~dsrepro.errors.DamagedArtefact` naming the run directory to delete, never loads.
DONE files without checksums (written before they were recorded) are accepted as they are.

Paths that cannot be used (``DSREPRO_RUNS`` / ``--run-dir`` not a directory, not writable) raise
:class:`~dsrepro.errors.PathError` naming them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from dsrepro.errors import ConfigError, DamagedArtefact, PathError, one_line
from dsrepro.models.transformer import ModelConfig, Transformer, make_model

__all__ = ["canonical_json", "config_hash", "run_dir_for", "is_done", "atomic_path", "write_json", "read_json",
           "mark_done", "verify_run", "ensure_dir", "read_metrics", "save_params", "load_params", "load_model",
           "CheckpointStore"]

DONE, MODEL_CONFIG, PARAMS, CKPT, METRICS = "DONE", "model_config.json", "params", "ckpt", "metrics.jsonl"
CHECKSUMS = "artefact_sha256"  # the key of DONE holding {relative path: sha256} of the run's files


def _jsonable(x: Any) -> Any:
  """Dataclasses -> dicts, tuples -> lists, Paths -> str, numpy scalars -> Python; everything else as is."""
  if dataclasses.is_dataclass(x) and not isinstance(x, type):
    return _jsonable(dataclasses.asdict(x))
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, Path):
    return str(x)
  if isinstance(x, np.generic):
    return x.item()
  return x


def canonical_json(config: Any) -> str:
  """Sorted keys, no whitespace; a config that cannot be serialised raises ValueError."""
  try:
    return json.dumps(_jsonable(config), sort_keys=True, separators=(",", ":"), allow_nan=False)
  except (TypeError, ValueError) as e:
    raise ConfigError(f"config is not JSON-serialisable: {one_line(repr(config))[:200]} ({e})") from e


def config_hash(config: Any, n: int = 12) -> str:
  return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:n]


def _hint(path: Path, what: str) -> str:
  env = os.environ.get("DSREPRO_RUNS")
  if env and Path(os.path.abspath(path)).is_relative_to(os.path.abspath(env)):
    return f"point DSREPRO_RUNS={env!r} at a writable directory (or fix its permissions)"
  if "root" in what or "run" in what:
    return "pass --run-dir (or set DSREPRO_RUNS to) a writable directory, or fix the permissions"
  return "use a writable location, or fix the permissions"


def ensure_dir(path: str | os.PathLike, what: str = "run directory") -> Path:
  """``path`` created if needed (with its parents) and writable; else PathError naming it and the fix."""
  path = Path(path)
  try:
    path.mkdir(parents=True, exist_ok=True)
  except FileExistsError:
    raise PathError(f"cannot use {path} as the {what}: it (or a parent) exists and is not a directory; "
                    f"{_hint(path, what)}") from None
  except OSError as e:
    raise PathError(f"cannot create the {what} {path}: {e.strerror or e}; {_hint(path, what)}") from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise PathError(f"cannot write to the {what} {path}: permission denied; {_hint(path, what)}")
  return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
  """Yield a temporary path in ``path``'s folder (same suffix) to write to; it is renamed over ``path`` only when
  the block succeeds, and removed otherwise, so a reader never sees a half-written file."""
  path = Path(path)
  ensure_dir(path.parent, "folder")
  tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> None:
  """Atomic (see atomic_path): a reader sees the old file or the whole new one."""
  with atomic_path(path) as tmp:
    tmp.write_text(json.dumps(_jsonable(obj), indent=indent, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
  """The JSON value in ``path``; a file that does not parse (truncated, corrupted) raises DamagedArtefact."""
  path = Path(path)
  try:
    return json.loads(path.read_text(encoding="utf-8"))
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise DamagedArtefact(path, f"not valid JSON ({one_line(e)})") from None


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
  """The records of run_dir/metrics.jsonl (one dict per logged step; [] if none yet). A cut-off last line (the
  process was killed while writing it) is dropped: training recomputes that record on resume."""
  path = Path(run_dir) / METRICS
  if not path.exists():
    return []
  text = path.read_text(encoding="utf-8", errors="replace")
  lines = text.split("\n")
  out = []
  for n, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      rec = json.loads(line)
    except json.JSONDecodeError:
      if n == len(lines):  # no newline after it: half-written by a killed process
        break
      rec = None
    if not isinstance(rec, dict) or "step" not in rec:
      raise DamagedArtefact(path, f"line {n} is not a JSON record with a 'step'",
                            f"delete {Path(run_dir)} and rerun (it is retrained)")
    out.append(rec)
  return out


def run_dir_for(root: str | os.PathLike, kind: str, config: dict) -> Path:
  """root/f"{kind}-{sha256(canonical config)[:12]}", created, with config.json inside."""
  if not kind or "/" in kind:
    raise ConfigError(f"run kind must be a non-empty name without '/', got {kind!r}")
  name = f"{kind}-{config_hash(config)}"
  ensure_dir(root, "artefact root")
  run_dir = ensure_dir(Path(root) / name)
  if not (run_dir / "config.json").exists():
    write_json(run_dir / "config.json", {"kind": kind, "config": config})
  return run_dir


def is_done(run_dir: str | os.PathLike) -> bool:
  """True when the run finished and its files match the checksums in DONE (see :func:`verify_run`); a finished
  run whose files are damaged raises DamagedArtefact rather than being reused or silently retrained."""
  if not (Path(run_dir) / DONE).is_file():
    return False
  verify_run(run_dir)
  return True


def _sha256(path: Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _artefact_files(run_dir: Path) -> list[Path]:
  """The files a finished run is made of: everything under run_dir but DONE, ckpt/ (intermediate checkpoints),
  temporary files and nested run directories (folders with their own DONE)."""
  out = []
  for dirpath, dirnames, filenames in os.walk(run_dir):
    d = Path(dirpath)
    dirnames[:] = sorted(n for n in dirnames if not (d == run_dir and n == CKPT) and not (d / n / DONE).exists())
    out += [d / f for f in sorted(filenames) if not (d == run_dir and f == DONE) and ".tmp-" not in f]
  return out


def mark_done(run_dir: str | os.PathLike, final: dict) -> None:
  """Write DONE: ``final`` (the final metrics) plus the sha256 of every artefact file (key ``CHECKSUMS``)."""
  run_dir = Path(run_dir)
  sums = {f.relative_to(run_dir).as_posix(): _sha256(f) for f in _artefact_files(run_dir)}
  write_json(run_dir / DONE, {**final, CHECKSUMS: sums})
  _VERIFIED[str(run_dir.resolve())] = _stamp(run_dir / DONE)


_VERIFIED: dict[str, tuple] = {}  # resolved run dir -> DONE's (mtime, size) when its files were last verified


def _stamp(path: Path) -> tuple:
  st = path.stat()
  return st.st_mtime_ns, st.st_size, st.st_ino


def verify_run(run_dir: str | os.PathLike) -> None:
  """Check a finished run's files against the checksums in its DONE (once per process while DONE is unchanged);
  raises DamagedArtefact naming the file and the run directory to delete. A DONE without checksums is legacy
  and accepted as is."""
  run_dir = Path(run_dir).resolve()
  done = run_dir / DONE
  if _VERIFIED.get(str(run_dir)) == _stamp(done):
    return
  fix = f"delete {run_dir} and rerun (it is rebuilt from scratch)"
  try:
    record = json.loads(done.read_text(encoding="utf-8"))
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise DamagedArtefact(done, f"not valid JSON ({one_line(e)})", fix) from None
  if not isinstance(record, dict):
    raise DamagedArtefact(done, f"expected a JSON object, got {type(record).__name__}", fix)
  for rel, want in (record.get(CHECKSUMS) or {}).items():
    f = run_dir / rel
    if not f.is_file():
      raise DamagedArtefact(f, "missing (it was there when the run finished)", fix)
    if _sha256(f) != want:
      raise DamagedArtefact(f, "its contents differ from the sha256 recorded when the run finished (truncated or "
                            "modified)", fix)
  _VERIFIED[str(run_dir)] = _stamp(done)


def abstract_like(tree, sharding):
  """Shape/dtype placeholders of ``tree``, placed by ``sharding``: one Sharding for every array, or a pytree of
  them matching ``tree`` (FSDP state: one per array)."""
  if isinstance(sharding, jax.sharding.Sharding):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding), tree)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s), tree, sharding)


def save_params(run_dir: str | os.PathLike, model: nnx.Module) -> None:
  """Final nnx.Param state under run_dir/params (Orbax, overwriting a stale copy); for a Transformer also
  model_config.json, so load_model can rebuild it."""
  run_dir = Path(run_dir).absolute()
  if isinstance(model, Transformer):
    write_json(run_dir / MODEL_CONFIG, model.cfg)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(run_dir / PARAMS, nnx.state(model, nnx.Param), force=True)


def _check_finished(run_dir: Path, need: str) -> None:
  """A run's artefact ``need`` may be loaded: the run is finished (DONE) and intact."""
  done = (run_dir / DONE).is_file()
  if done:
    verify_run(run_dir)
  if not (run_dir / need).exists():
    raise ConfigError(f"no saved model in {run_dir} (need {need}); train it first (a run directory holds one "
                      "once it has finished)")
  if not done:
    raise DamagedArtefact(run_dir, f"unfinished run ({need} present but no {DONE}: it was interrupted)",
                          "rerun the training to finish it (it resumes from its last checkpoint), or delete "
                          f"{run_dir} and rerun")


def load_params(run_dir: str | os.PathLike, model: nnx.Module, device: jax.Device | None = None) -> nnx.Module:
  """Restore run_dir/params into ``model`` (same structure; may be abstract, from nnx.eval_shape) onto ``device``
  (default: the first device); returns the model with the restored parameters. The run must be finished (DONE)
  and its files intact (:func:`verify_run`)."""
  run_dir = Path(run_dir).absolute()
  _check_finished(run_dir, PARAMS)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  target = abstract_like(params, jax.sharding.SingleDeviceSharding(device or jax.devices()[0]))
  try:
    with ocp.StandardCheckpointer() as ckptr:
      params = ckptr.restore(run_dir / PARAMS, target)
  except Exception as e:  # noqa: BLE001 -- Orbax / TensorStore raise many types for a damaged checkpoint
    raise DamagedArtefact(run_dir / PARAMS, f"cannot be restored ({type(e).__name__}: {one_line(e)[:200]})",
                          f"delete {run_dir} and rerun (it is retrained)") from e
  return nnx.merge(graphdef, params, rest)


def load_model(run_dir: str | os.PathLike, device: jax.Device | None = None) -> Transformer:
  """Rebuild the Transformer from model_config.json and restore run_dir/params onto ``device``."""
  run_dir = Path(run_dir).absolute()
  _check_finished(run_dir, MODEL_CONFIG)
  try:
    cfg = ModelConfig(**read_json(run_dir / MODEL_CONFIG))
  except (TypeError, ValueError) as e:
    raise DamagedArtefact(run_dir / MODEL_CONFIG, f"not a model config ({one_line(e)[:200]})",
                          f"delete {run_dir} and rerun (it is retrained)") from e
  return load_params(run_dir, nnx.eval_shape(lambda: make_model(cfg)), device)


class CheckpointStore:
  """Orbax CheckpointManager over run_dir/ckpt holding {params, opt_state, step}; synchronous, keeps the last 2.

  Synchronous saves keep the bookkeeping simple (a step is on disk when save returns); at our model sizes a save
  costs far less than the steps between saves.
  """

  def __init__(self, run_dir: str | os.PathLike, max_to_keep: int = 2):
    opts = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False)
    self.directory = ensure_dir(Path(run_dir).absolute() / CKPT, "checkpoint directory")
    self.manager = ocp.CheckpointManager(self.directory, options=opts)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, params, opt_state) -> None:
    if step in self.manager.all_steps():
      return
    state = {"params": params, "opt_state": opt_state, "step": np.asarray(step, np.int64)}
    self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
    self.manager.wait_until_finished()

  def restore(self, step: int, params, opt_state, sharding):
    """Restore into the structure of (params, opt_state), placed with ``sharding`` (one Sharding, or a tree
    {"params": ..., "opt_state": ..., "step": ...} of them); returns (params, opt, step)."""
    like = {"params": params, "opt_state": opt_state, "step": np.asarray(step, np.int64)}
    try:
      out = self.manager.restore(step, args=ocp.args.StandardRestore(abstract_like(like, sharding)))
    except Exception as e:  # noqa: BLE001 -- Orbax / TensorStore raise many types for a damaged checkpoint
      path = self.directory / str(step)
      raise DamagedArtefact(path, f"checkpoint cannot be restored ({type(e).__name__}: {one_line(e)[:200]})",
                            f"delete {path} and rerun (training resumes from the checkpoint before it, or from "
                            "the start)") from e
    return out["params"], out["opt_state"], int(out["step"])

  def close(self) -> None:
    self.manager.close()
