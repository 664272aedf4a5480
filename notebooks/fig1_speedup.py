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
# # Fig. 1: DistillSpec speedup over the SFT draft
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dsrepro/dsrepro/blob/main/notebooks/fig1_speedup.ipynb)
#
# **What the paper shows.** DistillSpec (Zhou et al., ICLR 2024, arXiv 2310.08461) Fig. 1: the wall-time speedup
# of speculative decoding (SD) over target-only decoding with a draft that was only supervised fine-tuned (SFT) and
# with the same draft after DistillSpec distillation, on five tasks, greedy and T = 1.
#
# **The paper's claim.** The distilled draft speeds SD up by 10-45% over the SFT draft on every task and decoding.
#
# **How to read the panel.** One panel per decoding, one pair of bars per task at each draft's best block size
# gamma. Bars are the paper's speedup model tau / (c gamma + 1) with tau the measured block efficiency and c the
# measured draft / target latency ratio; diamonds are the measured batch-1 wall-time speedup; the bold annotation is
# the improvement of the distilled draft over the SFT draft. The dotted line at 1 is target-only decoding.

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
tables = notebooks.show_figure("fig1", p, root, out_dir)
tables
