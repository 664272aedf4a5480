"""FSDP sharding (dsrepro.sharding + train_loop): partition rules, equal losses on 1 vs 8 forced host devices, exact
resume of sharded state, a bf16 sharded frozen teacher, the memory-fit proof from the compiled memory analysis,
and a 2-process (multi-host) run. Multi-device checks run in subprocesses: XLA_FLAGS must be set before jax is
imported."""
import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from dsrepro import sharding
from dsrepro.models.transformer import ModelConfig, make_model

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, *args, devices: int = 8, env_extra: dict | None = None, timeout: int = 400):
  env = {**sharding.host_devices_env(devices), "PYTHONPATH": str(REPO), **(env_extra or {})}  # conftest's flags kept
  return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], env=env, cwd=REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _check(proc, marker: str, timeout: int = 400) -> str:
  out, _ = proc.communicate(timeout=timeout)
  assert proc.returncode == 0 and marker in out, out[-4000:]
  return out


def test_array_spec_rules():
  rules = sharding.ShardingRules(min_size=1024)
  spec = lambda shape, n=8: sharding.array_spec(shape, n, rules)
  assert spec((50304, 2048)) == P("fsdp", None)          # embedding: the vocab axis (largest, divisible)
  assert spec((2048, 8192)) == P(None, "fsdp")           # MLP up kernel: d_ff
  assert spec((1027, 256)) == P(None, "fsdp")            # vocab not divisible: the next largest dimension
  assert spec((512, 512)) == P("fsdp", None)             # ties: the first
  assert spec((8192,)) == P("fsdp")                      # a large vector
  assert spec((512,)) == P() and spec(()) == P()         # small, scalar: replicated
  assert spec((1001, 1003)) == P()                       # nothing divisible
  assert spec((2048, 8192), 1) == P()                    # one shard: replicated
  assert sharding.array_spec((100, 128), 2) == P()       # default min_size 2**14 keeps 100 x 128 whole
  assert sharding.array_spec((128, 128), 2) == P("fsdp", None)


def test_single_device_mesh_batch_and_rows():
  mesh = sharding.make_mesh()
  assert mesh.axis_names == ("data", "fsdp") and mesh.size == jax.device_count()
  with pytest.raises(ValueError, match="must be -1 or a divisor"):
    sharding.make_mesh(fsdp=3 * jax.device_count() + 1)
  batch = {"tokens": np.arange(8 * 4, dtype=np.int32).reshape(8, 4)}
  placed = sharding.global_batch(batch, mesh)["tokens"]
  assert np.array_equal(np.asarray(placed), batch["tokens"])
  assert sharding.process_rows(8, sharding.batch_sharding(mesh)) == slice(0, 8)
  with pytest.raises(ValueError, match="not divisible"):
    sharding.global_batch({"x": np.zeros(())}, mesh)


def test_initialize_distributed_detection():
  several = sharding._launched_as_several
  assert not several({})
  assert not several({"SLURM_NTASKS": "1", "TPU_WORKER_HOSTNAMES": "localhost"})
  assert several({"JAX_COORDINATOR_ADDRESS": "h0:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"})
  assert several({"SLURM_NTASKS": "16"}) and several({"OMPI_COMM_WORLD_SIZE": "2"})
  assert several({"TPU_WORKER_HOSTNAMES": "t1-w-0,t1-w-1"}) and several({"DSREPRO_DISTRIBUTED": "1"})
  info = sharding.initialize_distributed({})  # one process: left alone
  assert info.process_count == 1 and info.global_devices == jax.device_count() and not info.initialized


def test_shard_model_casts_frozen_teacher_to_bf16():
  cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=8)
  model = make_model(cfg, 0)
  half = sharding.shard_model(model, sharding.make_mesh(), dtype="bfloat16")
  dtypes = {x.dtype for x in jax.tree.leaves(nnx.state(half, nnx.Param))}
  assert dtypes == {jnp.dtype(jnp.bfloat16)}
  assert {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype(jnp.float32)}
  tokens = jnp.arange(16, dtype=jnp.int32).reshape(2, 8) % 64
  np.testing.assert_allclose(half(tokens)[0], model(tokens)[0], atol=0.05)


