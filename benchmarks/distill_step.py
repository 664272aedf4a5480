"""Wall time per distillation step: on-policy GKD (student samples, regenerated every step) vs SupervisedKD.

Same batch for both: 16 rows of a 128-token prompt; SupervisedKD trains on 128 fixed target tokens (row width 256),
GKD first samples 128 new tokens from the current student with the jitted KV-cached sampler (T = 1; random models
almost never emit eos, so every row runs the full 128 tokens: the worst case) and trains on [prompt + sample]
(row width 256). Student: garden "nano", teacher: garden "micro", vocab 2048, Adafactor. Each step is timed end to
end from train_loop's per-step metrics (log_every=1 syncs on the loss every step), compilation excluded (the first
``--warmup`` steps); the median over ``--steps`` steps is reported. The sampler alone is also timed, and its
trace count checked (one compile for the whole run). With ``--rounds 2`` (default) the runs go in ABBA order and
each algorithm's steps from both its runs are pooled. Writes benchmarks/results/distill_step.json.

  .venv/bin/python benchmarks/distill_step.py [--steps 10] [--warmup 2] [--rounds 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from dsrepro.sd import decode
from dsrepro.kd.distill import ALGORITHMS, distill
from dsrepro.models.transformer import count_params, garden_config, make_model
from dsrepro.train import TrainConfig

VOCAB, BATCH, PROMPT, NEW, N_DATA = 2048, 16, 128, 128, 64
PAD, BOS, EOS = 0, 1, 2
OUT = Path(__file__).parent / "results" / "distill_step.json"


def synthetic_data(seed=0) -> dict:
  """N_DATA rows: [bos] + 127 prompt tokens + 127 target tokens + [eos] (width 256), mask on target + eos."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(3, VOCAB, (N_DATA, PROMPT + NEW)).astype(np.int32)
  tokens[:, 0], tokens[:, -1] = BOS, EOS
  mask = np.zeros(tokens.shape, np.float32)
  mask[:, PROMPT:] = 1.0
  return {"tokens": tokens, "loss_mask": mask, "prompt_len": np.full(N_DATA, PROMPT, np.int32)}


def step_times(name, student, teacher, data, steps, warmup) -> dict:
  kd = dataclasses.replace(ALGORITHMS[name], max_new_tokens=NEW)
  tc = TrainConfig(steps=warmup + steps, batch_size=BATCH, learning_rate=0.1, ckpt_every=0, log_every=1)
  traces0 = decode.TRACE_COUNT["generate"]
  with tempfile.TemporaryDirectory() as run_dir:
    distill(student, teacher, kd, tc, data, run_dir, pad_id=PAD, eos_id=EOS, desc=name)
    recs = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
  elapsed = np.array([r["elapsed"] for r in recs])
  return {"algorithm": name, "data": kd.data, "divergence": kd.divergence, "first_step_s": float(elapsed[0]),
          "step_s": np.diff(elapsed)[warmup - 1:].tolist(), "sampler_traces": decode.TRACE_COUNT["generate"] - traces0}


def _pool(runs_: list[dict]) -> dict:
  step_s = np.concatenate([r["step_s"] for r in runs_])
  return {"algorithm": runs_[0]["algorithm"], "data": runs_[0]["data"], "divergence": runs_[0]["divergence"],
          "runs": len(runs_), "steps_timed": int(len(step_s)), "step_s_median": float(np.median(step_s)),
          "step_s_min": float(np.min(step_s)), "step_s_max": float(np.max(step_s)),
          "first_step_s_incl_compile": runs_[0]["first_step_s"], "first_step_s_later_runs": [r["first_step_s"]
                                                                                             for r in runs_[1:]],
          "sampler_traces": sum(r["sampler_traces"] for r in runs_), "step_s_all": step_s.tolist()}


