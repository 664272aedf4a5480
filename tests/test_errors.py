"""Bad input and damaged state, as a table: each kind raises a typed error (a subclass of the builtin one callers
catch) whose one-line message names the offending value or path, leaves nothing half-written behind, and a rerun
after doing what the message says succeeds. The CLI prints that one line on stderr and exits non-zero."""
import json
import re
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from dsrepro import cli, data, runs
from dsrepro import tokenizer as tok_lib
from dsrepro.errors import (ConfigError, ConfigTypeError, DamagedArtefact, DataError, DataNotFound, DsreproError,
                            PathError)
from dsrepro.models.transformer import ModelConfig, make_model
from dsrepro.repro import notebooks
from dsrepro.repro.profiles import get_profile
from dsrepro.sd.decode import DecodeConfig, check_prompts, generate
from dsrepro.train import TrainConfig, train_sft

V, L = 40, 16
MCFG = ModelConfig(vocab_size=V, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=L)
TCFG = TrainConfig(steps=4, batch_size=4, learning_rate=0.1, ckpt_every=2, log_every=1)


def _data(n=16):
  tokens = ((np.arange(n)[:, None] + np.arange(L)) % V).astype(np.int32)
  return {"tokens": tokens, "loss_mask": np.ones((n, L), np.float32)}


def E(path) -> str:
  return re.escape(str(path))


def _one_line(err) -> str:
  msg = str(err.value)
  assert "\n" not in msg and msg, msg
  assert isinstance(err.value, DsreproError), type(err.value)
  return msg


def _no_temp_files(root: Path) -> None:
  left = [p for p in Path(root).rglob("*") if ".tmp-" in p.name]
  assert not left, left


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
  """A finished tiny SFT run (DONE with checksums); tests copy it before damaging it."""
  d = tmp_path_factory.mktemp("finished") / "sft-run"
  train_sft(MCFG, TCFG, _data(), d)
  assert runs.is_done(d) and runs.CHECKSUMS in json.loads((d / runs.DONE).read_text())
  return d


def _copy(finished: Path, tmp_path: Path) -> Path:
  d = tmp_path / "sft-copy"
  shutil.copytree(finished, d)
  return d


