"""The notebooks: helpers their cells call, and running them with papermill.

Each figure of the registry (``repro.figures.FIGURES``) has one notebook, ``notebooks/<spec.notebook>.py``: a
jupytext percent script paired with the committed ``.ipynb`` (what Colab badges open and papermill runs), plus
the ``report`` notebook that writes REPORT.md. ``STANDALONE`` notebooks need user inputs (checkpoint paths) and are
never run by :func:`run_all`.

``run_notebook(name, profile, out_dir)`` executes ``notebooks/<name>.ipynb`` with kernel "python3" (the venv's
kernel: ``python -m ipykernel install --sys-prefix --name python3``, or ipykernel's own spec, both run this
interpreter) in the notebooks directory and saves the executed copy under ``<run root>/<profile>/notebooks/``.
``run_all`` runs the figures in registry order, then the report, with a progress bar over notebooks and
papermill's per-cell one, and prints a timing summary. By default the notebooks of ``run_all`` share one kernel,
reset between them (:func:`shared_kernel`), so a program compiled by one is reused by the next from memory;
with fresh kernels (``shared=False``, and every ``run_notebook`` call) compiled XLA programs are shared through
JAX's persistent compilation cache (``<run root>/jax_cache`` unless ``$JAX_COMPILATION_CACHE_DIR`` is set).

Parameters are checked at both ends: :func:`run_notebook` rejects names the notebook does not declare (its cell
tagged "parameters", read by ``papermill.inspect_notebook``) before starting a kernel, and :func:`setup`, the first
call of every figure notebook, validates the values and rejects unknown names papermill injected (a misspelled
``papermill -p profil smoke`` otherwise only warns and runs the default profile).
"""
from __future__ import annotations

import ast
import contextlib
import os
import time
from pathlib import Path

from dsrepro import runs
from dsrepro.errors import ConfigError, NotebookError, check_int, one_line
from dsrepro.repro import figure
from dsrepro.repro.artefacts import default_root
from dsrepro.repro.figures import FIGURES, get, table_d1
from dsrepro.repro.profiles import Profile, get_profile

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent.parent / "notebooks"
KERNEL = "python3"
REPORT = "report"
STANDALONE = ("real_pair",)  # not figures (need user inputs such as checkpoint paths): never run by run_all


def names() -> list[str]:
  """The notebooks ``run_all`` runs, in order: one per registered figure, then the report."""
  return [spec.notebook for spec in FIGURES.values()] + [REPORT]


# ------------------------------------------------------------------------------------------------ in a notebook


STANDARD_PARAMS = ("profile", "tasks", "seed", "run_dir", "out_dir")  # every figure notebook declares these


def _assigned(source: str) -> set[str]:
  """Names assigned at the top level of a cell's source (empty if it does not parse)."""
  try:
    tree = ast.parse(source)
  except SyntaxError:
    return set()
  return {t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
          for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}


def injected_unknown_params() -> tuple[list[str], list[str]]:
  """(unknown, declared): the names in the cell papermill injected ("# Parameters") that the notebook's parameters
  cell (the cell run just before it) does not declare, and the declared ones; ([], []) outside a kernel or when
  nothing was injected (IPython's input history ``In`` holds the cells run so far)."""
  try:
    from IPython import get_ipython
  except ImportError:
    return [], []
  shell = get_ipython()
  history = list(shell.user_ns.get("In") or []) if shell is not None else []
  at = next((i for i in range(len(history) - 1, 0, -1) if history[i].lstrip().startswith("# Parameters")), None)
  if at is None:
    return [], []
  declared = _assigned(history[at - 1]) | set(STANDARD_PARAMS)
  return sorted(_assigned(history[at]) - declared), sorted(declared)


def figures_dir(profile: str, out_dir: str = "") -> Path:
  """Where a profile's figures, CSVs and REPORT.md go: ``out_dir`` if given, else ``<repo>/figures/<profile>``
  (the top-level ``figures/REPORT.md`` puts the profiles side by side: ``report.build_overview``)."""
  return Path(out_dir).expanduser().resolve() if out_dir else NOTEBOOK_DIR.parent / "figures" / profile


