# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # AdaSPEC vs DistillSpec
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dsrepro/dsrepro/blob/main/notebooks/table_adaspec.ipynb)
#
# **What the paper shows.** AdaSPEC (arXiv 2510.19779) Table 1: selective distillation, which trains the draft only
# on the tokens it can still learn (those where it lags a reference model most: the top k = 40% of
# KL(p || q) - KL(p || r)), against DistillSpec's FKL distillation on the same data.
#
# **The paper's claim.** AdaSPEC accepts more on every task (Pythia-31M -> Pythia-1.4B after 3 epochs, alpha %:
# GSM8K 57.58 -> 61.02, Alpaca 44.34 -> 47.25, MBPP 46.88 -> 47.73, CNN/DM 73.05 -> 74.22, XSum 47.24 -> 49.11).
#
# **How to read the panel.** Acceptance rate (%) per task and draft, one panel per decoding. Both AdaSPEC stages run
# as many steps as a DistillSpec run (compute-matched; the authors scale AdaSPEC's epochs by 1/k).

# %% Colab only: clone + install, then work from notebooks/ as locally (task data in /content/data)
import os, sys  # noqa: E401
if "google.colab" in sys.modules:
  os.system("git clone -q https://github.com/dsrepro/dsrepro /content/dsrepro && pip install -q -e /content/dsrepro")
  sys.path.insert(0, "/content/dsrepro")
  os.chdir("/content/dsrepro/notebooks")
  os.environ.setdefault("DSREPRO_DATA", "/content/data")

# %% tags=["parameters"]
# profile: smoke | quick | cpu | full | pythia (see dsrepro/repro/profiles.py; full and pythia want a GPU / TPU)
profile = "quick"
# tasks: comma-separated override such as gsm8k,xsum; empty = the profile's tasks
tasks = ""
seed = 0
# run_dir: artefact cache root; empty = the default runs/ (or DSREPRO_RUNS)
run_dir = ""
# out_dir: figures, CSVs and REPORT.md; empty = figures/<profile>/
out_dir = ""

# %%
from dsrepro.repro import notebooks

p, root, out_dir = notebooks.setup(profile, tasks, seed, run_dir, out_dir)
p

# %% [markdown]
# Build the figure: every model it needs is trained once and cached under `runs/<profile>/`; the CSVs
# and the plot go to `out_dir`.

# %%
tables = notebooks.show_figure("adaspec", p, root, out_dir)
tables
