"""Plan before you spend: every training stage of a profile compiled ABSTRACTLY at its real shapes (no weights, any
machine), with parameters, FLOPs per step (XLA cost analysis), memory per device (XLA memory analysis of the
sharded program) and the projected wall time on a chosen accelerator.

``dsrepro plan --profile NAME [--device h100|a100|v5e|cpu] [--devices N] [--mfu 0.4]`` prints one row per stage
(``stages(profile)``: pretraining, SFT target / draft / garden sizes, the distillation runs of DistillSpec arXiv
2310.08461 Table 1 and Fig. 4 / 6, and AdaSPEC arXiv 2510.19779) and the total.

How the numbers are made:

* The model is built with ``nnx.eval_shape`` and the step is ``train.lower_train_step`` (the step train_loop
  runs, inputs placed as train_loop places them on an FSDP mesh of N devices) lowered with ``jax.ShapeDtypeStruct``
  inputs: nothing is allocated, so a 1.4B-parameter model plans on a laptop.
* Depth. Compiling a 24-layer model takes ~25 s on a 2-core CPU, so each stage is compiled at 1 and 2 layers (and
  1-1, 2-1, 1-2 layers of student-teacher for distillation) and every number is extrapolated linearly in the
  layer counts: exact for FLOPs and state bytes (each layer is the same), an estimate for XLA's temporaries.
* FLOPs per step are the GLOBAL count of ``Lowered.cost_analysis()`` (forward, backward, optimizer; the frozen
  teacher's forward). Memory per device is ``Compiled.memory_analysis()`` of the SPMD program: arguments +
  outputs - donated + temporaries. The compile targets this machine's backend, so temporaries are indicative of
  (not equal to) an accelerator's.
* Time per step = FLOPs / (mfu x peak x N) + decoding: a recipe that generates its data (on-policy GKD, SeqKD,
  ...) samples ``max_new_tokens`` tokens per row each step, bounded below by reading the generator's weights once
  per token (``param bytes / HBM bandwidth``); its FLOPs (about one forward over the row) are added too.
  Evaluation (speculative decoding, latencies) is not included.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dsrepro import data as data_lib
from dsrepro import sharding
from dsrepro.errors import ConfigError
from dsrepro.kd.recipes import ALGORITHMS, DISTILLSPEC, SUPERVISED, KDConfig, grid_cells, grid_config
from dsrepro.models.hf_config import PYTHIA, pythia_config
from dsrepro.models.transformer import GARDEN, ModelConfig, count_params, garden_config, make_model
from dsrepro.sharding import MemoryBytes
from dsrepro.repro.devices import DEVICES, DeviceSpec, device_spec
from dsrepro.train import TrainConfig, lower_train_step, sft_loss

__all__ = ["DeviceSpec", "DEVICES", "device_spec", "Stage", "StagePlan", "model_config", "stages", "plan_stage",
           "plan_profile", "format_plan", "add_arguments", "main"]


# ------------------------------------------------------------------------------------------------ stages


@dataclasses.dataclass(frozen=True)
class Stage:
  """``count`` identical training runs of ``model`` (``train.steps`` steps of ``train.batch_size`` rows of
  ``seq_len`` tokens): SFT / pretraining when ``kd`` is None, else distillation from the frozen ``teacher`` (and
  the frozen AdaSPEC reference ``ref``, the student's architecture)."""
  name: str
  model: ModelConfig
  train: TrainConfig
  seq_len: int
  count: int = 1
  kd: KDConfig | None = None
  teacher: ModelConfig | None = None
  ref: ModelConfig | None = None


def model_config(p, size: str) -> ModelConfig:
  """The architecture of a profile's model size: a garden size, or a Pythia size ("pythia-1.4b") at the
  profile's context length."""
  from dsrepro.repro.artefacts import context_len
  if size in GARDEN:
    return garden_config(size, p.vocab_size, max_len=context_len(p))
  if size.removeprefix("pythia-") in PYTHIA:
    return pythia_config(size, max_len=context_len(p))
  raise ConfigError(f"unknown model size {size!r}: not a garden size ({', '.join(GARDEN)}) nor a Pythia size "
                   f"({', '.join('pythia-' + s for s in PYTHIA)})")


def stages(p) -> list[Stage]:
  """The training runs the figures of profile ``p`` ask for (see dsrepro/repro/figures/*.py and artefacts.py),
  counted per task and KD seed; a run several figures share (same task, recipe, seed) is counted once."""
  from dsrepro.repro.artefacts import context_len
  m = functools.partial(model_config, p)
  seeds = getattr(p, "kd_seeds", 1)
  all_tasks = tuple(dict.fromkeys(p.tasks + p.adaspec_tasks + p.fig4_tasks))
  sizes = tuple(dict.fromkeys((p.target_size, p.draft_size) + p.garden))
  kd = lambda cfg: dataclasses.replace(cfg, max_new_tokens=p.max_target_len)  # as artefacts.kd_model

  def per_task(cfg, tasks):  # the mean steps of a run over ``tasks`` (Profile.task_train: epochs when counted)
    if not p.epochs:
      return cfg
    n = [len(data_lib.load_task(task, "train", limit=p.n_train or None)) for task in tasks]
    return p.task_train(cfg, math.ceil(sum(n) / len(n)))
  out = []
  if p.pretrain is not None and not p.hf_models:  # one base per size on packed general text (artefacts.base_model)
    out += [Stage(f"pretrain {s}", m(s), p.pretrain, context_len(p)) for s in sizes]
  out += [Stage("SFT target", m(p.target_size), per_task(p.sft_target, all_tasks), p.pad_len, len(all_tasks)),
          Stage("SFT draft", m(p.draft_size), per_task(p.sft_draft, all_tasks), p.pad_len, len(all_tasks))]
  for s in p.garden:  # Fig. 6, on the first task; garden[0] trains like the draft (artefacts.sft_model)
    if s not in (p.target_size, p.draft_size):
      out.append(Stage(f"SFT garden {s}", m(s), per_task(p.sft_draft if s == p.garden[0] else p.sft_garden,
                                                         p.tasks[:1]), p.pad_len))
  student, teacher = m(p.draft_size), m(p.target_size)
  for name, recipe in ALGORITHMS.items():  # Table 1 on p.tasks; FKL and GKD also on the AdaSPEC tasks
    tasks = set(p.tasks) | (set(p.adaspec_tasks) if name in (SUPERVISED, DISTILLSPEC) else set())
    out.append(Stage(f"KD {name}", student, per_task(p.kd, sorted(tasks)), p.pad_len, len(tasks) * seeds, kd(recipe),
                     teacher))
  # AdaSPEC's reference IS the SupervisedKD draft of the same seed (artefacts.adaspec_model): only stage 2 is new
  out.append(Stage(f"AdaSPEC draft (k={p.adaspec_k})", student, per_task(p.kd, p.adaspec_tasks), p.pad_len,
                   len(p.adaspec_tasks) * seeds,
                   kd(KDConfig(adaspec_k=p.adaspec_k)), teacher, student))
  grid_tc = dataclasses.replace(p.kd, steps=p.kd_grid_steps)
  for data in dict.fromkeys(d for d, _ in grid_cells()):  # Fig. 4; the divergence does not change the cost
    n_div = sum(1 for d, _ in grid_cells() if d == data)
    out.append(Stage(f"Fig.4 grid {data}", student, grid_tc, p.pad_len, len(p.fig4_tasks) * n_div,
                     kd(grid_config(data, "fkl")), teacher))
  if seeds > 1:  # the paper's cell and its strongest rival per decoding, rerun on the other KD seeds (at most 4)
    out.append(Stage("Fig.4 reruns (at most)", student, grid_tc, p.pad_len, len(p.fig4_tasks) * 4 * (seeds - 1),
                     kd(grid_config("teacher", "fkl")), teacher))
  big = m(p.garden[-1])
  for s in p.garden[:-1]:  # Fig. 6: each size distilled from the largest, then the smallest from each size
    out.append(Stage(f"Fig.6 {s} <- {p.garden[-1]}", m(s), grid_tc, p.pad_len, 1, kd(ALGORITHMS[SUPERVISED]), big))
  for s in p.garden[1:]:
    out.append(Stage(f"Fig.6 {p.garden[0]} <- {s}", m(p.garden[0]), grid_tc, p.pad_len, 1,
                     kd(ALGORITHMS[DISTILLSPEC]), m(s)))
  return out


# ------------------------------------------------------------------------------------------------ planning


@dataclasses.dataclass(frozen=True)
class StagePlan:
  """The plan of one Stage on ``n_devices`` x ``device``: parameters (trained, frozen), global FLOPs of one train
  step and of its data generation, per-device memory (MemoryBytes; ``fits`` the device), and projected time."""
  stage: Stage
  device: str
  n_devices: int
  params: int
  frozen_params: int
  flops_per_step: float
  gen_flops_per_step: float
  memory: MemoryBytes
  fits: bool
  seconds_per_step: float
  compiled: bool = True           # False: memory is the step's inputs only (plan_stage(compile=False))

  @property
  def seconds(self) -> float:
    """All ``count`` runs of the stage."""
    return self.stage.count * self.stage.train.steps * self.seconds_per_step


def _loss(kd: KDConfig | None):
  if kd is None:
    return sft_loss
  from dsrepro.kd.distill import make_kd_loss
  return make_kd_loss(kd)


@functools.lru_cache(maxsize=256)
def _abstract(cfg: ModelConfig) -> nnx.Module:
  """The model built with nnx.eval_shape (ShapeDtypeStructs, nothing allocated); shared, never modified."""
  return nnx.eval_shape(lambda: make_model(cfg))


@functools.lru_cache(maxsize=256)
def _n_params(cfg: ModelConfig) -> int:
  return count_params(_abstract(cfg))


def _step_inputs(student: ModelConfig, teacher: ModelConfig | None, ref: bool, train: TrainConfig, seq_len: int):
  """(abstract student, abstract frozen models, abstract batch) of a train step."""
  abstract = _abstract
  frozen = {}
  if teacher is not None:
    frozen["teacher"] = abstract(teacher)
  if ref:
    frozen["ref"] = abstract(student)
  b = train.batch_size
  batch = {"tokens": jax.ShapeDtypeStruct((b, seq_len), jnp.int32),
           "loss_mask": jax.ShapeDtypeStruct((b, seq_len), jnp.float32)}
  return abstract(student), frozen, batch


def _input_bytes(student, teacher, ref, train, seq_len, mesh, rules) -> int:
  """Per-device bytes of the step's inputs (params, optimizer state, frozen models, batch), from their shardings:
  exact, no compile."""
  from dsrepro.train import make_optimizer
  model, frozen, batch = _step_inputs(student, teacher, ref, train, seq_len)
  params = nnx.state(model, nnx.Param)
  trees = (params, jax.eval_shape(make_optimizer(train).init, params), nnx.state(frozen))
  total = 0
  for tree in trees:
    for x, sh in zip(jax.tree.leaves(tree), jax.tree.leaves(sharding.tree_shardings(tree, mesh, rules))):
      total += int(np.prod(sh.shard_shape(x.shape))) * jnp.dtype(x.dtype).itemsize
  bsh = sharding.batch_sharding(mesh)
  return total + sum(int(np.prod(bsh.shard_shape(x.shape))) * x.dtype.itemsize for x in batch.values())


# XLA:CPU codegen options for planning compiles: the buffer assignment (hence memory_analysis) is the same, the
# compile about twice as fast (the program is never run).
FAST_CPU_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def xla_flags(options: dict) -> str:
  """``options`` (XLA compiler options, as ``compile(compiler_options=...)`` takes them) as XLA_FLAGS text."""
  return " ".join(f"--{k}={str(v).lower()}" for k, v in options.items())


def _measure(student: ModelConfig, teacher: ModelConfig | None, ref: bool, kd, train: TrainConfig, seq_len: int,
             mesh, rules, compile: bool) -> dict:
  """{"flops": global FLOPs, and the per-device MemoryBytes fields} of the train step at these exact (shallow)
  architectures. Without ``compile``: FLOPs from lowering, memory = the inputs' bytes (no temporaries)."""
  model, frozen, batch = _step_inputs(student, teacher, ref, train, seq_len)
  lowered = lower_train_step(model, _loss(kd), train, batch, mesh, frozen=frozen, rules=rules)
  out = dict(flops=float(lowered.cost_analysis()["flops"]))
  if compile:
    opts = FAST_CPU_COMPILE if jax.default_backend() == "cpu" else None
    out.update(dataclasses.asdict(sharding.memory_bytes(lowered.compile(compiler_options=opts))))
  else:
    out.update(arguments=_input_bytes(student, teacher, ref, train, seq_len, mesh, rules), outputs=0, aliased=0,
               temporaries=0)
  return out


@functools.lru_cache(maxsize=256)
def _forward_flops_at(cfg: ModelConfig, rows: int, seq_len: int) -> float:
  """Global FLOPs of one forward of ``cfg`` (at its depth) over ``rows`` x ``seq_len`` tokens (lowered only)."""
  graphdef, state = nnx.split(_abstract(cfg))
  f = lambda s, t: nnx.merge(graphdef, s)(t)[0]
  return float(jax.jit(f).lower(state, jax.ShapeDtypeStruct((rows, seq_len), jnp.int32)).cost_analysis()["flops"])


def _forward_flops(cfg: ModelConfig, rows: int, seq_len: int, per_layer: bool = False) -> float:
  """Forward FLOPs at full depth, extrapolated from 1 and 2 layers (or the FLOPs of one more layer)."""
  f1, f2 = (_forward_flops_at(dataclasses.replace(cfg, n_layers=n), rows, seq_len) for n in (1, 2))
  return f2 - f1 if per_layer else f1 + (f2 - f1) * (cfg.n_layers - 1)


def _extrapolate(at: dict, depths: tuple[int, ...]) -> dict:
  """Linear in each depth: v(d) = v(1..1) + sum_i (v(1.. 2 at i ..1) - v(1..1)) (d_i - 1)."""
  base = at[(1,) * len(depths)]
  out = dict(base)
  for i, d in enumerate(depths):
    bumped = at[tuple(2 if j == i else 1 for j in range(len(depths)))]
    for k in out:
      out[k] += (bumped[k] - base[k]) * (d - 1)
  return out


def plan_stage(stage: Stage, device: str | DeviceSpec = "h100", n_devices: int = 1, *, fsdp: bool = True,
               mfu: float = 0.4, compile: bool = True, rules: sharding.ShardingRules = sharding.ShardingRules(),
               cache: dict | None = None) -> StagePlan:
  """Plan one stage on ``n_devices`` devices (this process must see that many: ``main`` forces host devices);
  ``fsdp`` splits params / optimizer state / frozen models over all of them (else replicated, data parallel).
  ``compile=False``: no XLA compile (seconds per profile), memory is then the step's inputs only (a lower bound).
  ``cache`` (a dict) shares measurements between stages of the same shapes."""
  dev = device_spec(device) if isinstance(device, str) else device
  if n_devices > jax.device_count():
    raise ConfigError(f"planning for {n_devices} devices needs {n_devices} visible devices (this process has "
                     f"{jax.device_count()}); run `dsrepro plan`, which forces host devices")
  if stage.train.batch_size % n_devices:
    raise ConfigError(f"{stage.name}: batch_size={stage.train.batch_size} does not divide over {n_devices} devices")
  mesh = sharding.make_mesh(jax.devices()[:n_devices], fsdp=n_devices if fsdp else 1)
  student, teacher = stage.model, stage.teacher
  depths = (student.n_layers,) + ((teacher.n_layers,) if teacher is not None else ())
  key = (student, teacher, stage.ref is not None, stage.kd and _loss(stage.kd), stage.train.batch_size,
         stage.train.optimizer, stage.seq_len, n_devices, fsdp, rules, compile)
  cache = {} if cache is None else cache
  if key not in cache:
    shallow = lambda c, n: dataclasses.replace(c, n_layers=n) if c is not None else None
    measure = lambda ls, lt, full: _measure(shallow(student, ls), shallow(teacher, lt), stage.ref is not None,
                                            stage.kd, stage.train, stage.seq_len, mesh, rules, full)
    if teacher is None:
      at = {(1,): measure(1, 1, compile), (2,): measure(2, 1, compile)}
    else:  # teacher depth: + one teacher layer's forward FLOPs and bytes (exact); temporaries flat (a frozen
      # model's activations are not kept for the backward pass)
      at = {(1, 1): measure(1, 1, compile), (2, 1): measure(2, 1, compile)}
      inputs = lambda lt: _input_bytes(shallow(student, 1), shallow(teacher, lt), stage.ref is not None,
                                       stage.train, stage.seq_len, mesh, rules)
      at[(1, 2)] = dict(at[(1, 1)], flops=at[(1, 1)]["flops"] + _forward_flops(
          teacher, stage.train.batch_size, stage.seq_len, per_layer=True),
          arguments=at[(1, 1)]["arguments"] + inputs(2) - inputs(1))
    cache[key] = _extrapolate(at, depths)
  v = cache[key]
  mem = MemoryBytes(**{k: int(round(v[k])) for k in ("arguments", "outputs", "aliased", "temporaries")})
  gen_flops, decode_s = 0.0, 0.0
  if stage.kd is not None and stage.kd.generates:
    from dsrepro.kd.batches import split_rows
    for source, lo, hi in split_rows(stage.train.batch_size, stage.kd.sources, stage.kd.mix):
      if source != "ground_truth":
        gen = student if source == "student" else teacher
        gen_flops += _forward_flops(gen, hi - lo, stage.seq_len)
        decode_s += stage.kd.max_new_tokens * _n_params(gen) * jnp.dtype(gen.param_dtype).itemsize \
            / dev.hbm_bytes_per_s
  peak = dev.bf16_flops if student.dtype == "bfloat16" else dev.fp32_flops
  total_peak = mfu * peak * (1 if dev.shared_host else n_devices)
  frozen = (_n_params(teacher) if teacher is not None else 0) + (_n_params(stage.ref) if stage.ref else 0)
  return StagePlan(stage=stage, device=dev.name, n_devices=n_devices, params=_n_params(student),
                   frozen_params=frozen, flops_per_step=v["flops"], gen_flops_per_step=gen_flops, memory=mem,
                   fits=mem.peak <= dev.memory_bytes, compiled=compile,
                   seconds_per_step=(v["flops"] + gen_flops) / total_peak + decode_s)


def plan_profile(p, device: str = "h100", n_devices: int = 1, *, fsdp: bool = True, mfu: float = 0.4,
                 compile: bool = True, rules: sharding.ShardingRules = sharding.ShardingRules()) -> list[StagePlan]:
  """plan_stage for every stage of profile ``p``, sharing measurements between stages of the same shapes."""
  cache: dict = {}
  return [plan_stage(s, device, n_devices, fsdp=fsdp, mfu=mfu, compile=compile, rules=rules, cache=cache)
          for s in stages(p)]


# ------------------------------------------------------------------------------------------------ output


def _si(x: float, unit: str = "") -> str:
  for f, s in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
    if abs(x) >= f:
      return f"{x / f:.3g}{s}{unit}"
  return f"{x:.3g}{unit}"


def _duration(s: float) -> str:
  if s < 120:
    return f"{s:.2g} s" if s < 10 else f"{s:.0f} s"
  return f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def format_plan(plans: list[StagePlan], profile: str, mfu: float, fsdp: bool) -> str:
  """A markdown table, one row per stage, and the total."""
  if not plans:
    return f"profile {profile}: no training stages"
  p0 = plans[0]
  split = "" if p0.n_devices == 1 else f", params FSDP over {p0.n_devices}" if fsdp else ", params replicated"
  how = (f"compiled on {jax.default_backend()} at 1-2 layers and extrapolated in depth" if p0.compiled else
         "lowered only (no compile): memory = the step's inputs, temporaries not counted")
  lines = [f"plan: profile {profile} on {p0.n_devices} x {p0.device}{split}, utilisation {mfu:.0%}; {how}",
           "", "| stage | runs | params (frozen) | FLOPs/step | memory/device | steps | time |",
           "|---|---|---|---|---|---|---|"]
  for pl in plans:
    s = pl.stage
    gen = f" + gen {_si(pl.gen_flops_per_step)}" if pl.gen_flops_per_step else ""
    frozen = f" ({_si(pl.frozen_params)})" if pl.frozen_params else ""
    mem = _si(pl.memory.peak, "B") + ("" if pl.fits else " (does not fit)")
    lines.append(f"| {s.name} | {s.count} | {_si(pl.params)}{frozen} | {_si(pl.flops_per_step)}{gen} | {mem} | "
                 f"{s.train.steps} | {_duration(pl.seconds)} |")
  total = sum(pl.seconds for pl in plans)
  flops = sum(pl.stage.count * pl.stage.train.steps * (pl.flops_per_step + pl.gen_flops_per_step) for pl in plans)
  worst = max(plans, key=lambda pl: pl.memory.peak)
  lines += ["", f"total: {_duration(total)} for {_si(flops)}FLOP of training; peak memory/device "
                f"{_si(worst.memory.peak, 'B')} ({worst.stage.name}){'' if worst.fits else ' -- DOES NOT FIT'}"]
  return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--profile", required=True, help="profile name (dsrepro profiles)")
  parser.add_argument("--device", default="h100", choices=[*DEVICES, "cpu"],
                      help="accelerator to project onto (cpu: this machine, measured); default h100")
  parser.add_argument("--devices", type=int, default=1, help="number of devices (default 1)")
  parser.add_argument("--mfu", type=float, default=0.4, help="assumed fraction of peak FLOP/s (default 0.4)")
  parser.add_argument("--no-fsdp", action="store_true", help="replicate parameters (data parallel) instead of FSDP")
  parser.add_argument("--no-compile", action="store_true",
                      help="lower only (seconds): FLOPs exact, memory = the step's inputs (no temporaries)")


def run(args: argparse.Namespace) -> list[StagePlan]:
  """Plan and print (``args`` from add_arguments); re-runs itself with forced host devices when more devices are
  asked for than this process sees (then returns [])."""
  if args.devices < 1 or not 0 < args.mfu <= 1:
    raise ConfigError(f"--devices must be >= 1 and --mfu in (0, 1], got {args.devices} and {args.mfu}")
  if args.devices > jax.device_count():
    env = sharding.host_devices_env(args.devices)
    argv = ["--profile", args.profile, "--device", args.device, "--devices", str(args.devices), "--mfu",
            str(args.mfu)] + (["--no-fsdp"] if args.no_fsdp else []) + (["--no-compile"] if args.no_compile else [])
    subprocess.run([sys.executable, "-m", "dsrepro.repro.plan", *argv], env=env, check=True)
    return []
  from dsrepro.repro.profiles import get_profile
  p = get_profile(args.profile)
  plans = plan_profile(p, args.device, args.devices, fsdp=not args.no_fsdp, mfu=args.mfu,
                       compile=not args.no_compile)
  print(format_plan(plans, p.name, args.mfu, not args.no_fsdp), flush=True)
  return plans


def main(argv: list[str] | None = None) -> list[StagePlan]:
  parser = argparse.ArgumentParser(prog="dsrepro plan", description=__doc__.split("\n\n")[0])
  add_arguments(parser)
  return run(parser.parse_args(argv))


if __name__ == "__main__":
  main()
