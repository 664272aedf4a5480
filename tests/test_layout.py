"""The package's architecture as tests: layers import downwards only, no module grows past ~400 lines, and the
names of the paper's recipes and figures are written in one place."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "dsrepro"
MODULES = sorted(PKG.rglob("*.py"))


def _imports(path: Path) -> set[str]:
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dsrepro"):
      out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    elif isinstance(node, ast.Import):
      out |= {a.name for a in node.names if a.name.startswith("dsrepro")}
  return out


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_layers_import_downwards(path):
  """models/ < sd/ < kd/ < repro/ (< cli): nothing below repro/ imports from it; sd/ and models/ know nothing of
  kd/; models/ knows nothing of sd/."""
  rel = path.relative_to(PKG).parts
  imports = _imports(path)
  forbidden = {"models": ("dsrepro.sd", "dsrepro.kd", "dsrepro.repro"), "sd": ("dsrepro.kd", "dsrepro.repro"),
               "kd": ("dsrepro.repro",)}.get(rel[0], () if rel[0] in ("repro", "cli.py") else ("dsrepro.repro",))
  bad = sorted(i for i in imports if i.startswith(forbidden))
  assert not bad, f"{'/'.join(rel)} imports {bad}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_modules_stay_small(path):
  assert len(path.read_text().splitlines()) <= 420, f"{path.relative_to(PKG)}: split it by concept"


def test_recipe_and_figure_names_are_defined_once():
  """Each KD algorithm name appears as a string literal in exactly one module (kd/recipes.py), each figure name
  is the NAME of exactly one figure module."""
  from dsrepro.kd.recipes import ALGORITHMS
  from dsrepro.repro.figures import FIGURES
  for name in ALGORITHMS:
    holders = [p for p in MODULES if f'"{name}"' in p.read_text()]
    assert [p.name for p in holders] == ["recipes.py"], (name, holders)
  for name in FIGURES:
    holders = [p for p in MODULES if f'NAME = "{name}"' in p.read_text()]
    assert len(holders) == 1, (name, holders)
