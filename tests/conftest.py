"""Test-wide settings.

- Nothing is ever downloaded (dsrepro.hub is exercised with fakes in test_hub.py).
- XLA:CPU compiles without LLVM's expensive optimisations (the same flags `dsrepro plan` compiles with): the test
  models are tiny, so compiling dominates the suite, and these flags cut its time by about a quarter (measured on
  test_speculative + test_domain + test_distill: 140 s -> 104 s on 2 cores). The HLO and its buffer assignment are
  unchanged (test_speculative's in-place cache check still reads them); only the machine code is less optimised,
  and no test measures speed. On top of those, the tests use XLA:CPU's older (LLVM IR) fusion emitters instead of
  the MLIR ones (``xla_cpu_use_fusion_emitters=false``): compiling the smoke models' SD loops (greedy, T = 1) and
  train step took 2.8-3.5 s instead of 4.2-4.8 s (3 alternating runs, a microbenchmark of
  ``_speculative.lower(...).compile()``). The papermill kernels of the notebook tests inherit this environment.
  XLA_FLAGS already set are appended after these, so they win.
- One persistent JAX compilation cache for the whole run (a fresh temporary directory, removed at exit): the
  notebook kernels, both pytest-xdist workers and every test compile the same small functions again and again
  (the notebooks' smoke run alone: 379 s -> 340 s with it). It is fresh per run, so nothing carries over between
  runs; an executable is reused only for identical HLO, flags and jax version (JAX's cache key).
"""
import atexit
import os
import shutil
import tempfile

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # the controller makes it; xdist workers and kernels inherit it
  _cache = tempfile.mkdtemp(prefix="dsrepro-test-jax-cache-")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ.update(JAX_COMPILATION_CACHE_DIR=_cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

os.environ.setdefault("DSREPRO_FETCH", "0")
from dsrepro.repro.plan import FAST_CPU_COMPILE, xla_flags  # noqa: E402 (XLA_FLAGS is read at the first compile)

TEST_COMPILE = {**FAST_CPU_COMPILE, "xla_cpu_use_fusion_emitters": False}
os.environ["XLA_FLAGS"] = f"{xla_flags(TEST_COMPILE)} {os.environ.get('XLA_FLAGS', '')}".strip()
