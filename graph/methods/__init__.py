"""The methods evokd knows; `loop.method` names one of them.

Nothing outside this registry compares method names: the builder, the pre-flight, the estimate,
the live view and the benchmark ask the `Method` (graph/method.py). A new method is a module in this
folder (its `Method`, its nodes, its estimate) and one line below.
"""

from __future__ import annotations

from evokd.graph.method import Method
from evokd.graph.methods import augment, evokd, evokd_paper, llm2llm, pool, static

# In the order the benchmark lists them (its rows, table and plots).
METHODS: dict[str, Method] = {method.name: method for method in (
    static.METHOD,
    augment.METHOD,
    evokd.METHOD,
    evokd_paper.METHOD,
    llm2llm.METHOD,
    pool.METHOD,
)}


def recorded_name(name: str, evokd_version: str) -> str:
    """The method a run recorded by that evokd version meant by `name` (a name that changed meaning
    names another method now), so that a resume or replay of it runs the method it ran."""
    for method in METHODS.values():
        if any(evokd_version.startswith(version) and name == old for version, old in method.formerly):
            return method.name
    return name
