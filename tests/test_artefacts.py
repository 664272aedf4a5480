"""repro.artefacts: where artefacts are cached, and the context every model of a profile gets."""
from pathlib import Path

from dsrepro.repro import artefacts as ex
from dsrepro.repro.profiles import PROFILES, get_profile


def test_default_root(monkeypatch, tmp_path):
  monkeypatch.delenv("DSREPRO_RUNS", raising=False)
  repo = Path(ex.__file__).resolve().parent.parent.parent
  assert (repo / "pyproject.toml").is_file() and ex.default_root() == repo / "runs"  # a source checkout
  monkeypatch.setenv("DSREPRO_RUNS", str(tmp_path))
  assert ex.default_root() == tmp_path
  assert ex.profile_root(get_profile("smoke"), None) == tmp_path / "smoke"


def test_default_root_installed(monkeypatch, tmp_path):
  """A pip-installed package (no pyproject.toml beside it) caches under the working directory."""
  monkeypatch.delenv("DSREPRO_RUNS", raising=False)
  fake = tmp_path / "site-packages" / "dsrepro" / "repro" / "artefacts.py"
  fake.parent.mkdir(parents=True)
  monkeypatch.setattr(ex, "__file__", str(fake))
  monkeypatch.chdir(tmp_path)
  assert ex.default_root() == tmp_path / "runs"


def test_context_len_fits_training_and_sd():
  for p in PROFILES.values():
    n = ex.context_len(p)
    assert n % 8 == 0 and n >= p.pad_len
    assert n >= p.max_prompt_len + 1 + p.max_new_tokens + max(p.gammas) + 1
