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
# # Fig. 2: block efficiency of the KD algorithms
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dsrepro/dsrepro/blob/main/notebooks/fig2_kd_algorithms.ipynb)
#
# **What the paper shows.** DistillSpec (arXiv 2310.08461) Fig. 2: the block efficiency tau (tokens per target
# call) of drafts distilled with each knowledge-distillation algorithm of its Table 1 -- SupervisedKD (FKL on fixed
# ground truth), SeqKD (teacher samples), ImitKD (ground truth + student samples), f-Distill (TVD on teacher +
# student samples) and on-policy GKD (student samples) -- at T = 1 and gamma = 7.
#
# **The paper's claims.** Model-generated training data beats fixed data (about 20% more speedup), and
# SupervisedKD ranks lowest.
#
# **How to read the panel.** One bar per algorithm and task; the dashed line is the SFT draft every run starts from;
# annotations are the gain in tau over it.

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
tables = notebooks.show_figure("fig2", p, root, out_dir)
tables
