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
# # Fig. 5: quality vs efficiency
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dsrepro/dsrepro/blob/main/notebooks/fig5_quality_latency.ipynb)
#
# **What the paper shows.** DistillSpec (arXiv 2310.08461) Fig. 5: (a) a draft's own quality (task score, and here
# also the log-likelihood of its outputs under the target) against its block efficiency as a draft -- distilling
# for SD need not make the draft a better model; (b) lossy SD: lenient acceptance f(p, eps) (f_lin = p / eps, f_sq =
# p / eps^2, f_exp = p^eps) trades output quality for latency as eps falls from 1 (lossless).
#
# **How to read the panels.** (a) one point per draft; (b) one line per lenience function and draft (solid =
# DistillSpec draft, dashed = SFT draft), from eps = 1 (right) towards small eps (left, faster). The distilled draft
# reaches a given latency with less loss of quality.

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
tables = notebooks.show_figure("fig5", p, root, out_dir)
tables
