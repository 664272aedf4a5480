"""Test-wide settings.

- Nothing is ever downloaded (dsrepro.hub is exercised with fakes in test_hub.py).
- XLA:CPU compiles without LLVM's expensive optimisations (the same flags `dsrepro plan` compiles with): the test
  models are tiny, so compiling dominates the suite, and these flags cut its time by about a quarter (measured on
  test_speculative + test_domain + test_distill: 140 s -> 104 s on 2 cores). The HLO and its buffer assignment are
  unchanged (test_speculative's in-place cache check still reads them); only the machine code is less optimised,
  and no test measures speed. The papermill kernels of the notebook tests inherit this environment. XLA_FLAGS
  already set are appended after these, so they win.
"""
import os

os.environ.setdefault("DSREPRO_FETCH", "0")
from dsrepro.repro.plan import FAST_CPU_COMPILE, xla_flags  # noqa: E402 (XLA_FLAGS is read at the first compile)

os.environ["XLA_FLAGS"] = f"{xla_flags(FAST_CPU_COMPILE)} {os.environ.get('XLA_FLAGS', '')}".strip()
