"""The ``dsrepro`` command.

  dsrepro all --profile quick [--out figures] [--run-dir DIR]   SFT target + draft, then every notebook + REPORT.md
  dsrepro run NAME --profile quick [--out figures]               one notebook (e.g. fig2_kd_algorithms)
  dsrepro train --profile quick --task gsm8k                     SFT target + draft and their held-out losses
  dsrepro table NAME --profile smoke [--out DIR]                 build figure NAME's tables and print them (--out: save
                                                                 its CSVs and plot)
  dsrepro profiles                                               list the profiles
  dsrepro data                                                   where each task's files are, and whether they match
                                                                 the staged snapshot (data/manifest.json)
"""
from __future__ import annotations

import argparse
import shlex
import sys

from dsrepro.repro.profiles import PROFILES

TABLES = ("table_d1", "fig1", "fig2", "fig3a", "fig3b", "fig3c", "fig4", "fig5a", "fig5b", "fig6", "adaspec_table")


def _params(n: int) -> str:
  return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.0f}K"


def train(profile: str, task: str | None = None, run_dir=None) -> dict:
  """Train (or load) the SFT target and draft of ``task`` (default: the profile's first task); print and return
  their held-out losses."""
  from dsrepro import data
  from dsrepro.repro import artefacts as experiments
  from dsrepro.models.transformer import count_params
  from dsrepro.repro.profiles import get_profile
  p = get_profile(profile)
  task = task or p.tasks[0]
  if task not in data.TASKS:
    raise SystemExit(f"dsrepro: unknown task {task!r}; known tasks: {', '.join(data.TASKS)}")
  out = {}
  for role, size in (("target", p.target_size), ("draft", p.draft_size)):
    model, _ = experiments.sft_model(p, task, size, run_dir, which=role)
    out[role] = dict(size=size, params=count_params(model), loss=experiments.heldout_loss(p, task, model, run_dir))
  t, d = out["target"], out["draft"]
  print(f"[{p.name}/{task}] target ({t['size']}, {_params(t['params'])} params) held-out loss {t['loss']:.2f} | "
        f"draft ({d['size']}, {_params(d['params'])}) {d['loss']:.2f}", flush=True)
  return out


def _table(name: str, profile: str, run_dir=None, out=None):
  import pandas as pd

  from dsrepro.repro import figure, figures
  from dsrepro.repro.profiles import get_profile
  spec = figures.get(name)
  tables = figure.make(spec, get_profile(profile), run_dir, out)
  with pd.option_context("display.max_rows", 200, "display.max_columns", 30, "display.width", 200):
    for panel, df in tables.items():
      print(f"== {panel}")
      print(df.drop(columns=[c for c in df.columns if c.endswith("_per_example")]).to_string(index=False))
  if out:
    print("saved", ", ".join(f"{p}.csv" for p in spec.panels), f"and {spec.name}.png/.pdf in {out}")
  return tables


def _profiles():
  for name, p in PROFILES.items():
    print(f"{name:<6} tasks={','.join(p.tasks)} target={p.target_size} draft={p.draft_size} "
          f"garden={','.join(p.garden)} vocab={p.vocab_size} sft={p.sft_target.steps}/{p.sft_draft.steps} steps "
          f"kd={p.kd.steps} steps n_eval={p.n_eval} gammas={p.gammas}")


def _data() -> None:
  from dsrepro import data
  for task in data.TASKS:
    try:
      where = data.find_task_dir(task)
    except FileNotFoundError:
      print(f"{task:<14} not found (searched: {', '.join(str(p) for p in data.data_search_paths())})")
      continue
    diffs = data.check_task_files(task, where)
    print(f"{task:<14} {where}  " + ("matches data/manifest.json" if not diffs else "DIFFERS: " + "; ".join(diffs)))


def _choice(kind: str, known):
  known = tuple(known)

  def check(v: str) -> str:
    if v not in known:
      raise argparse.ArgumentTypeError(f"unknown {kind} {v!r}; known {kind}s: {', '.join(known)}")
    return v
  return check


def parser() -> argparse.ArgumentParser:
  from dsrepro.repro import notebooks
  from dsrepro.repro.figures import FIGURES
  ap = argparse.ArgumentParser(prog="dsrepro", description="DistillSpec / AdaSPEC reproduction in JAX.")
  sub = ap.add_subparsers(dest="cmd", required=True)
  prof = dict(type=_choice("profile", PROFILES), default="quick", help=f"one of {', '.join(PROFILES)}")
  run_dir = dict(default=None, help="artefact cache root (default: runs/ or $DSREPRO_RUNS)")

  a = sub.add_parser("all", help="train the SFT pair, run every notebook, write REPORT.md")
  a.add_argument("--profile", **prof)
  a.add_argument("--out", default="figures", help="figures / CSV / REPORT.md directory (default figures)")
  a.add_argument("--run-dir", **run_dir)

  r = sub.add_parser("run", help="run one notebook")
  known = notebooks.names() + list(notebooks.STANDALONE)
  r.add_argument("name", type=_choice("notebook", known), help=", ".join(known))
  r.add_argument("--profile", **prof)
  r.add_argument("--out", default="figures")
  r.add_argument("--run-dir", **run_dir)

  t = sub.add_parser("train", help="SFT target + draft and their held-out losses")
  t.add_argument("--profile", **prof)
  t.add_argument("--task", default=None, help="default: the profile's first task")
  t.add_argument("--run-dir", **run_dir)

  tb = sub.add_parser("table", help="compute one figure's table and print it")
  tb.add_argument("name", type=_choice("figure", FIGURES), help=", ".join(FIGURES))
  tb.add_argument("--profile", **prof)
  tb.add_argument("--run-dir", **run_dir)
  tb.add_argument("--out", default=None, help="also save its CSVs and plot in this directory")

  sub.add_parser("profiles", help="list the profiles")
  sub.add_parser("data", help="where each task's files are and whether they match data/manifest.json")
  return ap


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parser().parse_args(argv)
  if args.cmd == "profiles":
    _profiles()
  elif args.cmd == "data":
    _data()
  elif args.cmd == "train":
    train(args.profile, args.task, args.run_dir)
  elif args.cmd == "table":
    _table(args.name, args.profile, args.run_dir, args.out)
  elif args.cmd == "run":
    from dsrepro.repro import notebooks
    print("executed:", notebooks.run_notebook(args.name, args.profile, args.out, run_dir=args.run_dir))
  elif args.cmd == "all":
    from dsrepro.repro import notebooks
    train(args.profile, None, args.run_dir)
    notebooks.run_all(args.profile, args.out, run_dir=args.run_dir, command=shlex.join(["dsrepro", *argv]))
  return 0


if __name__ == "__main__":
  sys.exit(main())
