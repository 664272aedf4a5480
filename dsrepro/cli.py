"""The ``dsrepro`` command.

  dsrepro all --profile quick [--out DIR] [--run-dir DIR]       SFT target + draft, every notebook, REPORT.md in
                                                                 figures/<profile>/ and the overview figures/REPORT.md
  dsrepro run NAME --profile quick [--out figures] [-p N V]      one notebook (e.g. fig2_kd_algorithms); -p NAME VALUE
                                                                 sets one of its declared parameters (repeatable)
  dsrepro train --profile quick --task gsm8k                     SFT target + draft and their held-out losses
  dsrepro table NAME --profile smoke [--out DIR]                 build figure NAME's tables and print them (--out: save
                                                                 its CSVs and plot)
  dsrepro profiles                                               list the profiles
  dsrepro plan --profile NAME [--device h100|a100|v5e|cpu]        every stage compiled abstractly: params, FLOPs,
                                                                 memory per device, projected time
  dsrepro data                                                   where each task's files are, and whether they match
                                                                 the staged snapshot (data/manifest.json)

Any failure prints ONE line on stderr, ``dsrepro: error: <message>`` (the message names the bad value or path,
what was expected and how to fix it), and exits with status 1 (2 for a bad command line); ``--debug`` shows the
traceback instead.
"""
from __future__ import annotations

import argparse
import ast
import shlex
import sys

from dsrepro.errors import ConfigError, DsreproError, one_line
from dsrepro.repro.profiles import PROFILES

TABLES = ("table_d1", "fig1", "fig2", "fig3a", "fig3b", "fig3c", "fig4", "fig5a", "fig5b", "fig6", "adaspec_table")


def _params(n: int) -> str:
  return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.0f}K"


def train(profile: str, task: str | None = None, run_dir=None, seed: int = 0) -> dict:
  """Train (or load) the SFT target and draft of ``task`` (default: the profile's first task) with the profile's
  ``seed`` set to ``seed``; print and return their held-out losses."""
  from dsrepro import data
  from dsrepro.repro import artefacts as experiments
  from dsrepro.models.transformer import count_params
  from dsrepro.repro.profiles import get_profile
  p = get_profile(profile, seed=seed)
  task = task or p.tasks[0]
  if task not in data.TASKS:
    raise ConfigError(f"unknown task {task!r}; known tasks: {', '.join(data.TASKS)}")
  out = {}
  for role, size in (("target", p.target_size), ("draft", p.draft_size)):
    model = experiments.sft_model(p, task, size, run_dir, which=role).model
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


class _Parser(argparse.ArgumentParser):
  """argparse with a one-line error (no usage block): ``dsrepro run: error: ...`` and exit status 2."""

  def error(self, message):
    self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


_RESERVED = {"profile": "--profile", "out_dir": "--out", "run_dir": "--run-dir"}


def _notebook_params(name: str, pairs) -> dict:
  """``-p NAME VALUE`` pairs as notebook parameters: each NAME declared by the notebook (papermill reads its
  parameters cell), each VALUE converted to the type of the declared default (int, float, bool, str)."""
  from dsrepro.repro import notebooks
  out = {}
  for k, v in pairs or ():
    if k in _RESERVED:
      raise ConfigError(f"-p {k} {v}: set {k} with {_RESERVED[k]} {v}, not -p")
    out[k] = v
  declared = notebooks.check_params(name, out)
  for k, v in out.items():
    default = declared[k]
    try:
      if isinstance(default, bool):
        if v.lower() not in ("true", "false", "1", "0"):
          raise ValueError(v)
        out[k] = v.lower() in ("true", "1")
      elif isinstance(default, (int, float)):
        out[k] = type(default)(v)
      elif not isinstance(default, str):
        out[k] = ast.literal_eval(v)
    except (ValueError, SyntaxError):
      want = {bool: "true or false", int: "an int", float: "a number"}.get(type(default), "a Python literal")
      raise ConfigError(f"-p {k} {v!r}: notebook {name!r} expects {want} for {k} (its default is {default!r})"
                        ) from None
  return out