def sampler_time(student, data, reps=5) -> float:
  """Median seconds of one generate call (16 rows, 128-token prompts, 128 new tokens) after compiling."""
  cfg = decode.DecodeConfig(max_new_tokens=NEW, temperature=1.0, eos_id=EOS, pad_id=PAD)
  prompt, plen = data["tokens"][:BATCH, :PROMPT], data["prompt_len"][:BATCH]
  decode.generate(student, prompt, plen, cfg, jax.random.key(0)).tokens_BxN.block_until_ready()
  times = []
  for i in range(reps):
    t0 = time.perf_counter()
    decode.generate(student, prompt, plen, cfg, jax.random.key(i + 1)).tokens_BxN.block_until_ready()
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--steps", type=int, default=10)
  ap.add_argument("--warmup", type=int, default=2)
  ap.add_argument("--rounds", type=int, default=2, choices=(1, 2))
  ap.add_argument("--out", type=Path, default=OUT)
  args = ap.parse_args()
  if args.warmup < 1 or args.steps < 2:
    raise ValueError(f"need --warmup >= 1 and --steps >= 2, got {args.warmup} and {args.steps}")
  s_cfg = garden_config("nano", VOCAB, max_len=PROMPT + NEW)
  t_cfg = garden_config("micro", VOCAB, max_len=PROMPT + NEW)
  student, teacher, data = make_model(s_cfg, 0), make_model(t_cfg, 1), synthetic_data()
  # ABBA order (supervised, gkd, gkd, supervised): on a shared machine the load drifts; alternating the order and
  # pooling the steps of both runs per algorithm cancels a linear drift. Later runs reuse the compiled programs.
  load, timed = [os.getloadavg()[0]], {"supervised_kd": [], "gkd": []}
  for name in ("supervised_kd", "gkd", "gkd", "supervised_kd")[:2 * args.rounds]:
    timed[name].append(step_times(name, student, teacher, data, args.steps, args.warmup))
    load.append(os.getloadavg()[0])
  sup, gkd = (_pool(timed[name]) for name in ("supervised_kd", "gkd"))
  gen = sampler_time(student, data)
  load.append(os.getloadavg()[0])
  dev = jax.devices()[0]
  result = {
      "jax": jax.__version__, "backend": jax.default_backend(), "device": dev.device_kind,
      "n_devices": jax.device_count(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
      "date": time.strftime("%Y-%m-%d %H:%M:%S"),
      "setup": {"student": "nano", "teacher": "micro", "student_params": count_params(s_cfg),
                "teacher_params": count_params(t_cfg), "vocab": VOCAB, "batch": BATCH, "prompt_len": PROMPT,
                "new_tokens": NEW, "row_width": PROMPT + NEW, "optimizer": "adafactor"},
      "supervised_kd": sup, "gkd": gkd, "sampler_s_median": gen,
      "ratio_gkd_over_supervised": gkd["step_s_median"] / sup["step_s_median"],
      "ratio_expected_from_sampler": (sup["step_s_median"] + gen) / sup["step_s_median"],
      "loadavg_1m_start_then_after_each_run": load,
      "note": "2-core CPU shared with other engineers; the loadavg column shows how busy it was",
  }
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=1) + "\n")
  print(f"jax {jax.__version__} on {jax.device_count()} x {dev.device_kind} ({jax.default_backend()}), "
        f"loadavg 1m {'/'.join(f'{x:.1f}' for x in load)}")
  for r in (sup, gkd):
    print(f"{r['algorithm']:14} step median {1e3 * r['step_s_median']:8.1f} ms (min {1e3 * r['step_s_min']:.1f}, "
          f"max {1e3 * r['step_s_max']:.1f}), first step {r['first_step_s_incl_compile']:.1f} s, "
          f"sampler traces {r['sampler_traces']}")
  print(f"sampler alone {1e3 * gen:.1f} ms; GKD / SupervisedKD = {result['ratio_gkd_over_supervised']:.2f} "
        f"(expected from the sampler time: {result['ratio_expected_from_sampler']:.2f})")
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