def notebook_profile(profile: str, tasks: str = "", seed: int = 0) -> Profile:
  """The profile a notebook runs with its ``tasks`` (comma-separated, "" = the profile's) and ``seed``."""
  overrides = {"seed": seed, **({"tasks": tuple(t.strip() for t in tasks.split(","))} if tasks.strip() else {})}
  return get_profile(profile, **overrides)


def setup(profile: str, tasks: str = "", seed: int = 0, run_dir: str = "",
          out_dir: str = "") -> tuple[Profile, str | None, Path]:
  """The notebook's profile (``tasks``: a comma-separated override, "" = the profile's), artefact root (None =
  the default) and output folder (``figures_dir``); prints the JAX backend, so a Colab user sees whether the
  accelerator is in use.

  Validates the parameters first (ConfigError naming the bad one): no unknown injected names, a known profile,
  known tasks, an int seed >= 0, a usable artefact root."""
  unknown, declared = injected_unknown_params()
  if unknown:
    raise ConfigError(f"unknown notebook parameter {', '.join(map(repr, unknown))}: this notebook declares "
                      f"{', '.join(declared)}; check the spelling of papermill -p NAME VALUE")
  for name, value in (("profile", profile), ("tasks", tasks), ("run_dir", run_dir), ("out_dir", out_dir)):
    if not isinstance(value, str):
      raise ConfigError(f"notebook parameter {name}={value!r} must be a string, got a {type(value).__name__}")
  check_int("notebook parameter seed", seed, 0)
  p = notebook_profile(profile, tasks, seed)
  runs.ensure_dir(Path(run_dir).expanduser() if run_dir else default_root(), "artefact root")
  out = figures_dir(profile, out_dir)
  runs.ensure_dir(out, "figures folder")
  import jax
  print("JAX", jax.__version__, "backend:", jax.default_backend(), "devices:", jax.devices())
  return p, run_dir or None, out


def show_figure(name: str, p: Profile, root, out_dir) -> dict:
  """Build the figure (training what is missing), save its CSVs and PNG/PDF in ``out_dir``, show the plot and the
  judged claims; returns the tables."""
  from IPython.display import Image, Markdown, display

  from dsrepro.repro import report
  spec = get(name)
  tables = figure.make(spec, p, root, out_dir)
  display(Image(str(Path(out_dir) / f"{spec.name}.png")))
  claims = spec.judge(tables)
  if claims:
    display(Markdown("**Claims**, judged by their rules on these tables:\n\n" + report.claims_markdown(claims, False)))
  return tables


# ------------------------------------------------------------------------------------------------ papermill


def _check(name: str) -> Path:
  path = NOTEBOOK_DIR / f"{name.removesuffix('.ipynb')}.ipynb"
  if not path.exists():
    raise ConfigError(f"unknown notebook {name!r}; known notebooks: {', '.join(names() + list(STANDALONE))}")
  return path


def declared_params(name: str) -> dict[str, object]:
  """The parameters notebook ``name`` declares (its cell tagged "parameters") and their default values."""
  import papermill as pm
  out = {}
  for k, v in pm.inspect_notebook(str(_check(name))).items():
    try:
      out[k] = ast.literal_eval(v["default"])
    except (ValueError, SyntaxError):
      out[k] = v["default"]
  return out


def check_params(name: str, params: dict) -> dict[str, object]:
  """ConfigError unless every name in ``params`` is a parameter notebook ``name`` declares; returns
  :func:`declared_params`."""
  declared = declared_params(name)
  unknown = [k for k in params if k not in declared]
  if unknown:
    raise ConfigError(f"notebook {name!r} has no parameter {unknown[0]!r}; its parameters: "
                      f"{', '.join(declared)}")
  return declared


