"""Regenerate notebooks/*.ipynb (thin: parameters, then calls into dsrepro). Run: python notebooks/_make_notebooks.py

Every notebook: a title cell, a Colab install cell, a papermill "parameters" cell (primitives only), a cell that
shows the JAX backend and builds the profile, then the figure cells. STANDALONE notebooks (real_pair: a real
pretrained pair, not a figure; dsrepro.notebooks.run_all skips it) bring their own parameters, setup and intro.
Written without outputs and with minimal metadata so that diffs stay clean.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
COLAB = "https://colab.research.google.com/github/dsrepro/dsrepro/blob/main/notebooks/{name}.ipynb"
BADGE = f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({COLAB})"

INSTALL = '''import os
import subprocess
import sys

if "google.colab" in sys.modules:  # on Colab: clone + install, then work from notebooks/ as locally
  repo = "/content/dsrepro"
  if not os.path.isdir(repo):
    subprocess.check_call(["git", "clone", "-q", "https://github.com/dsrepro/dsrepro", repo])
  subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "-e", repo])
  sys.path.insert(0, repo)  # importable without restarting the runtime
  os.chdir(f"{repo}/notebooks")
  # Task data: upload or mount it laid out as dsrepro/data.py describes (e.g. /content/data/gsm8k/...).
  os.environ.setdefault("DSREPRO_DATA", "/content/data")'''

PARAMS = '''# profile: smoke | quick | full (full = the larger profile, for a GPU / TPU runtime)
profile = "quick"
# tasks: comma-separated override such as gsm8k,xsum; empty = the profile's tasks
tasks = ""
seed = 0
# run_dir: artefact cache root; empty = the default runs/ (or DSREPRO_RUNS)
run_dir = ""
out_dir = "../figures"'''

SETUP = '''import jax
from IPython.display import Image, display

from dsrepro import figures, plots, profiles

print("JAX", jax.__version__, "backend:", jax.default_backend(), "devices:", jax.devices())
p = profiles.get_profile(profile, seed=seed, **({"tasks": tuple(tasks.split(","))} if tasks else {}))
root = run_dir or None
p'''


def _figure(name: str) -> list:
  df = f"df_{name}"
  return [new_code_cell(f'{df} = figures.{name}(p, root)\nfigures.save({df}, out_dir, "{name}")\n{df}'),
          new_code_cell(f'paths = plots.{name}({df}, out_dir)\ndisplay(Image(str(paths[0])))')]


# name -> (title, paper figure, description, body cells)
NOTEBOOKS = {
    "fig1_speedup": ("Fig. 1: DistillSpec speedup over the SFT draft", "Figure 1",
                     "Speedup of speculative decoding with the distilled (DistillSpec, on-policy GKD) draft vs the "
                     "supervised fine-tuned draft, per task, greedy and T = 1, at each model's best gamma.",
                     _figure("fig1")),
    "fig2_kd_algorithms": ("Fig. 2: block efficiency of the KD algorithms", "Figure 2",
                           "Block efficiency tau of drafts distilled with SupervisedKD, SeqKD, ImitKD, f-Distill "
                           "and on-policy GKD (paper Table 1), against the SFT draft.", _figure("fig2")),
    "fig3_alignment": ("Fig. 3: draft / target alignment", "Figure 3 (a, b, c)",
                       "(a) acceptance rate during distillation, (b) per-example tau of the SFT vs the distilled "
                       "draft, (c) theoretical vs empirical tau.",
                       _figure("fig3a") + _figure("fig3b") + _figure("fig3c") + [new_code_cell(
                           "paths = plots.fig3(df_fig3a, df_fig3b, df_fig3c, out_dir)\n"
                           "display(Image(str(paths[0])))")]),
    "fig4_divergence_grid": ("Fig. 4: data source x divergence", "Figure 4",
                             "tau improvement over the SFT draft for every training data source (fixed ground "
                             "truth, student, teacher, both) and divergence (FKL, JSD, RKL, TVD).", _figure("fig4")),
    "fig5_quality_latency": ("Fig. 5: quality vs efficiency", "Figure 5 (a, b)",
                             "(a) the draft's own quality vs its block efficiency; (b) lossy speculative decoding, "
                             "quality vs latency as the lenience eps varies (f_lin, f_sq, f_exp).",
                             _figure("fig5a") + _figure("fig5b")),
    "fig6_model_garden": ("Fig. 6: model garden", "Figure 6",
                          "Quality vs latency over the model sizes: Raw, Distilled, Speculative and DistillSpec.",
                          _figure("fig6")),
    "table_d1": ("Table D.1: acceptance, block efficiency and speedup", "Table D.1 (appendix)",
                 "alpha, tau, relative latency c and speedups for every task x gamma x decoding, SFT vs "
                 "DistillSpec draft, with measured batch-1 wall time.", _figure("table_d1")),
    "table_adaspec": ("AdaSPEC vs DistillSpec", "AdaSPEC (arXiv 2510.19779), main table",
                      "Acceptance rate of AdaSPEC's selectively distilled draft vs DistillSpec drafts.",
                      _figure("adaspec_table")),
    "zz_report": ("Report: our numbers vs the paper's claims", "all figures",
                  "Builds `REPORT.md` in `out_dir` from the CSVs and figures written by the other notebooks "
                  "(run them first; missing ones are reported as not run).",
                  [new_code_cell('from IPython.display import Markdown\n\nfrom dsrepro import report\n\n'
                                 'path = report.build_report(out_dir, profile, command=command or None)\n'
                                 'print(path)\ndisplay(Markdown(path.read_text()))')]),
}


def make(name: str) -> nbformat.NotebookNode:
  title, paper, desc, body = NOTEBOOKS[name]
  report_param = '\n# command: the command line recorded in the report header\ncommand = ""'
  params = PARAMS + (report_param if name == "zz_report" else "")
  setup = SETUP if name != "zz_report" else SETUP.replace("from dsrepro import figures, plots, profiles",
                                                          "from dsrepro import profiles")
  intro = (f"# {title}\n\n{BADGE.format(name=name)}\n\nReproduces DistillSpec (Zhou et al., "
           f"ICLR 2024) **{paper}**. {desc}\n\nArtefacts are cached under `runs/<profile>/`; "
           "`profile = \"full\"` is the larger profile, meant for a GPU / TPU runtime.")
  if name in STANDALONE:  # not a figure: own parameters, setup and introduction
    params, setup, intro = STANDALONE[name]
    intro = f"# {title}\n\n{BADGE.format(name=name)}\n\n{intro}"
  params_cell = new_code_cell(params, metadata={"tags": ["parameters"]})
  cells = [new_markdown_cell(intro), new_code_cell(INSTALL), params_cell, new_code_cell(setup), *body]
  nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                          "language": "python"}})
  for i, c in enumerate(nb.cells):
    c.id = f"{name[:20]}-{i}"   # stable cell ids: regenerating gives identical files
  return nb


REAL_PAIR_PARAMS = '''# target_path / draft_path: local HF checkpoint directories (config.json, weights, tokenizer)
# of GPT-2, GPT-NeoX (Pythia), Llama or Qwen2 models; both must use the same vocabulary
target_path = ""
draft_path = ""
task = "gsm8k"
# method: distillspec | adaspec; algorithm (DistillSpec only): supervised_kd | seqkd | imitkd | f_distill | gkd
method = "distillspec"
algorithm = "gkd"
steps = 200
batch_size = 8
# Adafactor's relative step size (0.01-0.05 for fine-tuning)
learning_rate = 0.02
n_train = 2000
n_eval = 64
max_prompt_len = 128
max_new_tokens = 64
# comma-separated
gammas = "3,5,7"
temperatures = "0,1"
# target_dtype: float32 | bfloat16 (the draft is always trained in float32)
target_dtype = "float32"
seed = 0
# run_dir: artefact cache root; empty = runs/real_pair (or $DSREPRO_RUNS/real_pair)
run_dir = ""
out_dir = "../figures"'''

REAL_PAIR_SETUP = '''import jax
from IPython.display import Image, display

from dsrepro import real_pair

print("JAX", jax.__version__, "backend:", jax.default_backend(), "devices:", jax.devices())
real_pair.check_paths(target_path, draft_path)  # a clear error when the paths are not set'''

REAL_PAIR_INTRO = ("Distils a **real pretrained draft** towards a **real pretrained target** (local HuggingFace "
                   "checkpoints, e.g. Pythia-70M / Pythia-1.4B) with DistillSpec (on-policy GKD by default) or "
                   "AdaSPEC, then measures speculative decoding with the raw and the distilled draft: acceptance "
                   "rate, block efficiency tau, the measured cost ratio c and the speedup tau / (c gamma + 1), "
                   "per gamma and decoding. Set `target_path` and `draft_path` below (nothing is downloaded). "
                   "Memory and time: see the docstring of `dsrepro.real_pair` (a 1.4B target wants a GPU). "
                   "Writes `real_pair.csv` and `real_pair.png` into `out_dir`; runs are cached under `run_dir`.")

STANDALONE = {"real_pair": (REAL_PAIR_PARAMS, REAL_PAIR_SETUP, REAL_PAIR_INTRO)}
NOTEBOOKS["real_pair"] = (
    "DistillSpec on a real pretrained pair", "", "",
    [new_code_cell("df = real_pair.distill_real_pair(\n"
                   "    target_path, draft_path, task, method=method, algorithm=algorithm, steps=steps,\n"
                   "    batch_size=batch_size, learning_rate=learning_rate, n_train=n_train, n_eval=n_eval,\n"
                   "    max_prompt_len=max_prompt_len, max_new_tokens=max_new_tokens, gammas=gammas,\n"
                   "    temperatures=temperatures, run_dir=run_dir or None, seed=seed, target_dtype=target_dtype)\n"
                   "df"),
     new_code_cell("csv_path, png_path = real_pair.save_results(df, out_dir)\n"
                   "print(csv_path)\ndisplay(Image(str(png_path)))")])


def main():
  for name in NOTEBOOKS:
    nbformat.write(make(name), HERE / f"{name}.ipynb")
    print("wrote", HERE / f"{name}.ipynb")


if __name__ == "__main__":
  main()
