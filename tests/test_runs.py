"""runs: atomic files and content-addressed run directories."""
import pytest

from dsrepro import runs
from dsrepro.errors import DamagedArtefact


def test_atomic_path_replaces_only_on_success(tmp_path):
  path = tmp_path / "sub" / "table.csv"
  with runs.atomic_path(path) as tmp:
    assert tmp.parent == path.parent and tmp.suffix == ".csv" and tmp != path
    tmp.write_text("old")
  assert path.read_text() == "old"
  with pytest.raises(RuntimeError, match="boom"):
    with runs.atomic_path(path) as tmp:
      tmp.write_text("half-writ")
      raise RuntimeError("boom")
  assert path.read_text() == "old" and sorted(p.name for p in path.parent.iterdir()) == ["table.csv"]


def test_write_json_and_run_dirs(tmp_path):
  runs.write_json(tmp_path / "a.json", {"b": (1, 2), "a": 0.5})
  assert runs.read_json(tmp_path / "a.json") == {"a": 0.5, "b": [1, 2]}
  d1 = runs.run_dir_for(tmp_path, "sft", {"lr": 0.1, "steps": 3})
  assert d1 == runs.run_dir_for(tmp_path, "sft", {"steps": 3, "lr": 0.1})  # key order does not matter
  assert d1 != runs.run_dir_for(tmp_path, "sft", {"lr": 0.2, "steps": 3}) and not runs.is_done(d1)
  assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_mark_done_records_checksums_and_verification_runs_once(tmp_path, monkeypatch):
  d = runs.run_dir_for(tmp_path, "sft", {"a": 1})
  runs.write_json(d / "model_config.json", {"x": 1})
  (d / "ckpt" / "2").mkdir(parents=True)
  (d / "ckpt" / "2" / "state").write_text("intermediate")  # not a final artefact: not recorded
  (d / "sub").mkdir()
  (d / "sub" / "DONE").write_text("{}")  # a nested run records its own files
  (d / "sub" / "w").write_text("w")
  runs.mark_done(d, {"loss": 0.5})
  done = runs.read_json(d / runs.DONE)
  assert done["loss"] == 0.5 and sorted(done[runs.CHECKSUMS]) == ["config.json", "model_config.json"]
  calls = []
  monkeypatch.setattr(runs, "_sha256", lambda p, f=runs._sha256: calls.append(p) or f(p))
  runs._VERIFIED.clear()
  assert runs.is_done(d) and runs.is_done(d) and len(calls) == 2  # hashed once per process, not per call
  (d / "model_config.json").write_text('{"x": 2}\n')
  runs._VERIFIED.clear()
  with pytest.raises(DamagedArtefact, match=r"model_config\.json: its contents differ.*delete .* and rerun"):
    runs.is_done(d)
