"""The accelerators ``dsrepro plan`` projects onto: peak FLOP/s, memory and bandwidth per device, with sources;
and this machine's CPU, measured."""
from __future__ import annotations

import dataclasses
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from dsrepro.errors import ConfigError

__all__ = ["DeviceSpec", "DEVICES", "device_spec"]


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
  """One accelerator: dense peak FLOP/s for bfloat16 matmuls and for float32 matmuls at JAX's DEFAULT precision
  (TF32 on A100/H100, one bf16 pass on TPU), memory and memory bandwidth per device, and where the numbers are
  from. ``shared_host``: the N devices share one peak (forced host devices on a CPU)."""
  name: str
  bf16_flops: float
  fp32_flops: float
  memory_bytes: float
  hbm_bytes_per_s: float
  source: str
  shared_host: bool = False


DEVICES: dict[str, DeviceSpec] = {
    "h100": DeviceSpec("NVIDIA H100 SXM5 80GB", 989e12, 495e12, 80e9, 3.35e12,
                       "NVIDIA H100 Tensor Core GPU datasheet: BF16 1,979 / TF32 989 TFLOPS with sparsity (half "
                       "dense), 80 GB HBM3 at 3.35 TB/s"),
    "a100": DeviceSpec("NVIDIA A100 SXM4 80GB", 312e12, 156e12, 80e9, 2.039e12,
                       "NVIDIA A100 Tensor Core GPU datasheet: BF16 312 / TF32 156 TFLOPS dense, 80 GB HBM2e at "
                       "2,039 GB/s"),
    "v5e": DeviceSpec("Google Cloud TPU v5e (1 chip)", 197e12, 197e12, 16e9, 8.19e11,
                      "Cloud TPU v5e documentation: 197 TFLOPS bf16, 16 GB HBM at 819 GB/s per chip"),
}


@functools.lru_cache(maxsize=1)
def _cpu_spec() -> DeviceSpec:
  """This host's CPU, MEASURED (best of 5 jitted 1024 x 1024 matmuls per dtype, a 64 MiB copy, total RAM)."""
  def best(f, *a):
    jax.block_until_ready(f(*a))
    ts = []
    for _ in range(5):
      t = time.perf_counter()
      jax.block_until_ready(f(*a))
      ts.append(time.perf_counter() - t)
    return min(ts)
  mm = jax.jit(lambda a: a @ a)
  peak = {dt: 2 * 1024 ** 3 / best(mm, jnp.ones((1024, 1024), dt)) for dt in (jnp.float32, jnp.bfloat16)}
  buf = np.ones(2 ** 23, np.float64)
  bw = 2 * buf.nbytes / best(lambda b: b.copy(), buf)
  ram = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
  return DeviceSpec(f"this CPU ({os.cpu_count()} cores)", peak[jnp.bfloat16], peak[jnp.float32], ram, bw,
                    "measured on this machine (matmul throughput, memcpy bandwidth, physical RAM)",
                    shared_host=True)


def device_spec(name: str) -> DeviceSpec:
  if name == "cpu":
    return _cpu_spec()
  if name not in DEVICES:
    raise ConfigError(f"unknown device {name!r}; known: {', '.join([*DEVICES, 'cpu'])}")
  return DEVICES[name]
