"""Random keys: one root key per seed, split into NAMED streams that are passed explicitly.

``named_key(parent, name)`` is ``fold_in(parent, crc32(name))``: a stream's key depends only on its parent and its
name, so adding a stream never shifts another one (unlike sequential ``split``). ``parent`` is a key or an integer
seed (then the root ``jax.random.key(seed)``). Examples: ``named_key(seed, "batch")`` (training batches),
``named_key(named_key(seed, "batch"), "teacher")`` (teacher samples within a batch).
"""
from __future__ import annotations

import zlib

import jax
import numpy as np

__all__ = ["named_key"]


def named_key(parent, name: str) -> jax.Array:
  """The stream ``name`` of ``parent`` (a jax key, or an int seed meaning ``jax.random.key(seed)``)."""
  key = jax.random.key(parent) if isinstance(parent, (int, np.integer)) else parent
  return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)
