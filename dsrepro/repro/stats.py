"""Statistics of the figures and claims."""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["spearman"]


def spearman(x, y) -> float:
  """Spearman rank correlation (average ranks for ties); nan with < 3 finite pairs or a constant input."""
  d = pd.DataFrame({"x": np.asarray(x, float), "y": np.asarray(y, float)}).dropna()
  if len(d) < 3 or d.x.nunique() < 2 or d.y.nunique() < 2:
    return float("nan")
  return float(np.corrcoef(d.x.rank(), d.y.rank())[0, 1])
