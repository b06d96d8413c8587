"""`depends_on`: which processes start after which, checked whole at load time (names,
conditions, probes, cycles), and the order that follows from it."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from logcast.config.locate import Key
from logcast.config.reader import Reader
from logcast.config.settings import Condition, ProcessSettings

__all__ = ["check_dependencies", "parse_depends_on", "start_order"]

_CONDITIONS = ", ".join(c.value for c in Condition)


def parse_depends_on(reader: Reader, raw: dict[str, Any], key: Key) -> Mapping[str, Condition]:
    """`depends_on = { db = "ready", migrate = "exited_ok" }`, in the order written. The
    names are checked against the other processes later (`check_dependencies`)."""
    value = raw.get("depends_on", {})
    if not isinstance(value, dict):
        raise reader.expected(key, 'a table of process names and conditions, such as { db = "ready" }', value)
    depends: dict[str, Condition] = {}
    for name, condition in value.items():
        if not isinstance(condition, str):
            raise reader.expected((*key, name), f"a condition ({_CONDITIONS})", condition)
        try:
            depends[name] = Condition(condition)
        except ValueError:
            raise reader.error(
                (*key, name), f"unknown condition {condition!r} (expected one of: {_CONDITIONS})"
            ) from None
    return MappingProxyType(depends)


def check_dependencies(reader: Reader, processes: Mapping[str, ProcessSettings]) -> None:
    """Every dependency names another configured process, `ready` only one with a
    readiness probe, and no process waits, however indirectly, for itself."""
    aliases = {alias: name for name, p in processes.items() for alias in p.aliases if alias != name}
    for name, process in processes.items():
        section: Key = ("process", name)
        if process.restart_with and not process.depends_on:
            raise reader.error(
                (*section, "restart_with"), "restart_with = true needs depends_on (it has no dependency)"
            )
        for dep, condition in process.depends_on.items():
            key = (*section, "depends_on", dep)
            if dep == name:
                raise reader.error(key, f"process {name!r} cannot depend on itself")
            if dep not in processes:
                if dep in aliases:
                    hint = f": it is an alias of process {aliases[dep]!r}, depend on that name"
                else:
                    close = difflib.get_close_matches(dep, list(processes), n=1, cutoff=0.6)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise reader.error(key, f"unknown process {dep!r}{hint}")
            if condition is Condition.READY and processes[dep].ready is None:
                raise reader.error(
                    key,
                    f"process {dep!r} has no readiness probe (ready = {{ log = ... }} or {{ http = ... }}),"
                    ' so it never becomes ready: give it one, or depend on it with "started"',
                )
    cycle = _find_cycle(processes)
    if cycle is not None:
        raise reader.error(
            ("process", cycle[0], "depends_on", cycle[1]), "dependency cycle: " + " → ".join(cycle)
        )


def _find_cycle(processes: Mapping[str, ProcessSettings]) -> list[str] | None:
    """A cycle as `[a, b, a]`, starting from its member that comes first in the file; None
    if there is none. Depth-first, in config order, so that the answer is stable."""
    done: set[str] = set()
    for root in processes:
        if root in done:
            continue
        path: list[str] = [root]
        on_path = {root}
        todo = [iter(processes[root].depends_on)]
        while todo:
            dep = next(todo[-1], None)
            if dep is None:
                todo.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                continue
            if dep in on_path:
                cycle = path[path.index(dep) :]
                order = list(processes)
                first = min(range(len(cycle)), key=lambda i: order.index(cycle[i]))
                cycle = cycle[first:] + cycle[:first]
                return [*cycle, cycle[0]]
            if dep in done or dep not in processes:
                continue
            path.append(dep)
            on_path.add(dep)
            todo.append(iter(processes[dep].depends_on))
    return None


def start_order(processes: Mapping[str, ProcessSettings]) -> list[str]:
    """Every process after its dependencies, otherwise in config order (the configuration
    has no cycle: `check_dependencies` refused it)."""
    order: list[str] = []
    placed: set[str] = set()

    def place(name: str, seen: frozenset[str]) -> None:
        if name in placed or name in seen or name not in processes:
            return
        for dep in processes[name].depends_on:
            place(dep, seen | {name})
        placed.add(name)
        order.append(name)

    for name in processes:
        place(name, frozenset())
    return order