def parser() -> argparse.ArgumentParser:
  from dsrepro.repro import notebooks
  from dsrepro.repro.figures import FIGURES
  ap = _Parser(prog="dsrepro", description="DistillSpec / AdaSPEC reproduction in JAX.")
  ap.add_argument("--debug", action="store_true", help="show the traceback of a failure")
  common = argparse.ArgumentParser(add_help=False)
  common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                      help="show the traceback of a failure")
  sub = ap.add_subparsers(dest="cmd", required=True)
  add = lambda name, **kw: sub.add_parser(name, parents=[common], **kw)  # noqa: E731
  prof = dict(type=_choice("profile", PROFILES), default="quick", help=f"one of {', '.join(PROFILES)}")
  run_dir = dict(default=None, help="artefact cache root (default: runs/ or $DSREPRO_RUNS)")
  seed = dict(type=_seed, default=0, help="the profile's seed: pretraining, SFT, evaluation and (via "
              "artefacts.kd_seeds) every KD run; a different seed is a different set of runs (default 0)")

  a = add("all", help="train the SFT pair, run every notebook, write REPORT.md")
  a.add_argument("--profile", **prof)
  a.add_argument("--out", default=None, help="figures / CSV / REPORT.md directory (default figures/<profile>, "
                 "or figures/<profile>-seed<N> for --seed N > 0)")
  a.add_argument("--run-dir", **run_dir)
  a.add_argument("--seed", **seed)
  a.add_argument("--fresh-kernels", action="store_true", help="run each notebook in a kernel of its own, as "
                 "papermill alone does (default: one shared kernel, its namespace reset between notebooks, so each "
                 "program is compiled once; the smoke run takes 2/3 of the time)")

  r = add("run", help="run one notebook")
  known = notebooks.names() + list(notebooks.STANDALONE)
  r.add_argument("name", type=_choice("notebook", known), help=", ".join(known))
  r.add_argument("--profile", **prof)
  r.add_argument("--out", default=None, help="default figures/<profile>")
  r.add_argument("--run-dir", **run_dir)
  r.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                 help="set a parameter the notebook declares (repeatable), e.g. -p tasks gsm8k,xsum -p seed 1")

  t = add("train", help="SFT target + draft and their held-out losses")
  t.add_argument("--profile", **prof)
  t.add_argument("--task", default=None, help="default: the profile's first task")
  t.add_argument("--run-dir", **run_dir)
  t.add_argument("--seed", **seed)

  tb = add("table", help="compute one figure's table and print it")
  tb.add_argument("name", type=_choice("figure", FIGURES), help=", ".join(FIGURES))
  tb.add_argument("--profile", **prof)
  tb.add_argument("--run-dir", **run_dir)
  tb.add_argument("--out", default=None, help="also save its CSVs and plot in this directory")

  add("profiles", help="list the profiles")
  add("data", help="where each task's files are and whether they match data/manifest.json")
  from dsrepro.repro import plan
  plan.add_arguments(add("plan", help="each stage of a profile compiled abstractly: params, FLOPs, memory, time"))
  return ap


def _seed(text: str) -> int:
  """argparse type of --seed: an int >= 0 (a one-line error otherwise)."""
  try:
    value = int(text)
  except ValueError:
    value = -1
  if value < 0:
    raise argparse.ArgumentTypeError(f"--seed {text!r}: expected an int >= 0")
  return value


def _root(run_dir) -> None:
  """The artefact root (``--run-dir``, else $DSREPRO_RUNS, else runs/) exists and is writable, before any work."""
  from pathlib import Path

  from dsrepro import runs
  from dsrepro.repro.artefacts import default_root
  runs.ensure_dir(Path(run_dir).expanduser() if run_dir else default_root(), "artefact root")


def _message(e: BaseException) -> str:
  if isinstance(e, DsreproError):
    return one_line(str(e))
  return f"{type(e).__name__}: {one_line(str(e))[:500]} (rerun with --debug for the traceback)"


def main(argv=None) -> int:
  """Run the command; a failure prints one line on stderr and returns 1 (``--debug``: raise it instead)."""
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parser().parse_args(argv)
  try:
    from dsrepro.sharding import initialize_distributed
    initialize_distributed()  # one process per host on a pod slice / several GPU hosts; a no-op otherwise
    return _run(args, argv)
  except KeyboardInterrupt:
    if args.debug:
      raise
    print("dsrepro: interrupted (rerun the same command to continue: finished artefacts are reused and training "
          "resumes from its last checkpoint)", file=sys.stderr)
    return 130
  except Exception as e:  # noqa: BLE001 -- the one-line contract of the command
    if args.debug:
      raise
    print(f"dsrepro: error: {_message(e)}", file=sys.stderr)
    return 1


def _run(args, argv) -> int:
  if args.cmd in ("train", "table", "run", "all"):
    _root(args.run_dir)
  if args.cmd == "profiles":
    _profiles()
  elif args.cmd == "data":
    _data()
  elif args.cmd == "plan":
    from dsrepro.repro import plan
    plan.run(args)
  elif args.cmd == "train":
    train(args.profile, args.task, args.run_dir, args.seed)
  elif args.cmd == "table":
    _table(args.name, args.profile, args.run_dir, args.out)
  elif args.cmd == "run":
    from dsrepro.repro import notebooks
    params = _notebook_params(args.name, args.param)
    print("executed:", notebooks.run_notebook(args.name, args.profile, args.out, run_dir=args.run_dir, **params))
  elif args.cmd == "all":
    from dsrepro.repro import notebooks
    train(args.profile, None, args.run_dir, args.seed)
    out = args.out
    if out is None and args.seed != 0:  # figures/<profile>-seed<N>/: a column of its own in figures/REPORT.md
      out = str(notebooks.figures_dir(f"{args.profile}-seed{args.seed}"))
    notebooks.run_all(args.profile, out, run_dir=args.run_dir, command=shlex.join(["dsrepro", *argv]),
                      shared=not args.fresh_kernels, seed=args.seed)
    if args.out is None:  # figures/<profile>/: refresh the claims x profiles table in figures/REPORT.md
      from dsrepro.repro import report
      print("overview:", report.build_overview(notebooks.figures_dir(args.profile).parent))
  return 0


if __name__ == "__main__":
  sys.exit(main())
