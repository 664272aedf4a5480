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
# # Fig. 4: training data source x divergence
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dsrepro/dsrepro/blob/main/notebooks/fig4_divergence_grid.ipynb)
#
# **What the paper shows.** DistillSpec (arXiv 2310.08461) Fig. 4: the recipe study. Every cell distils the SFT
# draft with one training data source (fixed ground truth, student samples, teacher samples, or teacher + student
# in equal parts) and one divergence (FKL, JSD with beta 0.5, RKL, TVD), and reports the gain in block efficiency
# tau over the SFT draft, greedy and T = 1.
#
# **The paper's claims.** The best recipe depends on task and decoding: XSum greedy, teacher + student data with
# JSD; GSM8K greedy, student data with FKL; GSM8K T = 1, teacher data with RKL.
#
# **How to read the panel.** One heatmap per task x decoding, red = worse than SFT, blue = better; the boxed cell
# is our best.

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
tables = notebooks.show_figure("fig4", p, root, out_dir)
tables