EIGHT_DEVICES = textwrap.dedent("""
  import json, sys, jax, jax.numpy as jnp, numpy as np
  from flax import nnx
  from jax.sharding import PartitionSpec as P
  from dsrepro import sharding
  from dsrepro.kd.distill import make_kd_loss
  from dsrepro.kd.recipes import KDConfig
  from dsrepro.models.transformer import ModelConfig, make_model
  from dsrepro.train import TrainConfig, make_mesh, sft_loss, train_loop, lower_train_step
  out = sys.argv[1]
  assert jax.device_count() == 8
  rules = sharding.ShardingRules(min_size=256)  # tiny model: split everything of >= 256 elements
  cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=16)
  tokens = np.random.default_rng(0).integers(0, 64, (16, 16)).astype(np.int32)
  mask = np.ones((16, 16), np.float32); mask[:, :4] = 0
  batch_fn = lambda step, model, key: {"tokens": np.roll(tokens, 3 * step, 0), "loss_mask": mask}
  meshes = {"one": make_mesh(jax.devices()[:1]), "fsdp8": sharding.make_mesh(fsdp=8),
            "data2xfsdp4": sharding.make_mesh(fsdp=4)}
  log = lambda d: [json.loads(l) for l in open(f"{d}/metrics.jsonl")]
  leaves = lambda m: jax.tree.leaves(nnx.state(m, nnx.Param))
  report = {}

  # 1. SFT: losses and parameters of 4 steps, 1 device vs FSDP over 8 and data 2 x fsdp 4
  for opt, names in (("adamw", ("one", "fsdp8", "data2xfsdp4")), ("adafactor", ("one", "fsdp8"))):
    tc = TrainConfig(steps=4, batch_size=16, learning_rate=1e-2, optimizer=opt, ckpt_every=2, log_every=1)
    models = {n: train_loop(make_model(cfg, 0), sft_loss, batch_fn, tc, f"{out}/{opt}-{n}", mesh=meshes[n],
                            rules=rules) for n in names}
    for n in names[1:]:
      for a, b in zip(log(f"{out}/{opt}-one"), log(f"{out}/{opt}-{n}")):
        for k in ("loss", "grad_norm"):
          np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
      for a, b in zip(leaves(models["one"]), leaves(models[n])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-5)
    report[opt] = {n: [r["loss"] for r in log(f"{out}/{opt}-{n}")] for n in names}
    up = models["fsdp8"].blocks[0].mlp.up.kernel.get_value()
    assert up.sharding.spec == P(None, "fsdp") and up.sharding.shard_shape(up.shape) == (32, 8), up.sharding
    assert models["fsdp8"].blocks[0].ln1.scale.get_value().sharding.is_fully_replicated

  # 2. exact resume of sharded params + optimizer state: stopped after 2 updates, resumed -> bit-identical
  tc = TrainConfig(steps=4, batch_size=16, learning_rate=1e-2, optimizer="adamw", ckpt_every=2, log_every=1)
  d = f"{out}/resume"
  train_loop(make_model(cfg, 0), sft_loss, batch_fn, tc, d, mesh=meshes["fsdp8"], rules=rules, stop_after=2)
  resumed = train_loop(make_model(cfg, 0), sft_loss, batch_fn, tc, d, mesh=meshes["fsdp8"], rules=rules)
  straight = train_loop(make_model(cfg, 0), sft_loss, batch_fn, tc, f"{out}/adamw-fsdp8", mesh=meshes["fsdp8"],
                        rules=rules)
  assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(leaves(resumed), leaves(straight)))
  assert [r["loss"] for r in log(d)] == report["adamw"]["fsdp8"]

  # 3. KD with the frozen teacher in bf16, sharded like the student (FKL, AdaSPEC's and DistillSpec's loss)
  tcfg = ModelConfig(vocab_size=64, d_model=64, n_layers=2, n_heads=4, d_ff=128, max_len=16)
  kd_logs = {}
  for n in ("one", "fsdp8"):
    teacher = sharding.shard_model(make_model(tcfg, 1), meshes[n], rules, dtype="bfloat16")
    if n == "fsdp8":
      emb = teacher.embed.embedding.get_value()
      assert emb.dtype == jnp.bfloat16 and emb.sharding.spec == P("fsdp", None), emb.sharding
    tc = TrainConfig(steps=3, batch_size=16, learning_rate=1e-2, optimizer="adamw", ckpt_every=0, log_every=1)
    train_loop(make_model(cfg, 0), make_kd_loss(KDConfig()), batch_fn, tc, f"{out}/kd-{n}", mesh=meshes[n],
               rules=rules, frozen={"teacher": teacher})
    kd_logs[n] = [r["loss"] for r in log(f"{out}/kd-{n}")]
  np.testing.assert_allclose(kd_logs["one"], kd_logs["fsdp8"], rtol=1e-5, atol=1e-6)
  report["kd_bf16_teacher"] = kd_logs

  # 4. memory fit: a 17M-parameter model + AdamW state does not fit a 256 MiB per-device cap replicated on 8
  #    devices, and fits with FSDP (per-device bytes of the compiled SPMD program)
  big = ModelConfig(vocab_size=8192, d_model=512, n_layers=4, n_heads=8, d_ff=2048, max_len=64)
  abstract = nnx.eval_shape(lambda: make_model(big))
  tc = TrainConfig(steps=10, batch_size=8, optimizer="adamw")
  b = {"tokens": jax.ShapeDtypeStruct((8, 64), jnp.int32), "loss_mask": jax.ShapeDtypeStruct((8, 64), jnp.float32)}
  cap = 256 * 2**20
  mem = {}
  for n, mesh in (("replicated", make_mesh()), ("fsdp8", meshes["fsdp8"])):
    lowered = lower_train_step(abstract, sft_loss, tc, b, mesh)
    m = sharding.memory_bytes(lowered.compile())
    mem[n] = dict(arguments=m.arguments, temporaries=m.temporaries, peak=m.peak)
  assert mem["replicated"]["peak"] > cap > mem["fsdp8"]["peak"], mem
  assert mem["replicated"]["arguments"] > 7 * mem["fsdp8"]["arguments"], mem
  report["memory_bytes_per_device"] = mem
  print("REPORT " + json.dumps(report))
  print("EIGHT_DEVICES_OK")
""")