def _biggest(d: Path) -> Path:
  return max((p for p in d.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


# ------------------------------------------------------------------------------------------------ task data

def _task_root(tmp_path, lines: list[str | bytes], task="gsm8k") -> Path:
  root = tmp_path / "data"
  (root / task).mkdir(parents=True)
  ok = json.dumps({"question": "q", "answer": "a\n#### 1"})
  for name in data.TASKS[task].files:
    body = [ok] * 3 if name != "train.jsonl" else lines
    raw = b"\n".join(x if isinstance(x, bytes) else x.encode() for x in body) + b"\n"
    (root / task / name).write_bytes(raw)
  return root


GOOD = json.dumps({"question": "q", "answer": "a\n#### 1"})


@pytest.mark.parametrize("kind, line, want", [
    ("malformed JSON line", '{"question": "q", "answer": "a\\n#### 1"', r"train\.jsonl, line 3: not valid JSON"),
    ("missing field", json.dumps({"question": "q"}), r"train\.jsonl, line 3: missing field 'answer'"),
    ("field of the wrong type", json.dumps({"question": None, "answer": "x"}),
     r"train\.jsonl, line 3: field 'question' must be a string, got None"),
    ("not an object", "[1, 2]", r"train\.jsonl, line 3: expected a JSON object"),
    ("GSM8K answer without '#### N'", json.dumps({"question": "q", "answer": "no number"}),
     r"train\.jsonl, line 3: field 'answer' does not end with '#### N'"),
    ("not UTF-8", b'{"question": "\xff\xfe", "answer": "a"}', r"train\.jsonl, line 3: not UTF-8"),
])
def test_bad_data_file_names_file_line_and_field(tmp_path, kind, line, want):
  root = _task_root(tmp_path, [GOOD, GOOD, line, GOOD])
  with pytest.raises(DataError, match=want) as err:
    data.load_task("gsm8k", "train", data_dir=root)
  assert str(root / "gsm8k" / "train.jsonl") in _one_line(err) and isinstance(err.value, ValueError)
  (root / "gsm8k" / "train.jsonl").write_text("\n".join([GOOD] * 4) + "\n")  # fix the line: the rerun works
  assert len(data.load_task("gsm8k", "validation", data_dir=root)) == 4


def test_explicit_data_root_without_the_task_is_rejected(tmp_path, monkeypatch):
  monkeypatch.setenv("DSREPRO_DATA", str(tmp_path))
  (tmp_path / "gsm8k").mkdir()
  (tmp_path / "gsm8k" / "train.jsonl").write_text(GOOD + "\n")
  with pytest.raises(DataNotFound, match=r"task 'gsm8k' under DSREPRO_DATA=.*expected files \['train\.jsonl', "
                     r"'test\.jsonl'\] in .*gsm8k \(missing test\.jsonl\)") as err:
    data.load_task("gsm8k", "train")
  assert isinstance(err.value, FileNotFoundError) and str(tmp_path) in _one_line(err)


# ------------------------------------------------------------------------------------------------ configs

@pytest.mark.parametrize("overrides, want, typ", [
    (dict(n_eval=0), r"n_eval=0 is out of range: expected an int >= 1", ConfigError),
    (dict(vocab_size=10), r"vocab_size=10 .* >= 259", ConfigError),
    (dict(tasks="gsm8k"), r"tasks='gsm8k' .* non-empty tuple", ConfigTypeError),
    (dict(tasks=("gsm8k", "squad")), r"tasks: unknown name 'squad'; known: gsm8k", ConfigError),
    (dict(target_size="huge"), r"target_size: unknown name 'huge'", ConfigError),
    (dict(lenience_eps=(1.0, 0.0)), r"lenience_eps\[\]=0.0 is out of range", ConfigError),
    (dict(max_prompt_len="24"), r"max_prompt_len='24' .* got a str", ConfigTypeError),
    (dict(profil="smoke"), r"unknown profile field 'profil'", ConfigTypeError),
])
def test_profile_overrides_validated_when_built(overrides, want, typ):
  with pytest.raises(typ, match=want) as err:
    get_profile("smoke", **overrides)
  assert "'smoke'" in _one_line(err)


def test_train_config_types():
  with pytest.raises(TypeError, match=r"TrainConfig\.steps=2\.5 .* an int >= 1"):
    TrainConfig(steps=2.5)
  with pytest.raises(ValueError, match=r"TrainConfig\.learning_rate=-1 "):
    TrainConfig(learning_rate=-1)


# ------------------------------------------------------------------------------------------------ prompts

@pytest.mark.parametrize("bad, where", [(999, "in the prompt"), (-1, "in the prompt"), (40, "in the prompt")])
def test_prompt_token_ids_outside_the_vocabulary(bad, where):
  prompt = np.array([[1, 2, 3, 0], [4, 5, 0, 0]], np.int32)
  prompt[1, 1] = bad
  with pytest.raises(ConfigError, match=rf"token id {bad} at row 1, position 1 \({where}.*\[0, 40\)") as err:
    check_prompts(jnp.asarray(prompt), jnp.array([3, 2]), 4, 16, vocab_size=V)
  _one_line(err)
  check_prompts(jnp.asarray(prompt.clip(0, V - 1)), jnp.array([3, 2]), 4, 16, vocab_size=V)  # fixed: passes


def test_generate_rejects_negative_token_ids():
  model = make_model(MCFG, 0)
  with pytest.raises(ConfigError, match=r"token id -1 at row 0, position 2"):
    generate(model, jnp.array([[1, 2, -1]]), jnp.array([3]), DecodeConfig(max_new_tokens=2))


def test_generate_rejects_ids_past_the_vocabulary():
  model = make_model(MCFG, 0)
  with pytest.raises(ConfigError, match=r"token id 999 at row 0, position 1"):
    generate(model, jnp.array([[1, 999, 3]]), jnp.array([3]), DecodeConfig(max_new_tokens=2))


# ------------------------------------------------------------------------------------------------ paths

@pytest.mark.parametrize("kind", ["a file", "under a file", "under /dev/null"])
def test_unusable_runs_root_is_rejected(tmp_path, monkeypatch, kind):
  f = tmp_path / "afile"
  f.write_text("x")
  root = {"a file": f, "under a file": f / "runs", "under /dev/null": Path("/dev/null/runs")}[kind]
  monkeypatch.setenv("DSREPRO_RUNS", str(root))
  with pytest.raises(PathError, match="DSREPRO_RUNS") as err:
    runs.run_dir_for(root, "sft", {"a": 1})
  assert str(root) in _one_line(err) and isinstance(err.value, OSError)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing created


def test_read_only_runs_root(tmp_path, monkeypatch):
  """A runs root the process may not write to (simulated: root ignores directory permissions, and CI runs as
  root) is a PathError naming it and the reason."""
  ro = tmp_path / "ro"
  ro.mkdir()
  real_mkdir = Path.mkdir

  def mkdir(self, *a, **kw):
    if str(self).startswith(str(ro)):
      raise PermissionError(13, "Permission denied", str(self))
    return real_mkdir(self, *a, **kw)
  monkeypatch.setattr(Path, "mkdir", mkdir)
  with pytest.raises(PathError, match="permission denied|Permission denied") as err:
    runs.run_dir_for(ro / "runs", "sft", {"a": 1})
  assert str(ro / "runs") in _one_line(err)
  assert list(ro.iterdir()) == []


# ------------------------------------------------------------------------------------------------ damaged runs

def test_damaged_params_are_detected_reported_and_rebuilt(finished, tmp_path):
  d = _copy(finished, tmp_path)
  victim = _biggest(d / runs.PARAMS)
  victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # truncated
  with pytest.raises(DamagedArtefact, match=rf"{E(victim)}.*delete {E(d)} and rerun") as err:
    runs.is_done(d)
  assert isinstance(err.value, RuntimeError) and _one_line(err)
  with pytest.raises(DamagedArtefact, match=E(victim)):
    runs.load_model(d)
  shutil.rmtree(d)  # what the message says; the rerun rebuilds it
  train_sft(MCFG, TCFG, _data(), d)
  assert runs.is_done(d) and runs.load_model(d).cfg == MCFG


@pytest.mark.parametrize("name, damage, want", [
    (runs.DONE, lambda p: p.write_text('{"step": 4, "artefact_sha'), r"DONE: not valid JSON"),
    (runs.MODEL_CONFIG, lambda p: p.write_text(p.read_text().replace("16", "17", 1)), r"model_config\.json: its "
     r"contents differ"),
    (runs.METRICS, lambda p: p.unlink(), r"metrics\.jsonl: missing"),
])
def test_damaged_run_files(finished, tmp_path, name, damage, want):
  d = _copy(finished, tmp_path)
  damage(d / name)
  with pytest.raises(DamagedArtefact, match=rf"{want}.*delete {E(d)} and rerun") as err:
    runs.load_model(d)
  _one_line(err)


def test_legacy_done_without_checksums_is_accepted_but_a_broken_checkpoint_is_reported(finished, tmp_path):
  d = _copy(finished, tmp_path)
  done = json.loads((d / runs.DONE).read_text())
  del done[runs.CHECKSUMS]
  (d / runs.DONE).write_text(json.dumps(done))
  assert runs.load_model(d).cfg == MCFG  # an older run: no checksums, still loads
  shutil.rmtree(d / runs.PARAMS)
  with pytest.raises(ValueError, match=r"no saved model .*need params"):
    runs.load_model(d)


def test_unfinished_run_is_never_loaded(finished, tmp_path):
  d = _copy(finished, tmp_path)
  (d / runs.DONE).unlink()
  with pytest.raises(DamagedArtefact, match=rf"{E(d)}: unfinished run .*rerun the training"):
    runs.load_model(d)


def test_truncated_checkpoint_is_reported_then_resume_works(tmp_path):
  d = tmp_path / "part"
  train_sft(MCFG, TCFG, _data(), d, stop_after=3)  # checkpoint at step 2, no DONE (killed after step 3)
  step_dir = d / runs.CKPT / "2"
  for f in (p for p in step_dir.rglob("*") if p.is_file() and p.stat().st_size > 0):
    f.write_bytes(b"\0" * 7)  # every file of the checkpoint destroyed
  with pytest.raises(DamagedArtefact, match=rf"{E(step_dir)}.*delete {E(step_dir)} and rerun") as err:
    train_sft(MCFG, TCFG, _data(), d)
  _one_line(err)
  shutil.rmtree(step_dir)
  train_sft(MCFG, TCFG, _data(), d)  # resumes from scratch (no earlier checkpoint) and finishes
  assert runs.is_done(d)


def test_corrupted_cached_evaluation_json(tmp_path):
  path = tmp_path / "eval" / "sd-0123.json"
  runs.write_json(path, [{"tau": 1.5}])
  path.write_text(path.read_text()[:5])
  with pytest.raises(DamagedArtefact, match=rf"{E(path)}: not valid JSON .*delete {E(path)} and rerun") as err:
    runs.read_json(path)
  _one_line(err)
  _no_temp_files(tmp_path)


def test_metrics_log_half_written_last_line_vs_damaged_middle(tmp_path):
  (tmp_path / runs.METRICS).write_text('{"step": 1}\n{"step": 2}\n{"st')
  assert [r["step"] for r in runs.read_metrics(tmp_path)] == [1, 2]  # a killed writer: dropped, recomputed
  (tmp_path / runs.METRICS).write_text('{"step": 1}\ngarbage\n{"step": 3}\n')
  with pytest.raises(DamagedArtefact, match=r"metrics\.jsonl: line 2 is not a JSON record"):
    runs.read_metrics(tmp_path)


def test_damaged_tokenizer_directory(tmp_path):
  tok = tok_lib.train_tokenizer(["hello world"] * 20, vocab_size=300)
  path = tok_lib.save_tokenizer(tok, tmp_path / "tokenizer")
  (path / "tokenizer.json").write_text((path / "tokenizer.json").read_text()[:100])
  with pytest.raises(DamagedArtefact, match=rf"{E(path)}: cannot be loaded as a tokenizer") as err:
    tok_lib.load_tokenizer(path)
  _one_line(err)
  with pytest.raises(FileNotFoundError, match="nope"):
    tok_lib.load_tokenizer(tmp_path / "nope")


# ------------------------------------------------------------------------------------------------ notebooks, CLI

def test_run_notebook_rejects_undeclared_parameters_before_creating_anything(tmp_path):
  with pytest.raises(ConfigError, match=r"'fig2_kd_algorithms' has no parameter 'profil'; its parameters: "
                     r"profile, tasks, seed"):
    notebooks.run_notebook("fig2_kd_algorithms", "smoke", tmp_path / "out", run_dir=tmp_path / "runs", profil="x")
  assert list(tmp_path.iterdir()) == []


class _Shell:
  def __init__(self, history):
    self.user_ns = {"In": history}


def test_setup_rejects_a_misspelled_papermill_parameter(monkeypatch, tmp_path):
  import IPython
  params = 'profile = "quick"\ntasks = ""\nseed = 0\nrun_dir = ""\nout_dir = "../figures"\n'
  shell = _Shell(["", "import os", params, '# Parameters\nprofil = "smoke"\n', "notebooks.setup(...)"])
  monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
  with pytest.raises(ConfigError, match=r"unknown notebook parameter 'profil': this notebook declares out_dir, "
                     r"profile, run_dir, seed, tasks; check the spelling"):
    notebooks.setup("quick", "", 0, str(tmp_path))
  shell.user_ns["In"][3] = '# Parameters\nprofile = "smoke"\n'
  with pytest.raises(ConfigError, match=r"tasks: unknown name 'squad'"):
    notebooks.setup("smoke", "gsm8k,squad", 0, str(tmp_path))
  with pytest.raises(TypeError, match=r"notebook parameter seed='1'"):
    notebooks.setup("smoke", "", "1", str(tmp_path))
  p, _, out = notebooks.setup("smoke", "gsm8k", 1, str(tmp_path), str(tmp_path / "figures"))
  assert p.seed == 1 and out == tmp_path / "figures" and out.is_dir()


@pytest.mark.parametrize("argv, want", [
    (["train", "--task", "squad", "--profile", "smoke"], r"^dsrepro: error: unknown task 'squad'; known tasks: "),
    (["run", "fig2_kd_algorithms", "-p", "profil", "smoke"], r"has no parameter 'profil'"),
    (["run", "fig2_kd_algorithms", "-p", "seed", "one"], r"-p seed 'one': notebook .* expects an int"),
    (["run", "fig2_kd_algorithms", "-p", "profile", "smoke"], r"set profile with --profile smoke"),
    (["train", "--profile", "smoke", "--run-dir", "/dev/null/runs"], r"cannot create the artefact root "
     r"/dev/null/runs: Not a directory"),
])
def test_cli_failures_are_one_line(capsys, monkeypatch, tmp_path, argv, want):
  monkeypatch.setenv("DSREPRO_RUNS", str(tmp_path / "runs"))
  assert cli.main(argv) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "Traceback" not in err, err
  assert re.search(want, err), err
  with pytest.raises(DsreproError):
    cli.main(["--debug", *argv])


def test_cli_bad_command_line_is_one_line(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["run", "nope"])
  err = capsys.readouterr().err
  assert e.value.code == 2 and err.count("\n") == 1 and "unknown notebook 'nope'" in err, err


@pytest.mark.parametrize("seed", ["-1", "one"])
def test_cli_bad_seed_is_one_line(capsys, seed):
  with pytest.raises(SystemExit) as e:
    cli.main(["all", "--profile", "smoke", "--seed", seed])
  err = capsys.readouterr().err
  assert e.value.code == 2 and err.count("\n") == 1 and f"--seed {seed!r}: expected an int >= 0" in err, err


def test_cli_all_passes_the_seed_and_keeps_seed_runs_apart(monkeypatch, tmp_path):
  """`dsrepro all --seed N` trains and runs every notebook with seed N; N > 0 writes figures/<profile>-seed<N>/ (a
  column of its own in figures/REPORT.md), never over the seed-0 figures."""
  from dsrepro.repro import notebooks, report
  calls = {}
  monkeypatch.setattr(cli, "train", lambda profile, task, run_dir, seed: calls.setdefault("train", seed))
  monkeypatch.setattr(notebooks, "run_all", lambda profile, out, **kw: calls.update(out=out, seed=kw["seed"],
                                                                                     shared=kw["shared"]))
  monkeypatch.setattr(report, "build_overview", lambda root: calls.setdefault("overview", root))
  assert cli.main(["all", "--profile", "smoke", "--run-dir", str(tmp_path), "--seed", "1"]) == 0
  assert calls["train"] == 1 and calls["seed"] == 1 and calls["out"].endswith("figures/smoke-seed1")
  calls.clear()
  assert cli.main(["all", "--profile", "smoke", "--run-dir", str(tmp_path), "--fresh-kernels"]) == 0
  assert calls["train"] == 0 and calls["seed"] == 0 and calls["out"] is None and calls["shared"] is False
  calls.clear()
  assert cli.main(["all", "--profile", "smoke", "--run-dir", str(tmp_path)]) == 0 and calls["shared"] is True


def test_wall_time_round_out_of_range_is_named():
  from dsrepro.repro import evaluations
  with pytest.raises(ValueError, match=r"timing_round=2 is out of range: profile 'smoke' has wall_rounds=2"):
    evaluations.wall_time(get_profile("smoke"), "gsm8k", None, None, 3, 0.0, timing_round=2)
