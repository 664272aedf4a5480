"""Tests of the training loop, SFT, checkpoint/resume, run caching and data parallelism (tiny configs, CPU)."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from dsrepro import runs, train
from dsrepro.models.transformer import ModelConfig, make_model
from dsrepro.sharding import host_devices_env
from dsrepro.train import (TrainConfig, eval_loss, make_optimizer, make_schedule, sft_batch_fn, sft_loss,
                           train_loop, train_sft)

V, L = 50, 16
MCFG = ModelConfig(vocab_size=V, d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=L)
REPO = Path(__file__).resolve().parents[1]


def pattern_data(n, seed):
  """Each row counts up mod V from a random start (learnable: next = prev + 1); first token is not a target."""
  start = np.random.default_rng(seed).integers(0, V, size=(n, 1))
  tokens = ((start + np.arange(L)) % V).astype(np.int32)
  mask = np.ones((n, L), np.float32)
  mask[:, 0] = 0
  return {"tokens": tokens, "loss_mask": mask}


def records(run_dir):
  return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def leaves(model):
  return jax.tree.leaves(nnx.state(model, nnx.Param))


def test_sft_loss_decreases_and_model_reloads(tmp_path):
  data, held = pattern_data(64, 0), pattern_data(16, 1)
  cfg = TrainConfig(steps=40, batch_size=8, learning_rate=0.1, warmup_steps=4, log_every=10, eval_every=20,
                    ckpt_every=0)  # adafactor's learning rate is relative to the parameter RMS
  before = eval_loss(make_model(MCFG, seed=cfg.seed), held, batch_size=8)
  model = train_sft(MCFG, cfg, data, tmp_path / "sft", eval_data=held)
  after = eval_loss(model, held, batch_size=8)
  assert before > 3.0 and after < 0.25 * before, (before, after)
  recs = records(tmp_path / "sft")
  assert [r["step"] for r in recs] == [10, 20, 30, 40]
  assert recs[-1]["loss"] < recs[0]["loss"]
  assert "eval_loss" in recs[1] and "eval_loss" in recs[3] and "eval_loss" not in recs[0]
  assert abs(recs[-1]["eval_loss"] - after) < 1e-5
  assert all(r["tokens"] == 8 * (L - 1) and r["grad_norm"] > 0 for r in recs)
  done = json.loads((tmp_path / "sft" / "DONE").read_text())
  assert done["step"] == 40
  reloaded = runs.load_model(tmp_path / "sft")
  assert all(np.array_equal(a, b) for a, b in zip(leaves(model), leaves(reloaded)))


def test_eval_loss_is_token_weighted_and_padding_invariant():
  data = pattern_data(10, 2)
  data["loss_mask"][3:, 8:] = 0  # rows with fewer targets must count less
  model = make_model(MCFG, seed=3)
  logits, _ = model(jnp.asarray(data["tokens"]))
  logp = jax.nn.log_softmax(logits[:, :-1])
  nll = -np.take_along_axis(np.asarray(logp), data["tokens"][:, 1:, None], -1)[..., 0]
  expect = (nll * data["loss_mask"][:, 1:]).sum() / data["loss_mask"][:, 1:].sum()
  for bs in (3, 16):
    assert abs(eval_loss(model, data, batch_size=bs) - expect) < 1e-5
  loss, aux = sft_loss(model, {k: jnp.asarray(v) for k, v in data.items()})
  assert abs(float(loss) - expect) < 1e-5 and float(aux["tokens"]) == data["loss_mask"][:, 1:].sum()


def onpolicy_batch_fn(step, model, key):
  """Random prefixes continued by the model's greedy next token: the batch depends on the current model."""
  tokens = np.array(jax.random.randint(key, (4, L), 0, V), np.int32)
  logits, _ = model(jnp.asarray(tokens[:, : L // 2]))
  tokens[:, L // 2] = np.asarray(jnp.argmax(logits[:, -1], -1))
  return {"tokens": tokens, "loss_mask": np.ones((4, L), np.float32)}


def test_resume_is_exact(tmp_path):
  cfg = TrainConfig(steps=9, batch_size=4, learning_rate=1e-2, optimizer="adafactor", weight_decay=0.1,
                    warmup_steps=2, ckpt_every=3, log_every=1)
  full = train_loop(make_model(MCFG, 7), sft_loss, onpolicy_batch_fn, cfg, tmp_path / "full")
  # Killed after update 5 (last checkpoint at 3): updates 4 and 5 are redone on restart.
  part = train_loop(make_model(MCFG, 7), sft_loss, onpolicy_batch_fn, cfg, tmp_path / "part", stop_after=5)
  assert not runs.is_done(tmp_path / "part") and [r["step"] for r in records(tmp_path / "part")] == [1, 2, 3, 4, 5]
  assert not all(np.array_equal(a, b) for a, b in zip(leaves(part), leaves(full)))
  train._compiled_step.cache_clear()  # a restarted process compiles afresh
  seen = []

  def crash_at_7(s, m, k):
    if s == 7:
      raise KeyboardInterrupt("simulated crash")
    seen.append(s)
    return onpolicy_batch_fn(s, m, k)

  with pytest.raises(KeyboardInterrupt):  # resumes at 3, checkpoints 6, dies fetching batch 7
    train_loop(make_model(MCFG, 99), sft_loss, crash_at_7, cfg, tmp_path / "part")
  resumed = train_loop(make_model(MCFG, 99), sft_loss, lambda s, m, k: seen.append(s) or onpolicy_batch_fn(s, m, k),
                       cfg, tmp_path / "part")
  assert seen == [3, 4, 5, 6, 6, 7, 8]
  for a, b in zip(leaves(full), leaves(resumed)):
    assert np.array_equal(a, b)
  strip = lambda rs: [{k: v for k, v in r.items() if k != "elapsed"} for r in rs]
  assert strip(records(tmp_path / "full")) == strip(records(tmp_path / "part"))
  assert sorted(int(p.name) for p in (tmp_path / "part" / "ckpt").iterdir() if p.name.isdigit()) == [6, 9]


def test_finished_run_is_reused(tmp_path):
  cfg = TrainConfig(steps=3, batch_size=4, ckpt_every=0, log_every=1)
  config = {"model": MCFG, "train": cfg}
  run_dir = runs.run_dir_for(tmp_path, "sft", config)
  calls = []
  build = lambda d: train_loop(make_model(MCFG, 1), sft_loss,
                               lambda s, m, k: calls.append(s) or onpolicy_batch_fn(s, m, k), cfg, d)
  first = build(run_dir)
  assert calls == [0, 1, 2] and runs.is_done(run_dir)
  metrics = (run_dir / "metrics.jsonl").read_bytes()
  second = build(run_dir)
  again = train_loop(make_model(MCFG, 2), sft_loss, lambda s, m, k: 1 / 0, cfg, run_dir)
  assert calls == [0, 1, 2] and (run_dir / "metrics.jsonl").read_bytes() == metrics
  for a, b, c in zip(leaves(first), leaves(second), leaves(again)):
    assert np.array_equal(a, b) and np.array_equal(a, c)
  data = pattern_data(8, 0)
  sft_dir = tmp_path / "sft-direct"
  m1 = train_sft(MCFG, cfg, data, sft_dir)
  m2 = train_sft(MCFG, cfg, data, sft_dir)  # DONE: loaded, nothing trained
  assert all(np.array_equal(a, b) for a, b in zip(leaves(m1), leaves(m2)))


def test_run_dir_for_is_content_addressed(tmp_path):
  a = runs.run_dir_for(tmp_path, "sft", {"x": 1, "y": [1, 2], "cfg": TrainConfig(steps=5)})
  b = runs.run_dir_for(tmp_path, "sft", {"cfg": TrainConfig(steps=5), "y": (1, 2), "x": 1})
  c = runs.run_dir_for(tmp_path, "sft", {"x": 2, "y": [1, 2], "cfg": TrainConfig(steps=5)})
  d = runs.run_dir_for(tmp_path, "distill", {"x": 1, "y": [1, 2], "cfg": TrainConfig(steps=5)})
  assert a == b and a != c and a.name.startswith("sft-") and d.name.startswith("distill-")
  assert a.name[4:] == d.name[8:] and len(a.name) == len("sft-") + 12
  assert json.loads((a / "config.json").read_text())["config"]["cfg"]["steps"] == 5
  assert not runs.is_done(a)
  with pytest.raises(ValueError, match="not JSON"):
    runs.run_dir_for(tmp_path, "sft", {"f": object()})


@pytest.mark.parametrize("optimizer", ["adafactor", "adamw"])
@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_optimizers_and_schedules_step(optimizer, schedule):
  cfg = TrainConfig(steps=10, optimizer=optimizer, schedule=schedule, learning_rate=0.1, warmup_steps=4,
                    weight_decay=0.01)
  sched = make_schedule(cfg)
  lrs = np.array([float(sched(t)) for t in range(12)])
  np.testing.assert_allclose(lrs[:4], [0.025, 0.05, 0.075, 0.1], rtol=1e-6)
  if schedule == "constant":
    np.testing.assert_allclose(lrs[3:], 0.1, rtol=1e-6)
  else:
    assert np.all(np.diff(lrs[3:10]) < 0)
    np.testing.assert_allclose(lrs[9:], 0.01, rtol=1e-5)  # the last update (t = steps - 1) is at 10%
  _, params = nnx.split(make_model(MCFG, 0), nnx.Param)
  tx = make_optimizer(cfg)
  state = tx.init(params)
  batch = {k: jnp.asarray(v) for k, v in pattern_data(4, 0).items()}
  graphdef = nnx.graphdef(make_model(MCFG))

  @jax.jit
  def update(p, s):
    updates, s = tx.update(jax.grad(lambda q: sft_loss(nnx.merge(graphdef, q), batch)[0])(p), s, p)
    return optax.apply_updates(p, updates), s

  new = params
  for _ in range(2):
    new, state = update(new, state)
  diffs = [float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params))]
  assert all(np.isfinite(diffs)) and max(diffs) > 0


def test_clip_norm_clips_global_norm():
  grads = {"w": jnp.full((4, 4), 3.0), "b": jnp.full((4,), -2.0)}
  params = jax.tree.map(jnp.ones_like, grads)
  norm = float(optax.tree.norm(grads))
  clipped = make_optimizer(TrainConfig(optimizer="adamw", clip_norm=0.5, weight_decay=0.0))
  unclipped = make_optimizer(TrainConfig(optimizer="adamw", clip_norm=0.0, weight_decay=0.0))
  scaled = jax.tree.map(lambda g: g * 0.5 / norm, grads)
  u1, _ = clipped.update(grads, clipped.init(params), params)
  u2, _ = unclipped.update(scaled, unclipped.init(params), params)
  u3, _ = unclipped.update(grads, unclipped.init(params), params)
  for k in grads:  # adam's eps makes the clipped and raw updates differ (slightly) only if clipping happened
    np.testing.assert_allclose(u1[k], u2[k], rtol=1e-6)
    assert not np.allclose(u1[k], u3[k], rtol=1e-9, atol=0)


def test_bad_inputs_raise():
  for kw, bad in [({"optimizer": "sgd"}, "sgd"), ({"schedule": "linear"}, "linear"), ({"steps": 0}, "0"),
                  ({"learning_rate": -1.0}, "-1.0"), ({"clip_norm": -1.0}, "-1.0")]:
    with pytest.raises(ValueError, match=bad):
      TrainConfig(**kw)
  data = pattern_data(4, 0)
  with pytest.raises(ValueError, match="loss_mask"):
    sft_batch_fn({"tokens": data["tokens"], "loss_mask": data["loss_mask"][:, :-1]}, 2, 0)
  with pytest.raises(ValueError, match="vocab_size=50"):
    train_sft(MCFG, TrainConfig(steps=1, batch_size=2), {**data, "tokens": data["tokens"] + 40}, "/nonexistent/x")


def test_sft_batches_are_epoch_permutations():
  data = pattern_data(10, 0)
  data["tokens"][:, 0] = np.arange(10)  # row id
  bf = sft_batch_fn(data, 4, seed=3)
  ids = np.concatenate([bf(s, None, None)["tokens"][:, 0] for s in range(5)])  # 20 items = 2 epochs
  assert sorted(ids[:10]) == list(range(10)) and sorted(ids[10:]) == list(range(10))
  assert not np.array_equal(ids[:10], ids[10:])
  assert np.array_equal(bf(3, None, None)["tokens"], sft_batch_fn(data, 4, seed=3)(3, None, None)["tokens"])
  assert not np.array_equal(ids[:10], sft_batch_fn(data, 10, seed=4)(0, None, None)["tokens"][:, 0])


DATA_PARALLEL_SCRIPT = textwrap.dedent("""
  import sys, jax, numpy as np, pytest
  from flax import nnx
  from dsrepro.models.transformer import ModelConfig, make_model
  from dsrepro.train import TrainConfig, make_mesh, sft_loss, shard_batch, train_loop
  out = sys.argv[1]
  assert len(jax.devices()) == 8, jax.devices()
  mesh8, mesh1 = make_mesh(), make_mesh(jax.devices()[:1])
  assert mesh8.size == 8 and mesh8.axis_names == ("data", "fsdp") and mesh8.shape["fsdp"] == 1  # data parallel
  cfg = ModelConfig(vocab_size=50, d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=16)
  tc = TrainConfig(steps=1, batch_size=16, learning_rate=1e-2, optimizer="adamw", ckpt_every=0, log_every=1)
  tokens = np.random.default_rng(0).integers(0, 50, (16, 16)).astype(np.int32)
  batch = {"tokens": tokens, "loss_mask": np.ones((16, 16), np.float32)}
  sharding = shard_batch(batch, mesh8)["tokens"].sharding
  assert len(sharding.device_set) == 8 and sharding.shard_shape((16, 16)) == (2, 16), sharding
  batch_fn = lambda step, model, key: batch
  res = {name: train_loop(make_model(cfg, 0), sft_loss, batch_fn, tc, f"{out}/{name}", mesh=mesh)
         for name, mesh in (("one", mesh1), ("eight", mesh8))}
  params8 = jax.tree.leaves(nnx.state(res["eight"], nnx.Param))
  assert all(len(p.sharding.device_set) == 8 and p.sharding.is_fully_replicated for p in params8)
  import json
  r1, r8 = (json.loads(open(f"{out}/{name}/metrics.jsonl").read()) for name in ("one", "eight"))
  # Same math, different float32 summation order: a few ulps of a loss near 4 (ulp 4.8e-7).
  for k in ("loss", "grad_norm"):
    np.testing.assert_allclose(r1[k], r8[k], rtol=1e-6, atol=1e-6)
  assert r1["tokens"] == r8["tokens"] == 16 * 15 and r1["loss"] > 3
  p0 = jax.tree.leaves(nnx.state(make_model(cfg, 0), nnx.Param))
  assert not all(np.array_equal(a, b) for a, b in zip(p0, params8))
  for a, b in zip(jax.tree.leaves(nnx.state(res["one"], nnx.Param)), params8):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6)
  with pytest.raises(ValueError, match="batch_size=12.*8"):
    train_loop(make_model(cfg, 0), sft_loss, batch_fn, TrainConfig(steps=1, batch_size=12), f"{out}/bad")
  print("DATA_PARALLEL_OK")
""")


def test_data_parallel_matches_single_device(tmp_path):
  env = {**host_devices_env(8), "PYTHONPATH": str(REPO)}  # conftest's XLA flags kept
  proc = subprocess.run([sys.executable, "-c", DATA_PARALLEL_SCRIPT, str(tmp_path)], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0 and "DATA_PARALLEL_OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
