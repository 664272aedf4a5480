"""runs: atomic files and content-addressed run directories."""
import pytest

from dsrepro import runs


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
