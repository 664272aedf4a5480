"""Would ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` make CPU training faster without slowing batch-1 speculative
decoding? Measured on 2026-12-07 and NOT adopted: the cpu target's train step was 1-22% faster per round, but in
the second run (the profiles' own shapes) every batch-1 SD call was slower (15.3 -> 19.6, 15.4 -> 20.8, 19.3 -> 25.7
ms in its three rounds; the first run had them even), and batch-1 SD is what the wall-time claims measure.

  .venv/bin/python benchmarks/host_malloc.py [--rounds 3] [--steps 8]    # ~9 min on the 2-core CPU

Why: XLA:CPU allocates each execution's temporaries with ``posix_memalign`` from a worker thread. glibc serves a
block that large (the quick profile's micro train step: one 205 MB temporary) with a fresh ``mmap`` and gives it
back with ``munmap`` when the step ends, so every step page-faults it in again, 4 KB at a time (~52k faults and
~0.18 s of system time per micro step here, found with ``perf stat -e page-faults`` and ``strace -k``). The
malloc options that keep freed memory (``M_MMAP_MAX = 0``) cannot help: a worker thread's arena must ``mmap``
anything above 64 MB, and forcing one arena (``M_ARENA_MAX = 1``) made batch-1 SD calls up to 1.5x slower (lock
contention). ``hugetlb=1`` keeps the mmap but asks for transparent huge pages (``madvise`` mode, the default of
most distributions), so the block faults in 2 MB pages; a plausible cost is that every smaller block it touches
also faults in (and is zeroed) 2 MB at a time.

Each setting runs in fresh processes (glibc reads its tunables at start-up); rounds alternate the settings so the
VM's drift hits both alike. Per child: the median train step (AdamW, after 3 warm-up steps) of the ``quick`` and
the ``cpu`` profile's target at its pretraining shape (the profile's vocab, batch and context length), with the
process's minor page faults and system time; and the median batch-1 call of speculative decoding with the
``quick`` pair (random weights, gamma 5, T = 1, the profile's prompt and new-token lengths). Appends one run to
``benchmarks/results/host_malloc.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).parent / "results" / "host_malloc.json"
SETTINGS = {"default": None, "hugetlb": "glibc.malloc.hugetlb=1"}
TRAIN = ("quick", "cpu")  # profiles whose target's pretraining step is timed
WARMUP = 3


def train_shape(profile: str) -> dict:
  """The target's pretraining step of ``profile``: size, vocab, batch and row length (packed context)."""
  from dsrepro.repro.artefacts import context_len
  from dsrepro.repro.profiles import get_profile
  p = get_profile(profile)
  return dict(size=p.target_size, vocab=p.vocab_size, batch=p.pretrain.batch_size, seq=context_len(p))


def _usage() -> tuple[int, float]:
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_minflt, r.ru_stime


