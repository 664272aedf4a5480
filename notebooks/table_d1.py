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
# # Table D.1: acceptance, block efficiency and speedup
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dsrepro/dsrepro/blob/main/notebooks/table_d1.ipynb)
#
# **What the paper shows.** DistillSpec (arXiv 2310.08461) Table D.1: for every task, block size gamma and
# decoding, the acceptance rate alpha, the block efficiency tau, the relative latency c of draft and target and the
# resulting speedups, with the SFT draft and with the DistillSpec draft.
#
# **How to read the table.** `alpha_hat` = accepted / drafted tokens in real SD runs, `alpha_tf` = the
# teacher-forced acceptance on the target's outputs, `speedup_c` = tau / (c gamma + 1) (the paper's model),
# `speedup_pred` = tau t_target / (gamma t_draft + t_verify) from measured call latencies, `speedup_wall` = measured
# batch-1 wall time of target-only decoding / SD. Where these disagree, one of their assumptions fails here.

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
tables = notebooks.show_figure("table_d1", p, root, out_dir)
tables