def run_notebook(name: str, profile: str, out_dir=None, run_dir=None, executed_dir=None, progress: bool = True,
                 km=None, **params) -> Path:
  """Execute one notebook with papermill; returns the executed copy's path.

  ``out_dir`` (figures, CSVs) and ``run_dir`` (artefact cache root, default ``artefacts.default_root()``) are
  made absolute, since the kernel runs in ``notebooks/``. ``params``: further notebook parameters (tasks, seed).
  Executed copies go to ``executed_dir`` (default ``<run_dir>/<profile>/notebooks/``), never into notebooks/.
  ``km``: a running kernel (``jupyter_client.AsyncKernelManager``, see :func:`shared_kernel`) to run in instead of
  a fresh one; it is left running.
  """
  import papermill as pm
  src = _check(name)
  get_profile(profile)  # a known profile name and declared parameters, before anything is created
  declared = check_params(name, params)
  root = Path(run_dir).resolve() if run_dir else default_root()
  executed = runs.ensure_dir(Path(executed_dir) if executed_dir else root / profile / "notebooks",
                             "executed-notebook folder")
  out = runs.ensure_dir(figures_dir(profile, str(out_dir or "")), "output folder")
  # profile / out_dir / run_dir go only to the notebooks that declare them
  auto = dict(profile=profile, out_dir=str(out), run_dir=str(root) if run_dir else "")
  parameters = {**{k: v for k, v in auto.items() if k in declared}, **params}
  dst = executed / src.name
  env = _kernel_env(root)
  os.environ.update(env)  # the kernel inherits this process's environment; restored below
  try:
    pm.execute_notebook(str(src), str(dst), parameters=parameters, kernel_name=KERNEL, cwd=str(NOTEBOOK_DIR),
                        progress_bar=progress, log_output=False, **({"km": km} if km is not None else {}))
  except pm.PapermillExecutionError as e:
    raise NotebookError(f"notebook {name} failed in cell [{e.exec_count}]: {e.ename}: {one_line(e.evalue)[:500]} "
                        f"(the executed copy with the traceback: {dst})") from e
  finally:
    for k in env:
      os.environ.pop(k, None)
  return dst


def _kernel_env(root: Path) -> dict[str, str]:
  """What a notebook kernel gets on top of this process's environment: JAX's persistent compilation cache under the
  artefact root (unless ``$JAX_COMPILATION_CACHE_DIR`` is set)."""
  return {k: v for k, v in (("JAX_COMPILATION_CACHE_DIR", str(root / "jax_cache")),
                            ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")) if k not in os.environ}


RESET = """%reset -f
import gc as _gc, matplotlib.pyplot as _plt
from dsrepro.repro import artefacts as _artefacts
_plt.close("all"); _artefacts.clear_caches(); _gc.collect(); del _gc, _plt, _artefacts
"""  # run before each notebook in a shared kernel: a clean namespace, no figures, no loaded models


@contextlib.contextmanager
def shared_kernel(run_dir=None):
  """One kernel for several notebooks (``run_all(shared=True)``): yields ``reset()``, to call before each notebook;
  it returns the kernel to run it in (a started ``jupyter_client.AsyncKernelManager``, the kind nbclient makes for
  itself: with a blocking one nbclient's event loop blocks on the kernel's messages and never sees it die) after
  running ``RESET`` in it (a clean namespace, no open figures, no loaded models). A kernel that died (e.g. out of
  memory) is replaced by a new one (restarting it in place hung). Every kernel is shut down at exit.

  What persists from one notebook to the next is what lives in imported modules: JAX's compiled programs, so a
  program is traced and compiled once per run instead of once per notebook, and the imports are made once."""
  import nbformat
  from jupyter_client.manager import AsyncKernelManager
  from jupyter_core.utils import run_sync
  from nbclient import NotebookClient
  env = {**os.environ, **_kernel_env(Path(run_dir).resolve() if run_dir else default_root())}
  kernels, clients = [], []

  class Kernel(AsyncKernelManager):
    def client(self, **kwargs):  # papermill's and nbclient's clients, closed after each notebook (else each warns)
      clients.append(super().client(**kwargs))
      return clients[-1]

  def close_clients():
    while clients:
      c = clients.pop()
      if c.channels_running:
        c.stop_channels()

  def reset() -> AsyncKernelManager:
    close_clients()
    if not kernels or not run_sync(kernels[-1].is_alive)():
      kernels.append(Kernel(kernel_name=KERNEL))
      run_sync(kernels[-1].start_kernel)(cwd=str(NOTEBOOK_DIR), env=env)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(RESET)])
    NotebookClient(nb, km=kernels[-1], kernel_name=KERNEL, timeout=600).execute()
    return kernels[-1]
  try:
    yield reset
  finally:
    close_clients()
    for km in kernels:
      if run_sync(km.is_alive)():
        run_sync(km.shutdown_kernel)(now=True)


