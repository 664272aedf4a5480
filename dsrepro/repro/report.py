"""``REPORT.md`` from the CSVs that the figures wrote: for every figure of the registry (``repro.figures``) its
plot, a short table of our key numbers and the paper's claims next to ours, each with a verdict computed from the
data by the explicit rule shown beside it. Nothing of ours is hard-coded: a figure whose CSVs are missing is
reported as "not run at this profile".
"""
from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from dsrepro.repro import figure
from dsrepro.repro.figures import FIGURES
from dsrepro.runs import atomic_path

__all__ = ["markdown_table", "claims", "claims_markdown", "hardware_string", "build_report", "build_overview"]


def markdown_table(df: pd.DataFrame) -> str:
  """A pipe table (no tabulate dependency); floats with 3 significant digits."""
  if df is None or df.empty:
    return "_(empty)_\n"
  fmt = lambda v: (f"{v:.3g}" if np.isfinite(v) else "nan") if isinstance(v, (float, np.floating)) else str(v)
  lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
  lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
  return "\n".join(lines) + "\n"


def load_all(out_dir) -> dict:
  """{figure name: {panel: DataFrame or None}} for every registered figure."""
  return {name: figure.load_tables(spec, out_dir) for name, spec in FIGURES.items()}


def claims(tables: dict, kind: str | None = "claim") -> list[figure.Claim]:
  """Every claim (``kind`` "claim"), check ("check") or both (None) of every figure, judged on ``tables``
  ({figure name: {panel: DataFrame or None}})."""
  return [c for name, spec in FIGURES.items() for c in spec.judge(tables[name]) if kind in (None, c.kind)]


def hardware_string() -> str:
  """Platform, CPU and JAX devices of this process."""
  import jax
  cpu = platform.processor() or platform.machine()
  try:  # Linux: the CPU model name
    cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
               if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return (f"{platform.platform()}; CPU {cpu} x {os.cpu_count()}; jax {jax.__version__} "
          f"{jax.default_backend()}: {', '.join(str(d) for d in jax.devices())}")


def _ran(tables: dict) -> bool:
  return any(df is not None for df in tables.values())


def claims_markdown(rows: list[figure.Claim], with_figure: bool = True) -> str:
  """The judged claims as a pipe table."""
  cols = ["figure"] * with_figure + ["claim", "paper", "ours", "verdict", "rule"]
  return markdown_table(pd.DataFrame([{k: getattr(c, k) for k in cols} for c in rows], columns=cols))


def build_report(out_dir, profile_name: str, hardware: str | None = None, command: str | None = None) -> Path:
  """Write ``<out_dir>/REPORT.md`` from the CSVs (and PNGs) in ``out_dir``; returns its path."""
  from dsrepro.repro.profiles import PROFILES
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  tables = load_all(out)
  cl, checks = claims(tables), claims(tables, "check")
  verdicts = pd.Series([c.verdict for c in cl]).value_counts()
  scale = ("**This is a smoke-scale run** (tiny models, brief pretraining, few steps): its verdicts test the "
           "machinery, not the paper.") if PROFILES.get(profile_name) and PROFILES[profile_name].smoke_scale else ""
  summaries = [s for name, spec in FIGURES.items() if spec.summary and _ran(tables[name])
               for s in [spec.summary(tables[name])] if s]
  lines = [
      "# DistillSpec / AdaSPEC reproduction report", "",
      f"- profile: `{profile_name}`",
      f"- hardware: {hardware or hardware_string()}",
      f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
      f"- command: `{command or f'dsrepro all --profile {profile_name}'}`", "",
      "Our models are small and pretrained here on little text, so compare directions and ratios with the paper, "
      "not absolute values. Every verdict is computed from the CSVs next to this file by the rule stated in its "
      "row: *reproduced* when the 95% interval of the measured quantity lies on the paper's side of the "
      "threshold, *contradicted* when it lies on the other side, *inconclusive* otherwise (dsrepro/repro/stats.py).",
      *(["", scale] if scale else []), *[x for s in summaries for x in ("", s)], "", "## Claims", "",
      "Summary: " + ", ".join(f"{k}: {v}" for k, v in verdicts.items()), "",
      claims_markdown(cl), "## Checks", "", "Preconditions the claims rely on (not paper claims).", "",
      claims_markdown(checks)]
  for name, spec in FIGURES.items():
    lines += [f"## {spec.title}", "", f"_{spec.paper}_", ""]
    t = tables[name]
    if not _ran(t):
      lines += [f"_{figure.NOT_RUN}_ (no {', '.join(f'`{p}.csv`' for p in spec.panels)})", ""]
    else:
      if (out / f"{name}.png").exists():
        lines += [f"![{spec.title}]({name}.png)", ""]
      lines += ["Data: " + ", ".join(f"[`{p}.csv`]({p}.csv)" for p in spec.all_panels if t[p] is not None), ""]
      if all(t[p] is not None for p in spec.panels):
        key = spec.key_numbers(t)
        for df in key if isinstance(key, list) else [key]:
          lines += [markdown_table(df)]
    mine = spec.judge(t)
    if mine:
      lines += ["Claims:", "", claims_markdown(mine, with_figure=False)]
  path = out / "REPORT.md"
  with atomic_path(path) as tmp:
    tmp.write_text("\n".join(lines))
  return path


def _cell(c: figure.Claim) -> str:
  if c.verdict == figure.NOT_RUN:
    return "not run"
  return f"**{c.verdict}**: {c.ours}"


def build_overview(figures_root, profiles=None) -> Path:
  """``<figures_root>/REPORT.md``: every claim and check (rows) against the paper and each profile that has a
  ``<figures_root>/<profile>/`` folder with results (columns, in ``profiles`` order: default the known profiles by
  scale, then any other folder), each cell the verdict with its estimate [95% interval] per task x decoding, and
  the rule."""
  from dsrepro.repro.profiles import PROFILES
  root = Path(figures_root)
  ran = lambda d: d.is_dir() and (any(d.glob("*_stats.csv")) or (d / "REPORT.md").exists())  # noqa: E731
  names = [n for n in (profiles or PROFILES) if ran(root / n)]
  names += sorted(d.name for d in root.iterdir() if d.name not in names and ran(d)) if root.is_dir() else []
  judged = {n: {c.id: c for c in claims(load_all(root / n), None)} for n in names}
  template = claims(load_all(root / "__none__"), None)  # every claim, not run: the row order
  rows = []
  for c in template:
    rows.append({"kind": c.kind, "figure": c.figure, "claim": c.claim, "paper": c.paper,
                 **{f"[{n}]({n}/REPORT.md)": _cell(judged[n][c.id]) for n in names}, "rule": c.rule})
  lines = ["# Claims across profiles", "",
           "Rows: the papers' claims (DistillSpec arXiv 2310.08461, AdaSPEC arXiv 2510.19779) and the checks they "
           "rely on; columns: the paper and each profile run so far (smallest scale first), linking to its "
           "report. Each cell is the verdict, then the measured quantity per task x decoding as estimate [95% "
           "interval], by the rule in the last column (dsrepro/repro/stats.py). A claim that only appears at a "
           "larger profile shows where scale matters.", "",
           f"Profiles: {', '.join(names) or 'none yet'}. Regenerate: `dsrepro all --profile NAME` (each profile "
           "writes figures/NAME/ and then this table).", "", markdown_table(pd.DataFrame(rows))]
  path = root / "REPORT.md"
  root.mkdir(parents=True, exist_ok=True)
  with atomic_path(path) as tmp:
    tmp.write_text("\n".join(lines))
  return path
