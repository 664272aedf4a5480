"""The errors dsrepro raises on bad input and damaged state: typed, each with a one-line message that names the
offending value or path, what was expected and how to fix it.

Each subclasses the builtin exception that callers (and older code) already catch, so ``except ValueError`` keeps
working: a bad setting is a :class:`ConfigError` (a ``ValueError``), a missing explicitly-set data folder a
:class:`DataNotFound` (a ``FileNotFoundError``). The ``dsrepro`` command prints ``dsrepro: error: <message>`` for
any of them and exits non-zero, without a traceback (``--debug`` shows it).

=====================  ==========================  ====================================================================
error                  also a                      raised for
=====================  ==========================  ====================================================================
ConfigError            ValueError                  a profile / config field of the wrong type or out of range, an
                                                   unknown name (profile, task, notebook parameter), a prompt token id
                                                   outside the vocabulary (ConfigTypeError, also a TypeError: a
                                                   value of the wrong type or an unknown setting name)
DataError              ValueError                  a malformed task data file: names the file, line and field
DataNotFound           FileNotFoundError           task files missing where they were looked for (every path named),
                                                   or another input folder that does not exist
PathError              OSError                     an explicitly set path (``DSREPRO_RUNS``, ``--run-dir``, a run
                                                   directory) that cannot be created or written
DamagedArtefact        RuntimeError                a file under ``runs/`` that is truncated, corrupted or half-written:
                                                   names it and says to delete it and rerun
=====================  ==========================  ====================================================================
"""
from __future__ import annotations

import math
import numbers

__all__ = ["DsreproError", "ConfigError", "ConfigTypeError", "DataError", "DataNotFound", "PathError",
           "DamagedArtefact", "NotebookError", "one_line", "check_int", "check_real"]


def one_line(text: str) -> str:
  """``text`` on one line: newlines and runs of spaces become single spaces."""
  return " ".join(str(text).split())


class DsreproError(Exception):
  """Base class: ``str(error)`` is the whole (one-line) message."""

  def __str__(self) -> str:
    return str(self.args[0]) if self.args else ""


class ConfigError(DsreproError, ValueError):
  """A setting or argument of the wrong type, out of range, or an unknown name."""


class DataError(DsreproError, ValueError):
  """A malformed task data file (the message names the file, the line number and the field)."""


class DataNotFound(DsreproError, FileNotFoundError):
  """Task files missing under the data root(s) searched (the message names every path searched), or another input
  file or folder that does not exist."""


class PathError(DsreproError, OSError):
  """An explicitly set path that cannot be used (not a directory, not writable)."""


class DamagedArtefact(DsreproError, RuntimeError):
  """A damaged or half-written artefact under ``runs/`` (the message names it and how to recover)."""

  def __init__(self, path, problem: str, fix: str | None = None):
    self.path = str(path)
    fix = fix or f"delete {self.path} and rerun (it is rebuilt from scratch)"
    super().__init__(f"damaged artefact {self.path}: {problem}; {fix}")


class ConfigTypeError(ConfigError, TypeError):
  """A setting of the wrong type, or an unknown setting name (also a TypeError, as Python raises for those)."""


def check_int(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
  """``value`` if it is an int (not a bool) in [lo, hi]; else ConfigTypeError / ConfigError naming ``name``."""
  want = "an int" + (f" >= {lo}" if lo is not None else "") + (f" and <= {hi}" if hi is not None else "")
  if not isinstance(value, numbers.Integral) or isinstance(value, bool):
    raise ConfigTypeError(f"{name}={value!r} is not valid: expected {want}, got a {type(value).__name__}")
  if (lo is not None and value < lo) or (hi is not None and value > hi):
    raise ConfigError(f"{name}={value!r} is out of range: expected {want}")
  return value


def check_real(name: str, value, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> float:
  """``value`` if it is a finite real number (not a bool) in [lo, hi] (``(lo, hi]`` with lo_open); else
  ConfigTypeError / ConfigError naming ``name``."""
  bounds = (f" > {lo}" if lo_open else f" >= {lo}") if lo is not None else ""
  want = "a finite number" + bounds + (f" and <= {hi}" if hi is not None else "")
  if not isinstance(value, numbers.Real) or isinstance(value, bool):
    raise ConfigTypeError(f"{name}={value!r} is not valid: expected {want}, got a {type(value).__name__}")
  bad = not math.isfinite(value) or (lo is not None and (value <= lo if lo_open else value < lo))
  if bad or (hi is not None and value > hi):
    raise ConfigError(f"{name}={value!r} is out of range: expected {want}")
  return value


class NotebookError(DsreproError, RuntimeError):
  """A notebook run by papermill failed: names the notebook, the cell's error and the executed copy to read."""
