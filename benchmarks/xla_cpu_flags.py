"""Does an XLA:CPU library flag make the verify call cheaper? t_verify(gamma + 1) / t_target(1) per flag set.

  .venv/bin/python benchmarks/xla_cpu_flags.py [--size small] [--rounds 3]   # ~8 min on the 2-core CPU

Speculative decoding pays only when verifying gamma + 1 tokens costs about one target call (DistillSpec, arXiv
2310.08461, Sec. 2: the speedup model tau / (c gamma + 1) assumes it). On the 2-core CPU the ``cpu`` profile's
target (``small``, 9.4M parameters, vocab 4096) verifies 8 tokens in ~2 target calls (figures/cpu/REPORT.md). This
benchmark asks whether XLA:CPU's matmul libraries change that: for each flag set (``FLAG_SETS``: the default,
XNNPACK off, XNNPACK / YNNPACK dot fusions (``+dot`` = LIBRARY_FUSION_TYPE_DOT), oneDNN thunks, XNN graph fusion,
dots kept out of YNNPACK; names from ``XLA_FLAGS=--help`` of jaxlib 0.10.2) a fresh process (flags are read once per
process) measures the in-loop batch-1 latency (``evaluate.loop_latency``, the cpu profile's context 168 and cache
224) of 1, 4 and 8 tokens of a randomly initialised model; rounds alternate the flag sets so the VM's drift between
minutes hits them alike. Reports median, min and max over rounds, appended as one run to
``benchmarks/results/xla_cpu_flags.json``.

A ``jax.profiler`` trace is misleading here: traced, the 8-token call looked ~20% cheaper with its dots kept out of
YNNPACK (``ynn_no_individual_dot``); untraced, as measured here, it is ~12% dearer (the profiler's per-call cost
falls on the library calls).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

FLAG_SETS = {
    "default": "",
    "xnnpack_off": "--xla_cpu_use_xnnpack=false",
    "xnn_dot_fusion": "--xla_cpu_experimental_xnn_fusion_type=+dot",
    "ynn_dot_fusion": "--xla_cpu_experimental_ynn_fusion_type=+dot",
    "onednn": "--xla_cpu_use_onednn=true",
    "xnn_graph_greedy": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    # jaxlib 0.10.2 hands multi-row dots to YNNPACK by default (a ``jax.profiler`` trace shows ``ynn_fusion``
    # thunks for 8 tokens, XLA's own ``dot`` thunks for 1); these two keep the dots in XLA's own thunks.
    "ynn_no_individual_dot": "--xla_cpu_experimental_ynn_fusion_type=-individual_dot",
    "ynn_no_dot": "--xla_cpu_experimental_ynn_fusion_type=-individual_dot,-dot",
}
N_TOKENS = (1, 4, 8)

_CHILD = """
import json, sys
from dsrepro.models.transformer import garden_config, make_model
from dsrepro.sd import evaluate
size, context, cache_len, n_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
m = make_model(garden_config(size, 4096, max_len=cache_len + 8))
print(json.dumps({n: evaluate.loop_latency(m, int(n), context, cache_len=cache_len, calls=32, reps=7)
                  for n in n_tokens.split(",")}))
"""


def measure(flags: str, size: str, context: int, cache_len: int) -> dict[int, float]:
  env = {**os.environ, "XLA_FLAGS": flags}
  out = subprocess.run([sys.executable, "-c", _CHILD, size, str(context), str(cache_len),
                        ",".join(map(str, N_TOKENS))], env=env, capture_output=True, text=True, check=False)
  if out.returncode != 0:
    raise RuntimeError(f"XLA_FLAGS={flags!r} failed:\n{out.stderr[-2000:]}")
  return {int(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--size", default="small")
  ap.add_argument("--context", type=int, default=168)
  ap.add_argument("--cache-len", type=int, default=224)
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--sets", default=",".join(FLAG_SETS), help="comma-separated names of FLAG_SETS to run")
  ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "xla_cpu_flags.json"),
                  help="JSON file; a run is appended to its list of runs")
  args = ap.parse_args(argv)
  if args.rounds < 1:
    raise SystemExit(f"--rounds={args.rounds}: expected >= 1")
  sets = args.sets.split(",")
  unknown = [s for s in sets if s not in FLAG_SETS]
  if unknown:
    raise SystemExit(f"--sets: unknown {unknown}; expected names from {list(FLAG_SETS)}")
  from tqdm import tqdm
  raw = {name: [] for name in sets}
  for _ in tqdm(range(args.rounds), desc="rounds"):
    for name in sets:
      raw[name].append(measure(FLAG_SETS[name], args.size, args.context, args.cache_len))

  def summary(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}

  rows = {}
  for name, per_round in raw.items():
    row = {"xla_flags": FLAG_SETS[name]}
    for n in N_TOKENS:
      row[f"t{n}_ms"] = summary([r[n] * 1e3 for r in per_round])
      if n > 1:
        row[f"ratio_{n}_over_1"] = summary([r[n] / r[1] for r in per_round])
    rows[name] = row
  run = {"date": time.strftime("%Y-%m-%d %H:%M"), "size": args.size, "context": args.context,
         "cache_len": args.cache_len, "rounds": args.rounds,
         "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "flag_sets": rows}
  runs = []
  if os.path.exists(args.out):  # earlier runs are kept: compare flag sets only within one run (the VM drifts)
    with open(args.out) as f:
      runs = json.load(f)["runs"]
  result = {"runs": runs + [run]}
  tmp = args.out + ".tmp"
  with open(tmp, "w") as f:
    json.dump(result, f, indent=1)
  os.replace(tmp, args.out)
  for name in sets:
    row = rows[name]
    print(f"{name:18s} t1 {row['t1_ms']['median']:.2f} ms  t8 {row['t8_ms']['median']:.2f} ms  "
          f"t8/t1 {row['ratio_8_over_1']['median']:.2f} [{row['ratio_8_over_1']['min']:.2f}, "
          f"{row['ratio_8_over_1']['max']:.2f}]")


if __name__ == "__main__":
  main()
