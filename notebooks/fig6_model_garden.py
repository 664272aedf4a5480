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
# # Fig. 6: the model garden
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dsrepro/dsrepro/blob/main/notebooks/fig6_model_garden.ipynb)
#
# **What the paper shows.** DistillSpec (arXiv 2310.08461) Fig. 6: quality against latency for a family of model
# sizes, served four ways: Raw (each size alone), Distilled (each size distilled from the largest), Speculative (SD
# with a Raw target and the smallest Raw model as draft) and DistillSpec (SD with a Distilled target and the
# smallest model distilled on-policy from it as draft).
#
# **The paper's claim.** DistillSpec cuts latency at about equal quality: 17.3 -> 2.7 on XSum (6.4x, ROUGE-2 23.1 ->
# 23.0) and 15.0 -> 1.4 on GSM8K (10.7x, accuracy 33.1 -> 34.8).
#
# **How to read the panel.** x = latency per generated token relative to the smallest Raw model (log scale),
# y = quality (task score where the task has one; log-likelihood under the largest model always); points are
# labelled by model size. Up and left is better.

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
tables = notebooks.show_figure("fig6", p, root, out_dir)
tables