def child_train(profile: str, steps: int) -> dict:
  import jax
  import numpy as np

  from dsrepro.models.transformer import garden_config, make_model
  from dsrepro.train import TrainConfig, sft_loss, train_loop
  size, vocab, batch, seq = train_shape(profile).values()

  def batch_fn(step, model, key):
    del step, model
    return {"tokens": np.asarray(jax.random.randint(key, (batch, seq), 0, vocab), np.int32),
            "loss_mask": np.ones((batch, seq), np.float32)}

  tc = TrainConfig(steps=WARMUP + steps, batch_size=batch, learning_rate=1e-2, optimizer="adamw", ckpt_every=0,
                   log_every=1)
  with tempfile.TemporaryDirectory() as run_dir:
    train_loop(make_model(garden_config(size, vocab, max_len=seq), 0), sft_loss, batch_fn, tc, run_dir,
               desc=size)
    elapsed = [json.loads(line)["elapsed"] for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
  step_s = np.diff(elapsed)[WARMUP - 1:]
  return {"step_s": float(np.median(step_s))}


def child_sd(reps: int) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np

  from dsrepro.models.transformer import garden_config, make_model
  from dsrepro.repro.artefacts import context_len
  from dsrepro.repro.profiles import get_profile
  from dsrepro.sd.speculative import SpecConfig, speculative_generate
  p = get_profile("quick")
  vocab, prompt_len, new = p.vocab_size, p.max_prompt_len, p.max_new_tokens
  target = make_model(garden_config(p.target_size, vocab, max_len=context_len(p)), 0)
  draft = make_model(garden_config(p.draft_size, vocab, max_len=context_len(p)), 1)
  prompt = jnp.asarray(np.random.default_rng(0).integers(1, vocab, (1, prompt_len)), jnp.int32)
  plen = jnp.array([prompt_len], jnp.int32)
  cfg = SpecConfig(gamma=5, max_new_tokens=new, temperature=1.0)
  run = lambda k: jax.block_until_ready(speculative_generate(target, draft, prompt, plen, cfg, key=jax.random.key(k)))
  run(0)
  times = []
  for k in range(reps):
    t0 = time.perf_counter()
    run(k)
    times.append(time.perf_counter() - t0)
  return {"sd_call_s": float(np.median(times))}


def child(what: str, steps: int) -> dict:
  faults0, sys0 = _usage()
  out = child_train(what, steps) if what in TRAIN else child_sd(40)
  faults1, sys1 = _usage()  # compile and warm-up included: both settings pay them alike
  return {**out, "minor_faults": faults1 - faults0, "system_s": sys1 - sys0}


def spawn(what: str, setting: str, steps: int) -> dict:
  env = dict(os.environ)
  env.pop("GLIBC_TUNABLES", None)
  if SETTINGS[setting]:
    env["GLIBC_TUNABLES"] = SETTINGS[setting]
  proc = subprocess.run([sys.executable, __file__, "--child", what, "--steps", str(steps)], env=env, check=True,
                        capture_output=True, text=True)
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--steps", type=int, default=8)
  ap.add_argument("--child", choices=[*TRAIN, "sd"])
  ap.add_argument("--out", type=Path, default=OUT)
  args = ap.parse_args()
  if args.child:
    print(json.dumps(child(args.child, args.steps)))
    return
  if args.rounds < 1 or args.steps < 2:
    raise ValueError(f"need --rounds >= 1 and --steps >= 2, got {args.rounds} and {args.steps}")
  whats = [*TRAIN, "sd"]
  raw = {s: {w: [] for w in whats} for s in SETTINGS}
  for r in range(args.rounds):
    for setting in (list(SETTINGS) if r % 2 == 0 else list(SETTINGS)[::-1]):
      for w in whats:
        raw[setting][w].append(spawn(w, setting, args.steps))
        print(f"round {r + 1} {setting:8} {w:6} {raw[setting][w][-1]}", flush=True)

  def summary(rows: list[dict]) -> dict:
    return {k: {"median": statistics.median(x[k] for x in rows), "min": min(x[k] for x in rows),
                "max": max(x[k] for x in rows)} for k in rows[0]}

  result = {
      "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(), "cpu_count": os.cpu_count(),
      "libc": "".join(platform.libc_ver()), "rounds": args.rounds, "train_steps_timed": args.steps,
      "train_shapes": {t: train_shape(t) for t in TRAIN},
      "thp_enabled": Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
      if Path("/sys/kernel/mm/transparent_hugepage/enabled").exists() else None,
      "settings": {s: {"GLIBC_TUNABLES": SETTINGS[s], **{w: summary(raw[s][w]) for w in whats}} for s in SETTINGS},
      "raw": raw,
  }
  runs = json.loads(args.out.read_text())["runs"] if args.out.exists() else []
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps({"runs": runs + [result]}, indent=1) + "\n")
  for w in whats:
    key = "sd_call_s" if w == "sd" else "step_s"
    a, b = (result["settings"][s][w] for s in SETTINGS)
    print(f"{w:6} {key} median {1e3 * a[key]['median']:.1f} -> {1e3 * b[key]['median']:.1f} ms; minor faults "
          f"{a['minor_faults']['median']:.0f} -> {b['minor_faults']['median']:.0f}; system "
          f"{a['system_s']['median']:.1f} -> {b['system_s']['median']:.1f} s")
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
