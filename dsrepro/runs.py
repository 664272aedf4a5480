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
  DONE               JSON with the final metrics; written last, so its presence means everything else is complete

Every small file is written to a temporary name and renamed (atomic on POSIX); Orbax commits checkpoint folders
the same way. So a run killed at any point never looks finished.
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

from dsrepro.models.transformer import ModelConfig, Transformer, make_model

__all__ = ["canonical_json", "config_hash", "run_dir_for", "is_done", "atomic_path", "write_json", "read_json",
           "mark_done", "read_metrics", "save_params", "load_params", "load_model", "CheckpointStore"]

DONE, MODEL_CONFIG, PARAMS, CKPT, METRICS = "DONE", "model_config.json", "params", "ckpt", "metrics.jsonl"


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
    raise ValueError(f"config is not JSON-serialisable: {config!r} ({e})") from e


def config_hash(config: Any, n: int = 12) -> str:
  return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:n]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
  """Yield a temporary path in ``path``'s folder (same suffix) to write to; it is renamed over ``path`` only when
  the block succeeds, and removed otherwise, so a reader never sees a half-written file."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
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
  return json.loads(Path(path).read_text())


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
  """The records of run_dir/metrics.jsonl (one dict per logged step; [] if none yet)."""
  path = Path(run_dir) / METRICS
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_dir_for(root: str | os.PathLike, kind: str, config: dict) -> Path:
  """root/f"{kind}-{sha256(canonical config)[:12]}", created, with config.json inside."""
  if not kind or "/" in kind:
    raise ValueError(f"run kind must be a non-empty name without '/', got {kind!r}")
  run_dir = Path(root) / f"{kind}-{config_hash(config)}"
  run_dir.mkdir(parents=True, exist_ok=True)
  if not (run_dir / "config.json").exists():
    write_json(run_dir / "config.json", {"kind": kind, "config": config})
  return run_dir


def is_done(run_dir: str | os.PathLike) -> bool:
  return (Path(run_dir) / DONE).is_file()


def mark_done(run_dir: str | os.PathLike, final: dict) -> None:
  write_json(Path(run_dir) / DONE, final)


def _abstract(tree, sharding):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def save_params(run_dir: str | os.PathLike, model: nnx.Module) -> None:
  """Final nnx.Param state under run_dir/params (Orbax, overwriting a stale copy); for a Transformer also
  model_config.json, so load_model can rebuild it."""
  run_dir = Path(run_dir).absolute()
  if isinstance(model, Transformer):
    write_json(run_dir / MODEL_CONFIG, model.cfg)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(run_dir / PARAMS, nnx.state(model, nnx.Param), force=True)


def load_params(run_dir: str | os.PathLike, model: nnx.Module, device: jax.Device | None = None) -> nnx.Module:
  """Restore run_dir/params into ``model`` (same structure; may be abstract, from nnx.eval_shape) onto ``device``
  (default: the first device); returns the model with the restored parameters."""
  run_dir = Path(run_dir).absolute()
  if not (run_dir / PARAMS).is_dir():
    raise ValueError(f"no saved parameters in {run_dir} (need {PARAMS}/)")
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  target = _abstract(params, jax.sharding.SingleDeviceSharding(device or jax.devices()[0]))
  with ocp.StandardCheckpointer() as ckptr:
    params = ckptr.restore(run_dir / PARAMS, target)
  return nnx.merge(graphdef, params, rest)


def load_model(run_dir: str | os.PathLike, device: jax.Device | None = None) -> Transformer:
  """Rebuild the Transformer from model_config.json and restore run_dir/params onto ``device``."""
  run_dir = Path(run_dir).absolute()
  if not (run_dir / MODEL_CONFIG).is_file():
    raise ValueError(f"no saved model in {run_dir} (need {MODEL_CONFIG})")
  cfg = ModelConfig(**read_json(run_dir / MODEL_CONFIG))
  return load_params(run_dir, nnx.eval_shape(lambda: make_model(cfg)), device)


class CheckpointStore:
  """Orbax CheckpointManager over run_dir/ckpt holding {params, opt_state, step}; synchronous, keeps the last 2.

  Synchronous saves keep the bookkeeping simple (a step is on disk when save returns); at our model sizes a save
  costs far less than the steps between saves.
  """

  def __init__(self, run_dir: str | os.PathLike, max_to_keep: int = 2):
    opts = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False)
    self.manager = ocp.CheckpointManager(Path(run_dir).absolute() / CKPT, options=opts)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, params, opt_state) -> None:
    if step in self.manager.all_steps():
      return
    state = {"params": params, "opt_state": opt_state, "step": np.asarray(step, np.int64)}
    self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
    self.manager.wait_until_finished()

  def restore(self, step: int, params, opt_state, sharding):
    """Restore into the structure of (params, opt_state), placed with ``sharding``; returns (params, opt, step)."""
    like = {"params": params, "opt_state": opt_state, "step": np.asarray(step, np.int64)}
    out = self.manager.restore(step, args=ocp.args.StandardRestore(_abstract(like, sharding)))
    return out["params"], out["opt_state"], int(out["step"])

  def close(self) -> None:
    self.manager.close()