TIMED = table_d1.SPEC.notebook  # its wall times are taken in Profile.wall_rounds rounds across the run


def schedule(todo: list[str], rounds: int) -> list[str | int]:
  """The order of ``run_all``: notebook names, and ints r for "take wall-time round r now"
  (``table_d1.measure_round``). With ``rounds`` R > 1 and Table D.1 in ``todo``, Table D.1 moves to just before
  the report and rounds 1 .. R-1 go between the other notebooks at even spacing, so its rounds span the run
  (round 0 is taken by whichever builds Table D.1 first: Fig. 1, early); with R = 1 the order is ``todo``'s."""
  if rounds <= 1 or TIMED not in todo:
    return list(todo)
  rest = [n for n in todo if n not in (TIMED, REPORT)]
  after = [(max(1, round(r * len(rest) / rounds)), r) for r in range(1, rounds)]  # (position, round)
  out: list[str | int] = []
  for i, name in enumerate(rest, 1):
    out += [name] + [r for pos, r in after if pos == i]
  out += [r for pos, r in after if pos > len(rest)] + [TIMED]
  return out + [REPORT] * (REPORT in todo)


def run_all(profile: str, out_dir=None, run_dir=None, only=None, command: str | None = None,
            progress: bool = True, shared: bool = True, **params) -> dict[str, float]:
  """Run every notebook (or those in ``only``) in the order of :func:`schedule`; returns {name: seconds}.
  ``command`` is recorded in the report header. A failing notebook (or timing round) is reported and the others
  still run; the first error is raised at the end.

  ``shared`` (the default): every notebook runs in one kernel (:func:`shared_kernel`), its namespace and
  dsrepro's loaded models cleared before each, so what one notebook compiled the next reuses from memory (the smoke
  run: 302 s with a kernel per notebook, 202 s shared, measured on 2 cores). Each notebook is still run by
  papermill from its own cells; ``shared=False`` (``dsrepro all --fresh-kernels``) gives each a new kernel."""
  from tqdm.auto import tqdm
  p = notebook_profile(profile, params.get("tasks", ""), params.get("seed", 0))
  todo = schedule([n for n in names() if only is None or n in only], p.wall_rounds)
  times, errors = {}, {}
  with contextlib.ExitStack() as stack:
    reset = stack.enter_context(shared_kernel(run_dir)) if shared else lambda: None
    bar = tqdm(todo, desc=f"notebooks ({profile})", unit="nb", disable=not progress)
    for name in bar:
      label = name if isinstance(name, str) else f"{TIMED} wall-time round {name}"
      bar.set_postfix_str(label)
      t0 = time.perf_counter()
      try:
        if isinstance(name, int):
          table_d1.measure_round(p, name, Path(run_dir).resolve() if run_dir else None)
        else:
          extra = {"command": command} if name == REPORT and command else {}
          run_notebook(name, profile, out_dir, run_dir=run_dir, progress=progress, km=reset(), **params, **extra)
      except Exception as e:  # noqa: BLE001 -- keep going, report at the end
        errors[label] = e
        tqdm.write(f"[dsrepro] {label} FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
      times[label] = time.perf_counter() - t0
    bar.close()
  root = Path(run_dir).resolve() if run_dir else default_root()
  print(f"\nnotebooks ({profile}), executed copies in {root / profile / 'notebooks'}, figures in "
        f"{figures_dir(profile, str(out_dir or ''))}:")
  for name, s in times.items():
    print(f"  {name:<24} {s:8.1f} s  {'FAILED' if name in errors else 'ok'}")
  print(f"  {'total':<24} {sum(times.values()):8.1f} s")
  if errors:
    first = next(iter(errors.values()))
    raise NotebookError(f"{len(errors)} notebook(s) failed: {', '.join(errors)}; the first: "
                        f"{one_line(first)[:500]}") from first
  return times
