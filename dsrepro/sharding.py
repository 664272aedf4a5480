"""Device meshes, FSDP partition rules and multi-process start-up, for training the target and the draft on every
device of one or several hosts.

The mesh has two axes, ``("data", "fsdp")``. A batch is split along its rows over BOTH axes (every device sees
different rows: the data-parallel degree is the device count). Parameters, optimizer state and frozen models
(the distillation teacher) are split over the ``"fsdp"`` axis only (ZeRO-3 / FSDP, Rajbhandari et al. 2020): each
array along its LARGEST dimension divisible by the fsdp size, arrays below ``ShardingRules.min_size`` elements
(norm scales, biases) and arrays with no divisible dimension replicated. Inside the jitted step XLA's SPMD
partitioner all-gathers a layer's weights before using them and reduce-scatters the gradients, so each device
holds 1/fsdp of the state plus one gathered layer at a time. ``"data"`` > 1 with ``"fsdp"`` > 1 replicates the state
across the data groups (hybrid sharding, e.g. fsdp = the GPUs of one host, data = the hosts). A mesh WITHOUT an
``"fsdp"`` axis (``dsrepro.train.make_mesh``: 1-D, ``"data"``) replicates every array, as before.

The same rule, applied to SHAPES, places the optimizer state: Adam's moments have their parameter's shape and get
its split; Adafactor's factored moments are vectors (small, replicated unless large enough) and its counts scalars.

Multi-process (several hosts, or one process per GPU): call :func:`initialize_distributed` first thing, on every
process, before any JAX computation. Every process then runs the same program on the GLOBAL mesh
(``jax.devices()``); each computes the same global batch (batches are deterministic in (seed, step)) and hands
only its own rows to JAX (:func:`global_batch`, ``jax.make_array_from_process_local_data``). Checkpoints
(Orbax) are written cooperatively by all processes into one shared directory.

Used for DistillSpec (arXiv 2310.08461) and AdaSPEC (arXiv 2510.19779) distillation of a Pythia-31M draft from a
Pythia-1.4B target: the frozen teacher is sharded like the student (:func:`shard_model`), optionally in bf16.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = ["DATA", "FSDP", "ShardingRules", "make_mesh", "fsdp_size", "batch_spec", "batch_sharding",
           "array_spec", "tree_shardings", "shard", "constrain", "shard_model", "global_batch", "process_rows",
           "DistributedInfo", "initialize_distributed", "barrier", "MemoryBytes", "memory_bytes",
           "host_devices_env"]

DATA, FSDP = "data", "fsdp"


def host_devices_env(n: int, env: dict | None = None) -> dict[str, str]:
  """The environment (``env``, default this process's) for a child process that sees ``n`` CPU devices
  (``--xla_force_host_platform_device_count``); XLA flags already set are kept, the device count added last."""
  env = dict(os.environ if env is None else env)
  return {**env, "JAX_PLATFORMS": "cpu",
          "XLA_FLAGS": f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}".strip()}


@dataclasses.dataclass(frozen=True)
class ShardingRules:
  """How arrays are split over the mesh's ``axis``: along their largest dimension divisible by its size; arrays of
  fewer than ``min_size`` elements are replicated (default 2**14: norm scales and biases of models up to d_ff 16k
  stay whole; they are too small for the split to save memory but would each cost a collective)."""
  axis: str = FSDP
  min_size: int = 2 ** 14


def make_mesh(devices=None, fsdp: int = 1) -> Mesh:
  """A ``("data", "fsdp")`` mesh over ``devices`` (default: every device of every process, ``jax.devices()``),
  ``fsdp`` devices per parameter shard (-1: all of them) and the rest along ``"data"``. Devices are taken in
  ``jax.devices()`` order, so an fsdp group is a run of neighbouring devices (the GPUs of one host, TPU chips of
  one slice) and the slower links only carry the data-parallel gradient reduction."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  n = devices.size
  fsdp = n if fsdp == -1 else fsdp
  if fsdp < 1 or n % fsdp:
    raise ValueError(f"fsdp={fsdp} must be -1 or a divisor of the {n} devices")
  return Mesh(devices.reshape(n // fsdp, fsdp), (DATA, FSDP))


def fsdp_size(mesh: Mesh, rules: ShardingRules = ShardingRules()) -> int:
  """How many shards a split array has on ``mesh`` (1 when the mesh has no ``rules.axis``)."""
  return int(mesh.shape[rules.axis]) if rules.axis in mesh.axis_names else 1


def batch_spec(mesh: Mesh) -> P:
  """Rows of a batch over every mesh axis (data parallel over all devices)."""
  return P(tuple(mesh.axis_names))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, batch_spec(mesh))


def array_spec(shape: tuple[int, ...], n_shards: int, rules: ShardingRules = ShardingRules()) -> P:
  """PartitionSpec of one array: ``rules.axis`` on its largest dimension divisible by ``n_shards`` (the first
  such on ties), or replicated (small, scalar, nothing divisible, or n_shards == 1)."""
  if n_shards == 1 or math.prod(shape) < max(rules.min_size, 1) or not shape:
    return P()
  dims = [d for d in range(len(shape)) if shape[d] % n_shards == 0]
  if not dims:
    return P()
  best = max(dims, key=lambda d: (shape[d], -d))
  return P(*[rules.axis if d == best else None for d in range(len(shape))])


def _is_leaf(x) -> bool:
  return hasattr(x, "shape") and hasattr(x, "dtype")


def tree_shardings(tree, mesh: Mesh, rules: ShardingRules = ShardingRules()):
  """A NamedSharding for every array (or ShapeDtypeStruct) of ``tree``, by :func:`array_spec`."""
  n = fsdp_size(mesh, rules)
  return jax.tree.map(lambda x: NamedSharding(mesh, array_spec(tuple(np.shape(x)), n, rules)), tree)


def shard(tree, mesh: Mesh, rules: ShardingRules = ShardingRules(), dtype: str | None = None,
          may_alias: bool | None = None):
  """``tree`` placed on ``mesh`` by the rules; floating arrays cast to ``dtype`` first when given. An array
  already placed that way is not copied (unless may_alias=False)."""
  if dtype is not None:
    dt = jnp.dtype(dtype)
    tree = jax.tree.map(lambda x: x.astype(dt) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)
  return jax.device_put(tree, tree_shardings(tree, mesh, rules), may_alias=may_alias)


def constrain(tree, mesh: Mesh, rules: ShardingRules = ShardingRules()):
  """Inside jit: pin every array of ``tree`` (traced, shapes known) to its rule sharding, so a step's outputs
  (new parameters, optimizer state) come out split exactly like its inputs."""
  return jax.lax.with_sharding_constraint(tree, tree_shardings(tree, mesh, rules))


def shard_model(model: nnx.Module, mesh: Mesh, rules: ShardingRules = ShardingRules(),
                dtype: str | None = None) -> nnx.Module:
  """A frozen model (the teacher) with its state placed on ``mesh`` by the rules, floating parameters cast to
  ``dtype`` if given (e.g. "bfloat16": half the memory; the model's compute dtype, ``cfg.dtype``, is unchanged,
  so a float32-compute teacher upcasts each weight as it uses it). The model given is not modified."""
  graphdef, state = nnx.split(model)
  return nnx.merge(graphdef, shard(state, mesh, rules, dtype))


# ------------------------------------------------------------------------------------------------ batches


def process_rows(n_rows: int, sharding: NamedSharding) -> slice:
  """The contiguous rows of an ``[n_rows, ...]`` array that this process's devices hold under ``sharding``."""
  idx = sharding.addressable_devices_indices_map((n_rows,))
  spans = sorted({(s[0].start or 0, n_rows if s[0].stop is None else s[0].stop) for s in idx.values()})
  lo, hi = spans[0][0], spans[-1][1]
  covered = sum(b - a for a, b in spans)
  if covered != hi - lo:
    raise ValueError(f"this process's devices hold rows {spans} of {n_rows}: not one contiguous block; build "
                     "the mesh with make_mesh() (jax.devices() order keeps each process's devices together)")
  return slice(lo, hi)


def global_batch(batch: dict, mesh: Mesh) -> dict:
  """Every array of ``batch`` (the GLOBAL batch, the same on every process) as one global jax.Array split along
  axis 0 over all mesh devices. With one process this is ``jax.device_put``; with several, each process passes
  only its own rows (``jax.make_array_from_process_local_data``), so no host ever ships another host's data."""
  sharding, n = batch_sharding(mesh), mesh.size
  out = {}
  for k, v in batch.items():
    if np.ndim(v) == 0 or np.shape(v)[0] % n:
      raise ValueError(f"batch[{k!r}] has shape {np.shape(v)}: leading (batch) size not divisible by the "
                       f"{n} devices of the mesh")
    if jax.process_count() == 1:
      out[k] = jax.device_put(v, sharding)
    else:
      v = np.asarray(v)
      out[k] = jax.make_array_from_process_local_data(sharding, v[process_rows(v.shape[0], sharding)], v.shape)
  return out


# ------------------------------------------------------------------------------------------------ processes


@dataclasses.dataclass(frozen=True)
class DistributedInfo:
  """What :func:`initialize_distributed` found: this process's index, the process count, its local and the global
  device counts, and whether ``jax.distributed`` was initialised (by this call or before)."""
  process_id: int
  process_count: int
  local_devices: int
  global_devices: int
  initialized: bool


def _launched_as_several(env) -> bool:
  count = lambda key: int(env.get(key) or 1)
  hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or ""
  return (bool(env.get("JAX_COORDINATOR_ADDRESS")) or env.get("DSREPRO_DISTRIBUTED") == "1"
          or count("JAX_NUM_PROCESSES") > 1 or count("SLURM_NTASKS") > 1 or count("OMPI_COMM_WORLD_SIZE") > 1
          or len([h for h in hosts.split(",") if h.strip()]) > 1)


def initialize_distributed(env: dict | None = None) -> DistributedInfo:
  """Call ``jax.distributed.initialize()`` when the environment says several processes were launched; call it
  on every process before any other JAX call. A single process (laptop, one GPU, Colab) is left alone.

  Detected launches (``env`` defaults to ``os.environ``):

  * Explicit, any machines (e.g. one process per GPU on a multi-GPU host, or one per host): set on each process
    ``JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=N JAX_PROCESS_ID=i`` (optionally
    ``JAX_LOCAL_DEVICE_IDS=i`` to give process i its own GPU), e.g. for 2 hosts with 8 GPUs each (one process per
    host, 8 local devices)::

      JAX_COORDINATOR_ADDRESS=10.0.0.1:1234 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 dsrepro ...   # on host 0
      JAX_COORDINATOR_ADDRESS=10.0.0.1:1234 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=1 dsrepro ...   # on host 1

  * SLURM (``srun``, SLURM_NTASKS > 1) and Open MPI (``mpirun``, OMPI_COMM_WORLD_SIZE > 1): JAX's own detection.
  * A Cloud TPU pod slice (e.g. v5e-32: 8 hosts x 4 chips): the same command on every worker, with
    ``DSREPRO_DISTRIBUTED=1`` (or TPU_WORKER_HOSTNAMES listing several hosts, as on GKE)::

      gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all \\
        --command="cd dsrepro && DSREPRO_DISTRIBUTED=1 .venv/bin/dsrepro ..."

  Then ``make_mesh(fsdp=k)`` spans every device of every process."""
  env = os.environ if env is None else env
  already = jax.distributed.is_initialized()
  if not already and _launched_as_several(env):
    kw: dict[str, Any] = {}
    if env.get("JAX_COORDINATOR_ADDRESS") and env.get("JAX_NUM_PROCESSES"):
      kw = dict(coordinator_address=env["JAX_COORDINATOR_ADDRESS"], num_processes=int(env["JAX_NUM_PROCESSES"]),
                process_id=int(env.get("JAX_PROCESS_ID", "0")))
    jax.distributed.initialize(**kw)
    already = True
  return DistributedInfo(process_id=jax.process_index(), process_count=jax.process_count(),
                         local_devices=jax.local_device_count(), global_devices=jax.device_count(),
                         initialized=already)


def barrier(name: str) -> None:
  """Wait until every process reaches ``barrier(name)`` (no-op with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


# ------------------------------------------------------------------------------------------------ memory


@dataclasses.dataclass(frozen=True)
class MemoryBytes:
  """Per-device bytes of a compiled program (``compiled.memory_analysis()``): inputs, outputs, outputs that
  reuse donated inputs, temporaries; ``peak`` = arguments + outputs - aliased + temporaries."""
  arguments: int
  outputs: int
  aliased: int
  temporaries: int

  @property
  def peak(self) -> int:
    return self.arguments + self.outputs - self.aliased + self.temporaries


def memory_bytes(compiled) -> MemoryBytes:
  """The per-device :class:`MemoryBytes` of a ``jax.stages.Compiled`` (an SPMD program is compiled per device)."""
  m = compiled.memory_analysis()
  return MemoryBytes(arguments=int(m.argument_size_in_bytes), outputs=int(m.output_size_in_bytes),
                     aliased=int(m.alias_size_in_bytes), temporaries=int(m.temp_size_in_bytes))
