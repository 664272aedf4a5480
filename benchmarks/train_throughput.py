"""Training throughput of dsrepro.train.train_loop for garden sizes, on whatever jax.devices() offers.

Synthetic uniform-random tokens (throughput does not depend on the data), vocab 2048, seq len 256, batch 16,
the default optimizer (Adafactor). Each step is timed end to end from the per-step metrics (log_every=1 forces a
host sync on the loss every step, so a step's time includes batch_fn, dispatch and compute). The first
``--warmup`` steps (compilation) are excluded. Writes benchmarks/results/train_throughput.json and prints a table.

  .venv/bin/python benchmarks/train_throughput.py [--sizes nano mini] [--steps 30] [--warmup 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from dsrepro.models.transformer import count_params, garden_config, make_model
from dsrepro.train import TrainConfig, sft_loss, train_loop

VOCAB, SEQ, BATCH = 2048, 256, 16
OUT = Path(__file__).parent / "results" / "train_throughput.json"


def synthetic_batch(step, model, key):
  del step, model
  tokens = np.asarray(jax.random.randint(key, (BATCH, SEQ), 0, VOCAB), np.int32)
  return {"tokens": tokens, "loss_mask": np.ones((BATCH, SEQ), np.float32)}


def bench(size: str, steps: int, warmup: int) -> dict:
  cfg = garden_config(size, VOCAB, max_len=SEQ)
  tc = TrainConfig(steps=warmup + steps, batch_size=BATCH, learning_rate=1e-2, ckpt_every=0, log_every=1)
  load_before = os.getloadavg()
  with tempfile.TemporaryDirectory() as run_dir:
    t0 = time.perf_counter()
    train_loop(make_model(cfg, 0), sft_loss, synthetic_batch, tc, run_dir, desc=size)
    wall = time.perf_counter() - t0
    recs = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
  elapsed = np.array([r["elapsed"] for r in recs])
  step_s = np.diff(elapsed)[warmup - 1:] if warmup else np.diff(np.concatenate([[0.0], elapsed]))
  return {
      "size": size, "params": count_params(cfg), "vocab": VOCAB, "seq_len": SEQ, "batch": BATCH,
      "optimizer": tc.optimizer, "steps_timed": int(len(step_s)), "warmup_steps": warmup,
      "first_step_s": float(elapsed[0]), "step_s_median": float(np.median(step_s)),
      "step_s_mean": float(np.mean(step_s)), "tokens_per_s": float(BATCH * SEQ / np.median(step_s)),
      "final_loss": recs[-1]["loss"], "wall_s_incl_compile_and_ckpt": wall,
      "loadavg_1m_before_after": [load_before[0], os.getloadavg()[0]],
  }


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--sizes", nargs="+", default=["nano", "mini"])
  ap.add_argument("--steps", type=int, default=30)
  ap.add_argument("--warmup", type=int, default=3)
  ap.add_argument("--out", type=Path, default=OUT)
  args = ap.parse_args()
  if args.warmup < 1 or args.steps < 2:
    raise ValueError(f"need --warmup >= 1 and --steps >= 2, got {args.warmup} and {args.steps}")
  rows = [bench(size, args.steps, args.warmup) for size in args.sizes]
  dev = jax.devices()[0]
  result = {
      "jax": jax.__version__, "backend": jax.default_backend(), "device": dev.device_kind,
      "n_devices": jax.device_count(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
      "date": time.strftime("%Y-%m-%d %H:%M:%S"), "results": rows,
      "note": "2-core CPU shared with other engineers; loadavg columns show how busy it was",
  }
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=1) + "\n")
  print(f"jax {jax.__version__} on {jax.device_count()} x {dev.device_kind} ({jax.default_backend()})")
  print(f"{'size':6} {'params':>9} {'step ms':>9} {'tokens/s':>10} {'1st step s':>10} {'load 1m':>12}")
  for r in rows:
    load = "/".join(f"{x:.1f}" for x in r["loadavg_1m_before_after"])
    print(f"{r['size']:6} {r['params']:>9,} {1e3 * r['step_s_median']:>9.1f} {r['tokens_per_s']:>10,.0f} "
          f"{r['first_step_s']:>10.2f} {load:>12}")
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
