"""No import cycle between any two modules of mloop, flows, models, serving and monitoring.

import-linter's layers contract (test_layers.py) forbids imports that point up, not a cycle inside one
layer (two capabilities, or two modules of one package). This test reads the graph import-linter reads
(grimp: every import, those inside functions and under ``TYPE_CHECKING`` included, since a lazy import
hides a cycle rather than breaking it) and fails naming the modules of each cycle: each strongly
connected component of more than one module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import grimp

PACKAGES = ("mloop", "flows", "models", "serving", "monitoring")


def import_map(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    """Each module and the modules it imports directly."""
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def cycles(imports: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, each sorted (Tarjan's algorithm,
    iterative so that a long import chain cannot hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root in sorted(imports):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(imports.get(root, ())))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(imports.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def test_finder_names_every_cycle_and_nothing_else() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in [
        ("p.a", "p.b"),
        ("p.b", "p.a"),  # a two-module cycle
        ("p.c", "p.d"),
        ("p.d", "p.e"),
        ("p.e", "p.c"),  # a three-module cycle
        ("p.e", "p.f"),  # out of the cycle, not in it
        ("p.g", "p.a"),  # into a cycle, not in it
    ]:
        graph.add_import(importer=importer, imported=imported)
    assert cycles(import_map(graph)) == [["p.a", "p.b"], ["p.c", "p.d", "p.e"]]
    assert cycles({"x": {"y"}, "y": set()}) == []


def test_no_import_cycle() -> None:
    graph = grimp.build_graph(*PACKAGES)
    found = cycles(import_map(graph))
    assert not found, "import cycles (each line: the modules of one cycle):\n" + "\n".join(
        " <-> ".join(c) for c in found
    )
