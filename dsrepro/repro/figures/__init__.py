"""The registry of paper figures and tables: one module per figure (its title, table builder, plot, claims and
key numbers, as a :class:`dsrepro.repro.figure.FigureSpec` named ``SPEC``), listed ONCE here in report order.
The CLI, the notebook runner, the report and the tests all read :data:`FIGURES`. Adding a figure = adding one
module here and one notebook (``notebooks/<spec.notebook>.py``)."""
from __future__ import annotations

from dsrepro.repro.figure import FigureSpec
from dsrepro.repro.figures import adaspec, domain, domain_data, fig1, fig2, fig3, fig4, fig5, fig6, table_d1

# DistillSpec's figures and table, AdaSPEC's table, then the domain-draft study (arXiv 2503.07807).
FIGURES: dict[str, FigureSpec] = {m.SPEC.name: m.SPEC for m in (table_d1, fig1, fig2, fig3, fig4, fig5, fig6,
                                                                 adaspec, domain, domain_data)}


def get(name: str) -> FigureSpec:
  """The figure ``name`` (a registry key such as "fig2", or one of its panels such as "fig3b")."""
  if name in FIGURES:
    return FIGURES[name]
  for spec in FIGURES.values():
    if name in spec.panels or name == spec.notebook:
      return spec
  raise ValueError(f"unknown figure {name!r}; known figures: {', '.join(FIGURES)}")
