"""Every notebook executes through papermill with the smoke profile and writes its figure files.

One test runs them all in order (zz_report last) on a shared artefact cache, so each model is trained once and
the test is safe under pytest-xdist. Needs dsrepro.distill (every figure distils drafts).
"""
import json
from pathlib import Path

import pandas as pd
import papermill as pm

from dsrepro import notebooks

EXPECTED = {
    "fig1_speedup": ["fig1"],
    "fig2_kd_algorithms": ["fig2"],
    "fig3_alignment": ["fig3a", "fig3b", "fig3c"],
    "fig4_divergence_grid": ["fig4"],
    "fig5_quality_latency": ["fig5a", "fig5b"],
    "fig6_model_garden": ["fig6"],
    "table_d1": ["table_d1"],
    "table_adaspec": ["adaspec_table"],
}


def test_notebook_list():
  names = notebooks.names()
  assert set(names) == set(EXPECTED) | {"zz_report"} and names[-1] == "zz_report"
  for name in names:
    nb = json.loads((notebooks.NOTEBOOK_DIR / f"{name}.ipynb").read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1 and 'profile = "quick"' in "".join(tagged[0]["source"])
    params = set(pm.inspect_notebook(str(notebooks.NOTEBOOK_DIR / f"{name}.ipynb")))  # papermill parses them all
    assert params >= {"profile", "tasks", "seed", "run_dir", "out_dir"}, (name, params)
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), f"{name} has outputs"


def test_all_notebooks_smoke(tmp_path_factory):
  run_dir, out = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("figures")
  error = None
  try:
    times = notebooks.run_all("smoke", out, run_dir=run_dir, progress=False, command="pytest")
  except RuntimeError as e:
    error, times = e, {}
  missing = [f"{name}: {fig}.{ext}" for name, figs in EXPECTED.items() for fig in figs
             for ext in ("csv", "png", "pdf") if not (out / f"{fig}.{ext}").is_file()
             or (out / f"{fig}.{ext}").stat().st_size == 0]
  missing += [f"fig3_alignment: fig3.{ext}" for ext in ("png", "pdf") if not (out / f"fig3.{ext}").is_file()]
  assert not missing and error is None, f"{error!r}; missing: {missing}"
  f3a = pd.read_csv(out / "fig3a.csv")  # every curve starts at step 0 from the same SFT draft
  start = f3a[f3a.step == 0]
  assert set(start.model) == set(f3a.model) and f3a.step.max() > 0
  assert start.groupby(["metric", "gamma", "decoding"]).value.nunique().eq(1).all()
  report = (out / "REPORT.md").read_text()
  assert "profile: `smoke`" in report and "![" in report
  executed = Path(run_dir) / "smoke" / "notebooks"
  assert sorted(p.stem for p in executed.glob("*.ipynb")) == notebooks.names()
  test_notebook_list()  # the sources in notebooks/ are untouched (still without outputs)
  print("notebook times (s):", {k: round(v, 1) for k, v in times.items()})
