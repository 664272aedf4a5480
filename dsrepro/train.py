"""A generic, resumable, data-parallel training loop, and supervised fine-tuning (SFT) on top of it.

``train_loop(model, loss_fn, batch_fn, cfg, run_dir)`` is shared by SFT and distillation:

- ``loss_fn(model, batch, **frozen) -> (loss, aux)``: a scalar loss and a dict of scalar diagnostics; ``frozen`` are
  models/arrays (the teacher) passed into the jitted step but never differentiated or updated.
- ``batch_fn(step, model, key) -> dict of arrays``: called on the host, outside jit, with the CURRENT model (so
  distillation can sample on-policy data from the student) and ``key = fold_in(named_key(seed, "batch"), step)``.

Choices:
- Functional step: ``nnx.split`` the model into (graphdef, params, rest); a ``jax.jit`` function carries params and
  the optax state, both DONATED (updated in place: one copy of each in memory, not two). Batch arrays are split
  along axis 0 over every device of the ``mesh``; XLA inserts the gradient reduction because the loss is a mean
  over the global batch. The default mesh (``make_mesh()``: all devices on "data", fsdp size 1) replicates params /
  optimizer state / frozen state (data parallel). A ``dsrepro.sharding.make_mesh(fsdp=k)`` mesh splits them over
  its "fsdp" axis (FSDP: each array along its largest dimension divisible by k, small ones replicated;
  ``sharding.ShardingRules``), the step's outputs pinned to the same split; optimizer state is created directly in
  its split (``jax.jit(tx.init, out_shardings=...)``) and checkpoints restore into it. Several processes (hosts) run the
  same loop on the global mesh after ``sharding.initialize_distributed()``.
- Resume is exact: a checkpoint holds params, optimizer state and the step; the batch for step s depends only on
  (seed, s, model at step s); the jitted program is the same. So the parameters after N steps are bit-identical
  whether or not the run was interrupted. On resume, metric records past the restored step are dropped (they are
  recomputed identically).
- Adafactor (the paper's optimizer) uses optax's defaults (factored second moments, decay 0.8, update-RMS clipping
  at 1.0, ``multiply_by_parameter_scale``: the learning rate is RELATIVE to each parameter block's RMS, as in
  T5X). AdamW uses b1 = 0.9, b2 = 0.95. Weight decay is decoupled, scaled by the scheduled learning rate, and
  applied only to parameters of rank >= 2 (not to norms' scales or biases).
- Schedules: linear warmup from lr / warmup_steps to lr over warmup_steps, then cosine decay to 10% of lr at
  ``steps`` ("cosine") or constant ("constant").
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from dsrepro import runs
from dsrepro.errors import ConfigError, check_int, check_real
from dsrepro import sharding as sharding_lib
from dsrepro.keys import named_key
from dsrepro.sharding import ShardingRules, make_mesh
from dsrepro.models.transformer import ModelConfig, Transformer, make_model, next_token

__all__ = ["TrainConfig", "with_steps", "make_schedule", "make_optimizer", "make_mesh", "shard_batch", "train_loop",
           "lower_train_step", "sft_loss", "token_ce", "eval_loss", "epoch_indices", "sft_batch_fn", "train_sft"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Hyperparameters of one training run. ``*_every = 0`` disables the periodic action (end-of-run still happens)."""
  steps: int = 1000
  batch_size: int = 32
  learning_rate: float = 1e-3     # adafactor: relative to parameter RMS (see module doc); adamw: absolute
  optimizer: str = "adafactor"    # "adafactor" | "adamw"
  weight_decay: float = 0.0
  schedule: str = "cosine"        # "cosine" | "constant"
  warmup_steps: int = 0
  clip_norm: float = 1.0          # global gradient-norm clipping; 0 disables
  seed: int = 0
  ckpt_every: int = 500
  log_every: int = 10
  eval_every: int = 0

  def __post_init__(self):
    """Types and ranges, checked once when the config is built (errors.ConfigError, a ValueError)."""
    for name in ("steps", "batch_size"):
      check_int(f"TrainConfig.{name}", getattr(self, name), 1)
    for name in ("warmup_steps", "ckpt_every", "log_every", "eval_every", "seed"):
      check_int(f"TrainConfig.{name}", getattr(self, name), 0)
    for name in ("weight_decay", "clip_norm"):
      check_real(f"TrainConfig.{name}", getattr(self, name), 0.0)
    check_real("TrainConfig.learning_rate", self.learning_rate, 0.0, lo_open=True)
    if self.optimizer not in ("adafactor", "adamw"):
      raise ConfigError(f"TrainConfig.optimizer={self.optimizer!r}; expected 'adafactor' or 'adamw'")
    if self.schedule not in ("cosine", "constant"):
      raise ConfigError(f"TrainConfig.schedule={self.schedule!r}; expected 'cosine' or 'constant'")