@pytest.mark.slow
def test_fsdp_on_8_devices_matches_one_device(tmp_path):
  out = _check(_run(EIGHT_DEVICES, tmp_path), "EIGHT_DEVICES_OK")
  report = json.loads(next(line for line in out.splitlines() if line.startswith("REPORT "))[7:])
  print(json.dumps(report, indent=1))


MULTI_PROCESS = textwrap.dedent("""
  import json, sys, jax, numpy as np
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives between processes
  from dsrepro import sharding
  info = sharding.initialize_distributed()
  from dsrepro.models.transformer import ModelConfig, make_model
  from dsrepro.train import TrainConfig, sft_loss, train_loop
  cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=16)
  tokens = np.random.default_rng(0).integers(0, 64, (16, 16)).astype(np.int32)
  mask = np.ones((16, 16), np.float32)
  batch_fn = lambda step, model, key: {"tokens": np.roll(tokens, 3 * step, 0), "loss_mask": mask}
  tc = TrainConfig(steps=3, batch_size=16, learning_rate=1e-2, optimizer="adamw", ckpt_every=2, log_every=1)
  train_loop(make_model(cfg, 0), sft_loss, batch_fn, tc, sys.argv[1], mesh=sharding.make_mesh(fsdp=4),
             rules=sharding.ShardingRules(min_size=256))
  print(f"PROCESS_OK {info.process_id}/{info.process_count} devices {info.local_devices}/{info.global_devices}")
""")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
  """Two processes x 2 CPU devices (jax.distributed over localhost, like two hosts) train the same FSDP-4 model
  as one process with 4 devices: same losses, one metrics file, one DONE."""
  port = _free_port()
  procs = [_run(MULTI_PROCESS, tmp_path / "two", devices=2, env_extra={
      "JAX_COORDINATOR_ADDRESS": f"localhost:{port}", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)})
      for i in range(2)]
  outs = [_check(p, f"PROCESS_OK {i}/2 devices 2/4", timeout=300) for i, p in enumerate(procs)]
  _check(_run(MULTI_PROCESS, tmp_path / "one", devices=4), "PROCESS_OK 0/1 devices 4/4", timeout=300)
  recs = {n: [json.loads(l) for l in (tmp_path / n / "metrics.jsonl").read_text().splitlines()] for n in ("one", "two")}
  assert [r["step"] for r in recs["two"]] == [1, 2, 3], outs[0][-2000:]  # written once, by process 0
  np.testing.assert_allclose([r["loss"] for r in recs["two"]], [r["loss"] for r in recs["one"]], rtol=1e-6)
  assert (tmp_path / "two" / "DONE").is_file()


def test_host_devices_env_keeps_the_xla_flags_set():
  env = sharding.host_devices_env(4, {"XLA_FLAGS": "--xla_backend_optimization_level=0", "HOME": "/h"})
  assert env["XLA_FLAGS"] == "--xla_backend_optimization_level=0 --xla_force_host_platform_device_count=4"
  assert env["JAX_PLATFORMS"] == "cpu" and env["HOME"] == "/h"
  assert sharding.host_devices_env(2, {})["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
