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
# # Report: our numbers against the papers' claims
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dsrepro/dsrepro/blob/main/notebooks/report.ipynb)
#
# Builds `REPORT.md` in `out_dir` from the CSVs and plots the figure notebooks wrote there (run them first; a
# figure whose CSVs are missing is reported as not run). Every claim of DistillSpec (arXiv 2310.08461) and AdaSPEC
# (arXiv 2510.19779) is judged by the rule written beside it.

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
# command: the command line recorded in the report header
command = ""

# %%
from IPython.display import Markdown, display

from dsrepro.repro import notebooks, report

p, root, out = notebooks.setup(profile, tasks, seed, run_dir, out_dir)
path = report.build_report(out, profile, command=command or None)
if not out_dir:  # figures/<profile>/: also refresh the claims x profiles table in figures/REPORT.md
  print(report.build_overview(out.parent))
display(Markdown(path.read_text()))