def with_steps(cfg: TrainConfig, steps: int, **overrides) -> TrainConfig:
  """``cfg`` for a run of ``steps`` updates, the periodic settings scaled with it (the ONE step formula): warmup
  10% of the steps (>= 1), a checkpoint every quarter (>= 10 steps apart), a log record every 5% (>= 1).
  ``overrides`` replace any field afterwards."""
  return dataclasses.replace(cfg, steps=steps, warmup_steps=max(1, steps // 10), ckpt_every=max(10, steps // 4),
                             log_every=max(1, steps // 20), **overrides)


def make_schedule(cfg: TrainConfig) -> Callable[[jax.Array], jax.Array]:
  """Learning rate as a function of the update count t = 0, 1, ... (see module doc)."""
  lr, warm, total = cfg.learning_rate, cfg.warmup_steps, cfg.steps

  def schedule(t):
    t = jnp.asarray(t, jnp.float32)
    ramp = jnp.minimum(1.0, (t + 1.0) / warm) if warm else 1.0
    if cfg.schedule == "constant":
      return lr * ramp
    frac = jnp.clip((t + 1.0 - warm) / max(total - warm, 1), 0.0, 1.0)
    return lr * ramp * (0.1 + 0.9 * 0.5 * (1.0 + jnp.cos(math.pi * frac)))

  return schedule


def _decay_mask(params):
  return jax.tree.map(lambda x: x.ndim >= 2, params)


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
  schedule = make_schedule(cfg)
  wd = (lambda t: cfg.weight_decay * schedule(t)) if cfg.weight_decay else None
  if cfg.optimizer == "adafactor":
    opt = optax.adafactor(learning_rate=schedule, weight_decay_rate=wd, weight_decay_mask=_decay_mask)
  else:
    opt = optax.adamw(schedule, b1=0.9, b2=0.95, weight_decay=cfg.weight_decay, mask=_decay_mask)
  return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), opt) if cfg.clip_norm else opt


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """Place every array of ``batch`` on ``mesh``, split along axis 0 over all its devices; the batch must divide by
  the device count. With several processes each hands JAX only its own rows (``sharding.global_batch``)."""
  return sharding_lib.global_batch(batch, mesh)


def _split_frozen(frozen: dict):
  defs, states = {}, {}
  for k, v in frozen.items():
    if isinstance(v, nnx.Module):
      defs[k], states[k] = nnx.split(v)
    else:
      states[k] = jnp.asarray(v)
  return defs, states


@functools.lru_cache(maxsize=8)
def _compiled_step(graphdef, loss_fn, cfg: TrainConfig, frozen_defs: tuple, mesh: Mesh, rules: ShardingRules):
  """The jitted train step, cached so repeated train_loop calls in one process compile once."""
  tx, frozen_defs = make_optimizer(cfg), dict(frozen_defs)
  replicated = NamedSharding(mesh, P())

  def step(params, rest, opt_state, batch, frozen_states):
    frozen = {k: nnx.merge(frozen_defs[k], s) if k in frozen_defs else s for k, s in frozen_states.items()}

    def f(p):
      return loss_fn(nnx.merge(graphdef, p, rest), batch, **frozen)

    (loss, aux), grads = jax.value_and_grad(f, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    # outputs split like the inputs (all replicated on a mesh without an "fsdp" axis)
    params, opt_state = sharding_lib.constrain((params, opt_state), mesh, rules)
    scalars = jax.lax.with_sharding_constraint((loss, aux, optax.tree.norm(grads)), replicated)
    return (params, opt_state) + scalars

  # params and opt_state are donated: the step's outputs reuse their buffers (on an accelerator they would
  # otherwise be held twice). train_loop owns private copies of both, so nothing else sees them invalidated.
  return jax.jit(step, donate_argnums=(0, 2))


def lower_train_step(model: nnx.Module, loss_fn: Callable, cfg: TrainConfig, batch: dict, mesh: Mesh, *,
                     frozen: dict | None = None, rules: ShardingRules = ShardingRules()) -> jax.stages.Lowered:
  """train_loop's step lowered at ABSTRACT inputs placed as train_loop places them: nothing is allocated, so
  ``model`` and the ``frozen`` models may come from ``nnx.eval_shape`` and ``batch`` may hold
  ``jax.ShapeDtypeStruct``s of the GLOBAL batch. ``.compile()`` gives ``memory_analysis()`` (per device) and
  ``cost_analysis()``; ``.cost_analysis()`` of the lowered program counts the global FLOPs."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = make_optimizer(cfg)
  frozen_defs, frozen_states = _split_frozen(frozen or {})
  shardings = lambda tree: sharding_lib.tree_shardings(tree, mesh, rules)
  opt_state = jax.eval_shape(tx.init, params)
  replicated = NamedSharding(mesh, P())
  args = (runs.abstract_like(params, shardings(params)), runs.abstract_like(rest, replicated),
          runs.abstract_like(opt_state, shardings(opt_state)),
          {k: jax.ShapeDtypeStruct(np.shape(v), v.dtype, sharding=sharding_lib.batch_sharding(mesh))
           for k, v in batch.items()},
          runs.abstract_like(frozen_states, shardings(frozen_states)))
  step = _compiled_step(graphdef, loss_fn, cfg, tuple(sorted(frozen_defs.items())), mesh, rules)
  return step.lower(*args)


def _restore(store: runs.CheckpointStore, step: int, params, opt_state, shardings: dict):
  """store.restore with one sharding PER ARRAY (``shardings`` = {"params": tree, "opt_state": tree, "step": the
  replicated sharding}): FSDP state comes back split as train_loop placed it, each device reading its shards."""
  return store.restore(step, params, opt_state, shardings)


def _truncate_metrics(path: Path, step: int) -> float:
  """Keep records with step <= ``step`` (atomically); returns the last kept record's elapsed seconds."""
  if not path.exists():
    return 0.0
  keep = [r for r in runs.read_metrics(path.parent) if r["step"] <= step]  # a cut-off last line is dropped
  with runs.atomic_path(path) as tmp:
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
  return keep[-1]["elapsed"] if keep else 0.0


def train_loop(model: nnx.Module, loss_fn: Callable, batch_fn: Callable, cfg: TrainConfig,
               run_dir: str | os.PathLike, *, eval_fn: Callable | None = None, frozen: dict | None = None,
               desc: str = "train", mesh: Mesh | None = None, stop_after: int | None = None,
               rules: ShardingRules = ShardingRules()) -> nnx.Module:
  """Train ``model`` in place for cfg.steps updates, checkpointing and logging under run_dir; returns it.

  If run_dir is DONE, the final params are loaded into ``model`` and nothing is trained (batch_fn is never
  called). If run_dir holds a checkpoint, training continues from it. ``stop_after=k`` returns right after update
  k as if the process had been killed there (no extra checkpoint, no DONE): for testing resumption.
  ``eval_fn(model) -> dict`` runs every cfg.eval_every updates and at the end; its results join that step's record.
  ``mesh`` defaults to make_mesh() (all devices, data parallel); ``sharding.make_mesh(fsdp=k)`` splits params,
  optimizer state and ``frozen`` models over k devices by ``rules`` (see the module doc). Only nnx.Param state is
  trained and checkpointed; any other state of the model (none in Transformer) is passed through unchanged.
  """
  run_dir = Path(run_dir)
  mesh = make_mesh() if mesh is None else mesh
  if cfg.batch_size % mesh.size:
    raise ValueError(f"batch_size={cfg.batch_size} is not divisible by the number of devices {mesh.size}")
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  if runs.is_done(run_dir):
    nnx.update(model, nnx.state(runs.load_params(run_dir, model), nnx.Param))
    return model
  run_dir.mkdir(parents=True, exist_ok=True)
  main = jax.process_index() == 0  # with several processes, one writes the small files; all write checkpoints
  if main and isinstance(model, Transformer):
    runs.write_json(run_dir / runs.MODEL_CONFIG, model.cfg)
  if main:
    runs.write_json(run_dir / "train_config.json", cfg)

  replicated = NamedSharding(mesh, P())
  tx = make_optimizer(cfg)
  # private copies (may_alias=False): the step donates them, and the caller's model (e.g. an nnx.clone of a
  # cached SFT draft, which shares its buffers) must stay valid
  params = sharding_lib.shard(params, mesh, rules, may_alias=False)
  rest = jax.device_put(rest, replicated)
  opt_shardings = sharding_lib.tree_shardings(jax.eval_shape(tx.init, params), mesh, rules)
  opt_state = jax.jit(tx.init, out_shardings=opt_shardings)(params)  # created split, never whole on one device
  frozen_defs, frozen_states = _split_frozen(frozen or {})
  frozen_states = sharding_lib.shard(frozen_states, mesh, rules)  # a teacher placed by shard_model stays as is
  step_fn = _compiled_step(graphdef, loss_fn, cfg, tuple(sorted(frozen_defs.items())), mesh, rules)
  schedule = make_schedule(cfg)
  batch_root = named_key(cfg.seed, "batch")
  metrics_path = run_dir / runs.METRICS

  store = runs.CheckpointStore(run_dir)
  try:
    step = store.latest_step() or 0
    if step:
      params, opt_state, step = _restore(store, step, params, opt_state, {
          "params": sharding_lib.tree_shardings(params, mesh, rules), "opt_state": opt_shardings, "step": replicated})
    if step > cfg.steps:
      raise ValueError(f"checkpoint in {run_dir} is at step {step}, past cfg.steps={cfg.steps}")
    elapsed0, t0 = _truncate_metrics(metrics_path, step) if main else 0.0, time.perf_counter()
    nnx.update(model, params)
    record: dict[str, Any] = {}
    bar = tqdm(total=cfg.steps, initial=step, desc=desc, dynamic_ncols=True, leave=False)
    with open(metrics_path if main else os.devnull, "a") as log:
      while step < cfg.steps:
        batch = shard_batch(batch_fn(step, model, jax.random.fold_in(batch_root, step)), mesh)
        params, opt_state, loss, aux, grad_norm = step_fn(params, rest, opt_state, batch, frozen_states)
        nnx.update(model, params)
        step += 1
        bar.update(1)
        do_eval = eval_fn is not None and ((cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps)
        if do_eval or step == cfg.steps or (cfg.log_every and step % cfg.log_every == 0):
          record = {"step": step, "loss": float(loss), "lr": float(schedule(step - 1)),
                    "grad_norm": float(grad_norm), **{k: float(v) for k, v in aux.items()}}
          if do_eval:
            record.update({k: float(v) for k, v in eval_fn(model).items()})
          record["elapsed"] = elapsed0 + time.perf_counter() - t0
          log.write(json.dumps(record) + "\n")
          log.flush()
          bar.set_postfix(loss=f"{record['loss']:.4f}")
        if step == cfg.steps or (cfg.ckpt_every and step % cfg.ckpt_every == 0):
          store.save(step, params, opt_state)
        if stop_after is not None and step >= stop_after and step < cfg.steps:
          bar.close()
          return model
    bar.close()
  finally:
    store.close()
  runs.save_params(run_dir, model)
  if main:
    runs.mark_done(run_dir, record or _last_record(metrics_path))
  sharding_lib.barrier(f"done {run_dir}")  # no process goes on before DONE exists
  return model


def _last_record(path: Path) -> dict:
  lines = path.read_text().splitlines() if path.exists() else []
  return json.loads(lines[-1]) if lines else {}


def token_ce(model, tokens_BxL: jax.Array, loss_mask_BxL: jax.Array):
  """(sum of next-token cross-entropy over target tokens, number of target tokens)."""
  logits_BxTxV, targets_BxT, mask_BxT = next_token(model(tokens_BxL)[0], tokens_BxL, loss_mask_BxL)
  tgt_BxT = jnp.take_along_axis(logits_BxTxV, targets_BxT[..., None], axis=-1)[..., 0]
  ce_BxT = jax.nn.logsumexp(logits_BxTxV, axis=-1) - tgt_BxT
  return jnp.sum(ce_BxT * mask_BxT), jnp.sum(mask_BxT)


def sft_loss(model, batch: dict):
  """Next-token CE of tokens[:, 1:] given logits[:, :-1], weighted by loss_mask[:, 1:], mean over valid tokens."""
  ce_sum, n = token_ce(model, batch["tokens"], batch["loss_mask"])
  return ce_sum / jnp.maximum(n, 1.0), {"tokens": n}


@jax.jit
def _ce_sums(graphdef, state, tokens_BxL, loss_mask_BxL):
  return token_ce(nnx.merge(graphdef, state), tokens_BxL, loss_mask_BxL)


def _check_data(data: dict, name: str, cfg: ModelConfig | None = None) -> int:
  if set(data) != {"tokens", "loss_mask"}:
    raise ValueError(f"{name} must have exactly the keys 'tokens' and 'loss_mask', got {sorted(data)}")
  t, m = np.shape(data["tokens"]), np.shape(data["loss_mask"])
  if len(t) != 2 or t != m or t[0] < 1 or t[1] < 2:
    raise ValueError(f"{name}: tokens {t} and loss_mask {m} must both be [N >= 1, L >= 2]")
  if not np.issubdtype(np.asarray(data["tokens"]).dtype, np.integer):
    raise ValueError(f"{name}['tokens'] must be integer, got {np.asarray(data['tokens']).dtype}")
  if cfg is not None:
    lo, hi = int(np.min(data["tokens"])), int(np.max(data["tokens"]))
    if lo < 0 or hi >= cfg.vocab_size:
      raise ValueError(f"{name}['tokens'] range [{lo}, {hi}] outside vocab_size={cfg.vocab_size}")
    if t[1] > cfg.max_len:
      raise ValueError(f"{name} sequence length {t[1]} exceeds model max_len={cfg.max_len}")
  return t[0]


def eval_loss(model, data: dict, batch_size: int = 64) -> float:
  """Token-weighted mean next-token CE over the whole dataset (last batch padded with masked rows)."""
  n = _check_data(data, "eval data")
  graphdef, state = nnx.split(model)
  total, count = 0.0, 0.0
  for i in range(0, n, batch_size):
    tok, msk = np.asarray(data["tokens"][i:i + batch_size]), np.asarray(data["loss_mask"][i:i + batch_size])
    pad = batch_size - len(tok)
    if pad:
      tok = np.concatenate([tok, np.zeros((pad, tok.shape[1]), tok.dtype)])
      msk = np.concatenate([msk, np.zeros((pad, msk.shape[1]), msk.dtype)])
    s, c = _ce_sums(graphdef, state, jnp.asarray(tok, jnp.int32), jnp.asarray(msk, jnp.float32))
    total, count = total + float(s), count + float(c)
  if count == 0:
    raise ValueError("eval data has no target tokens (loss_mask[:, 1:] is all zero)")
  return total / count


def epoch_indices(n: int, batch_size: int, seed: int) -> Callable[[int], np.ndarray]:
  """``indices(step) -> int [B]``: the dataset rows of batch ``step``, items s*B .. s*B+B-1 of the concatenation of
  per-epoch permutations, epoch e permuted by fold_in(named_key(seed, "data"), e) (SFT and distillation share it)."""
  if n < 1 or batch_size < 1:
    raise ValueError(f"need n >= 1 examples and batch_size >= 1, got n={n}, batch_size={batch_size}")
  data_key, perms = named_key(seed, "data"), {}

  def perm(epoch):
    if epoch not in perms:
      if len(perms) > 2:
        perms.clear()
      perms[epoch] = np.asarray(jax.random.permutation(jax.random.fold_in(data_key, epoch), n))
    return perms[epoch]

  def indices(step):
    g = np.arange(step * batch_size, (step + 1) * batch_size)
    return np.array([perm(e)[i] for e, i in zip(g // n, g % n)])

  return indices


def sft_batch_fn(data: dict, batch_size: int, seed: int) -> Callable:
  """batch_fn over a fixed dataset: batch s holds the rows ``epoch_indices(n, batch_size, seed)(s)``.
  Deterministic in (seed, s)."""
  indices = epoch_indices(_check_data(data, "data"), batch_size, seed)

  def batch_fn(step, model, key):
    del model, key
    idx = indices(step)
    return {"tokens": np.asarray(data["tokens"][idx], np.int32),
            "loss_mask": np.asarray(data["loss_mask"][idx], np.float32)}

  return batch_fn


def train_sft(model_cfg: ModelConfig, train_cfg: TrainConfig, data: dict, run_dir: str | os.PathLike,
              eval_data: dict | None = None, init_seed: int | None = None, **loop_kw) -> Transformer:
  """Supervised fine-tuning (from a fresh model with seed init_seed, default train_cfg.seed). A DONE run_dir is
  loaded, not retrained (train_loop). ``loop_kw`` goes to train_loop (mesh, stop_after, desc)."""
  _check_data(data, "data", model_cfg)
  eval_fn = None
  if eval_data is not None:
    _check_data(eval_data, "eval_data", model_cfg)
    eval_fn = lambda m: {"eval_loss": eval_loss(m, eval_data, batch_size=train_cfg.batch_size)}
  model = make_model(model_cfg, seed=train_cfg.seed if init_seed is None else init_seed)
  batch_fn = sft_batch_fn(data, train_cfg.batch_size, train_cfg.seed)
  return train_loop(model, sft_loss, batch_fn, train_cfg, run_dir, eval_fn=eval_fn, **{"desc": "sft", **loop_kw})
