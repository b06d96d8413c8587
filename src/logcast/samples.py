"""Figures of each process every few seconds over the last 15 minutes, for the dashboard's
sparklines: kept column by column, so one answer feeds a chart as it is."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

INTERVAL = 2.0  # s between two samples
KEPT = 450  # samples per process: 15 minutes
COLUMNS = ("t", "lines_per_s", "errors", "cpu_percent", "rss_bytes", "gen_tokens_per_s")


class SampleLog:
    """Every process's last `KEPT` samples."""

    def __init__(self, kept: int = KEPT) -> None:
        self.kept = kept
        self._columns: dict[str, dict[str, deque[float | None]]] = {}
        self._errors: dict[str, int] = {}  # errors counted at the last sample

    def add(
        self,
        name: str,
        at: float,
        stats: Mapping[str, Any],
        info: Mapping[str, Any],
        usage: Mapping[str, Any] | None,
    ) -> None:
        """One sample of `name`: its hub figures, its description (model) and resources."""
        columns = self._columns.get(name)
        if columns is None:
            columns = self._columns[name] = {column: deque(maxlen=self.kept) for column in COLUMNS}
        errors = int(stats.get("errors", 0))
        new_errors = max(0, errors - self._errors.get(name, errors))
        self._errors[name] = errors
        model = info.get("model") or {}
        values: dict[str, float | None] = {
            "t": round(at, 3),
            "lines_per_s": stats.get("lines_per_s"),
            "errors": new_errors,
            "cpu_percent": usage.get("cpu_percent") if usage else None,
            "rss_bytes": usage.get("rss_bytes") if usage else None,
            "gen_tokens_per_s": model.get("gen_tokens_per_s"),
        }
        for column, value in values.items():
            columns[column].append(value)

    def forget(self, keep: set[str]) -> None:
        for name in set(self._columns) - keep:
            del self._columns[name]
            self._errors.pop(name, None)

    def since(self, after: float) -> dict[str, dict[str, list[float | None]]]:
        """Each process's samples taken after `after` (unix time), column by column."""
        out: dict[str, dict[str, list[float | None]]] = {}
        for name, columns in self._columns.items():
            times = columns["t"]
            start = next((i for i, t in enumerate(times) if t is not None and t > after), len(times))
            out[name] = {column: list(values)[start:] for column, values in columns.items()}
        return out
