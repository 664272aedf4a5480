"""The notebooks: helpers their cells call, and running them with papermill.

Each figure of the registry (``repro.figures.FIGURES``) has one notebook, ``notebooks/<spec.notebook>.py``: a
jupytext percent script paired with the committed ``.ipynb`` (what Colab badges open and papermill runs), plus
the ``report`` notebook that writes REPORT.md. ``STANDALONE`` notebooks need user inputs (checkpoint paths) and are
never run by :func:`run_all`.

``run_notebook(name, profile, out_dir)`` executes ``notebooks/<name>.ipynb`` with kernel "python3" (the venv's
kernel: ``python -m ipykernel install --sys-prefix --name python3``, or ipykernel's own spec, both run this
interpreter) in the notebooks directory and saves the executed copy under ``<run root>/<profile>/notebooks/``.
``run_all`` runs the figures in registry order, then the report, with a progress bar over notebooks and
papermill's per-cell one, and prints a timing summary. Each notebook runs in a fresh kernel, so compiled XLA
programs are shared between them through JAX's persistent compilation cache (``<run root>/jax_cache`` unless
``$JAX_COMPILATION_CACHE_DIR`` is set).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from dsrepro.repro import figure
from dsrepro.repro.artefacts import default_root
from dsrepro.repro.figures import FIGURES, get
from dsrepro.repro.profiles import Profile, get_profile

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent.parent / "notebooks"
KERNEL = "python3"
REPORT = "report"
STANDALONE = ("real_pair",)  # not figures (need user inputs such as checkpoint paths): never run by run_all


def names() -> list[str]:
  """The notebooks ``run_all`` runs, in order: one per registered figure, then the report."""
  return [spec.notebook for spec in FIGURES.values()] + [REPORT]


# ------------------------------------------------------------------------------------------------ in a notebook


def setup(profile: str, tasks: str = "", seed: int = 0, run_dir: str = "") -> tuple[Profile, str | None]:
  """The notebook's profile (``tasks``: a comma-separated override, "" = the profile's) and artefact root
  (None = the default); prints the JAX backend, so a Colab user sees whether the accelerator is in use."""
  import jax
  print("JAX", jax.__version__, "backend:", jax.default_backend(), "devices:", jax.devices())
  overrides = {"seed": seed, **({"tasks": tuple(tasks.split(","))} if tasks else {})}
  return get_profile(profile, **overrides), run_dir or None


def show_figure(name: str, p: Profile, root, out_dir) -> dict:
  """Build the figure (training what is missing), save its CSVs and PNG/PDF in ``out_dir``, show the plot and the
  judged claims; returns the tables."""
  from IPython.display import Image, Markdown, display

  from dsrepro.repro import report
  spec = get(name)
  tables = figure.make(spec, p, root, out_dir)
  display(Image(str(Path(out_dir) / f"{spec.name}.png")))
  claims = spec.claims(tables)
  if claims:
    display(Markdown("**Claims**, judged by their rules on these tables:\n\n" + report.claims_markdown(claims, False)))
  return tables


# ------------------------------------------------------------------------------------------------ papermill


def _check(name: str) -> Path:
  path = NOTEBOOK_DIR / f"{name.removesuffix('.ipynb')}.ipynb"
  if not path.exists():
    raise ValueError(f"unknown notebook {name!r}; known notebooks: {', '.join(names() + list(STANDALONE))}")
  return path


def run_notebook(name: str, profile: str, out_dir, run_dir=None, executed_dir=None, progress: bool = True,
                 **params) -> Path:
  """Execute one notebook with papermill; returns the executed copy's path.

  ``out_dir`` (figures, CSVs) and ``run_dir`` (artefact cache root, default ``artefacts.default_root()``) are
  made absolute, since the kernel runs in ``notebooks/``. ``params``: further notebook parameters (tasks, seed).
  Executed copies go to ``executed_dir`` (default ``<run_dir>/<profile>/notebooks/``), never into notebooks/.
  """
  import papermill as pm
  src = _check(name)
  root = Path(run_dir).resolve() if run_dir else default_root()
  executed = Path(executed_dir) if executed_dir else root / profile / "notebooks"
  executed.mkdir(parents=True, exist_ok=True)
  out = Path(out_dir).resolve()
  out.mkdir(parents=True, exist_ok=True)
  parameters = dict(profile=profile, out_dir=str(out), run_dir=str(root) if run_dir else "", **params)
  dst = executed / src.name
  env = {k: v for k, v in (("JAX_COMPILATION_CACHE_DIR", str(root / "jax_cache")),
                           ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")) if k not in os.environ}
  os.environ.update(env)  # the kernel inherits this process's environment; restored below
  try:
    pm.execute_notebook(str(src), str(dst), parameters=parameters, kernel_name=KERNEL, cwd=str(NOTEBOOK_DIR),
                        progress_bar=progress, log_output=False)
  finally:
    for k in env:
      os.environ.pop(k, None)
  return dst


def run_all(profile: str, out_dir="figures", run_dir=None, only=None, command: str | None = None,
            progress: bool = True, **params) -> dict[str, float]:
  """Run every notebook (or those in ``only``) in order; returns {name: seconds}. ``command`` is recorded in the
  report header. A failing notebook is reported and the others still run; the first error is raised at the end."""
  from tqdm.auto import tqdm
  todo = [n for n in names() if only is None or n in only]
  times, errors = {}, {}
  bar = tqdm(todo, desc=f"notebooks ({profile})", unit="nb", disable=not progress)
  for name in bar:
    bar.set_postfix_str(name)
    t0 = time.perf_counter()
    try:
      extra = {"command": command} if name == REPORT and command else {}
      run_notebook(name, profile, out_dir, run_dir=run_dir, progress=progress, **params, **extra)
    except Exception as e:  # noqa: BLE001 -- keep going, report at the end
      errors[name] = e
      tqdm.write(f"[dsrepro] notebook {name} FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    times[name] = time.perf_counter() - t0
  bar.close()
  root = Path(run_dir).resolve() if run_dir else default_root()
  print(f"\nnotebooks ({profile}), executed copies in {root / profile / 'notebooks'}, figures in "
        f"{Path(out_dir).resolve()}:")
  for name, s in times.items():
    print(f"  {name:<24} {s:8.1f} s  {'FAILED' if name in errors else 'ok'}")
  print(f"  {'total':<24} {sum(times.values()):8.1f} s")
  if errors:
    raise RuntimeError(f"{len(errors)} notebook(s) failed: {', '.join(errors)}") from next(iter(errors.values()))
  return times
