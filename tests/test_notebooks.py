"""The notebooks: one per registered figure plus the report, each a jupytext script in sync with its committed
.ipynb; every one executes through papermill with the smoke profile and writes its figure files.

The smoke run executes them all in order (report last) on a shared artefact cache, so each model is trained once
and the test is safe under pytest-xdist."""
import json
import os
from pathlib import Path

import jupytext
import nbformat
import pandas as pd
import papermill as pm
import pytest
from jupyter_core.utils import run_sync
from nbclient.exceptions import DeadKernelError

from dsrepro.repro import notebooks
from dsrepro.repro.figures import FIGURES

ALL = notebooks.names() + list(notebooks.STANDALONE)


def test_one_notebook_per_figure_and_nothing_else():
  assert notebooks.names() == [s.notebook for s in FIGURES.values()] + ["report"]
  on_disk = {p.stem for p in notebooks.NOTEBOOK_DIR.glob("*.ipynb")}
  assert on_disk == set(ALL) == {p.stem for p in notebooks.NOTEBOOK_DIR.glob("*.py")}


@pytest.mark.parametrize("name", ALL)
def test_script_and_ipynb_are_in_sync(name):
  """The .py (what we edit and review) and the .ipynb (what Colab and papermill open) hold the same cells; fix a
  failure with `make notebooks` (jupytext --sync)."""
  script = jupytext.read(notebooks.NOTEBOOK_DIR / f"{name}.py")
  ipynb = nbformat.read(notebooks.NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
  cells = lambda nb: [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", ()))) for c in nb.cells]
  assert cells(script) == cells(ipynb), f"notebooks/{name}.py and .ipynb differ: run `make notebooks`"
  assert all(not c.get("outputs") for c in ipynb.cells if c.cell_type == "code"), f"{name}.ipynb has outputs"


@pytest.mark.parametrize("name", notebooks.names())
def test_parameters_and_prose(name):
  nb = json.loads((notebooks.NOTEBOOK_DIR / f"{name}.ipynb").read_text())
  tagged = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
  assert len(tagged) == 1 and 'profile = "quick"' in "".join(tagged[0]["source"])
  params = set(pm.inspect_notebook(str(notebooks.NOTEBOOK_DIR / f"{name}.ipynb")))  # papermill parses them all
  assert params >= {"profile", "tasks", "seed", "run_dir", "out_dir"}, (name, params)
  intro = "".join(nb["cells"][0]["source"])
  assert nb["cells"][0]["cell_type"] == "markdown" and "colab.research.google.com" in intro and "arXiv" in intro


def test_all_notebooks_smoke(tmp_path_factory):
  run_dir, out = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("figures")
  error, env = None, dict(os.environ)
  try:
    times = notebooks.run_all("smoke", out, run_dir=run_dir, progress=False, command="pytest")
  except RuntimeError as e:
    error, times = e, {}
  assert dict(os.environ) == env  # what the kernels got on top (the compile cache) is not left behind
  want = [f"{p}.csv" for s in FIGURES.values() for p in s.panels]
  want += [f"{s.name}.{ext}" for s in FIGURES.values() for ext in ("png", "pdf")]
  missing = [f for f in want if not (out / f).is_file() or (out / f).stat().st_size == 0]
  assert not missing and error is None, f"{error!r}; missing: {missing}"
  f3a = pd.read_csv(out / "fig3a.csv")  # every curve starts at step 0 from the same SFT draft
  start = f3a[f3a.step == 0]
  assert set(start.model) == set(f3a.model) and f3a.step.max() > 0
  assert start.groupby(["metric", "gamma", "decoding"]).value.nunique().eq(1).all()
  executed = Path(run_dir) / "smoke" / "notebooks"
  d1 = pd.read_csv(out / "table_d1_stats.csv")  # smoke takes 2 wall-time rounds; the interval pools them
  assert (d1[d1.claim == "d1.sd_faster"].n_seeds == 2).all()
  assert (pd.read_csv(out / "table_d1.csv").wall_rounds == 2).all()
  assert list(times)[-2:] == ["table_d1", "report"] and "table_d1 wall-time round 1" in times
  # round 1 is taken after fig4, not when Fig. 1 builds Table D.1 early in the run: only round 0 exists by then
  walls = sorted(Path(run_dir, "smoke", "eval").glob("wall-*.json"), key=lambda f: f.stat().st_mtime)
  fig1_done = (executed / "fig1_speedup.ipynb").stat().st_mtime
  assert len(walls) == 2 * sum(f.stat().st_mtime <= fig1_done for f in walls) > 0
  report = (out / "REPORT.md").read_text()
  assert "profile: `smoke`" in report and "![" in report
  assert sorted(p.stem for p in executed.glob("*.ipynb")) == sorted(notebooks.names())
  for name in ALL:  # the sources in notebooks/ are untouched (still without outputs)
    test_script_and_ipynb_are_in_sync(name)
  print("notebook times (s):", {k: round(v, 1) for k, v in times.items()})


def test_shared_kernel_resets_between_notebooks(tmp_path):
  """What one notebook defines, the next does not see; dsrepro's model caches are cleared between them; a kernel
  that died is restarted; what lives in modules (here a marker on a module) persists, as compiled programs do."""
  def notebook(name, *cells):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata.update(kernelspec={"name": notebooks.KERNEL, "language": "python", "display_name": "python"})
    nbformat.write(nb, tmp_path / name)
    return str(tmp_path / name)
  first = notebook("a.ipynb", "import json; json.marker = 1; leak = 1", "from dsrepro.repro import artefacts",
                   "artefacts.clear_caches = lambda: setattr(__import__('json'), 'clear', 1)")
  check = notebook("b.ipynb", "import json; assert json.marker == 1 and json.clear == 1", "assert 'leak' not in dir()")
  die = notebook("c.ipynb", "import os; os._exit(1)")
  alive = notebook("d.ipynb", "import json; assert not hasattr(json, 'marker')")
  with notebooks.shared_kernel(tmp_path) as reset:
    for path in (first, check):
      pm.execute_notebook(path, path, km=reset(), progress_bar=False)
    km = reset()
    with pytest.raises(DeadKernelError):
      pm.execute_notebook(die, die, km=km, progress_bar=False)
    last = reset()  # a new kernel: the module marker is gone
    pm.execute_notebook(alive, alive, km=last, progress_bar=False)
  assert last is not km and not run_sync(last.is_alive)()  # shut down at exit


def test_schedule_spreads_wall_rounds_and_runs_table_d1_last():
  todo = notebooks.names()
  assert notebooks.schedule(todo, 1) == todo  # one round: the registry's order
  for rounds in (2, 3, 5):
    order = notebooks.schedule(todo, rounds)
    assert [x for x in order if isinstance(x, str)] == [n for n in todo if n not in ("table_d1", "report")] + [
        "table_d1", "report"]
    assert sorted(x for x in order if isinstance(x, int)) == list(range(1, rounds))  # each round once
    gaps = [i for i, x in enumerate(order) if isinstance(x, int)]
    assert gaps[0] > 1 and order.index("table_d1") - gaps[-1] > 1  # spread: not bunched at either end
  assert notebooks.schedule(["table_d1"], 3) == [1, 2, "table_d1"]  # alone: the rounds still come first
  assert notebooks.schedule(["fig1_speedup", "report"], 3) == ["fig1_speedup", "report"]  # no Table D.1: no rounds

