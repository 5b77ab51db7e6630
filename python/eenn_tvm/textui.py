"""Small helpers for what people read in a terminal: tables and short numbers."""

from __future__ import annotations

import contextlib
import logging


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned text columns, right-aligned numeric ones."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    numeric = [bool(rows) and all(_looks_numeric(r[i]) for r in rows) for i in range(len(headers))]

    def line(cells):
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def human_count(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:g}"


def threshold_text(threshold: float) -> str:
    """An exit's threshold as people read it; infinity is an exit that never fires."""
    return "never" if threshold == float("inf") else f"{threshold:.4f}"


def shorten(text: str, width: int) -> str:
    """Keep both ends of long ONNX names: the end usually says which layer it is."""
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep // 2] + "…" + text[len(text) - (keep - keep // 2) :]


def _looks_numeric(cell: str) -> bool:
    return bool(cell) and (cell[0].isdigit() or (cell[0] in "+-." and cell[1:2].isdigit()))


def progress(iterable, label: str, unit_scale: int = 1, total: int | None = None):
    """A progress bar on stderr (stdout stays clean for --json); items count `unit_scale` samples each."""
    import sys

    import click

    items = iterable if total is not None else list(iterable)  # with a total, a stream is shown as it comes
    length = total if total is not None else len(items) * unit_scale
    with click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True) as bar:
        done = 0
        for item in items:
            yield item
            step = min(unit_scale, length - done)
            done += step
            bar.update(step)


@contextlib.contextmanager
def logger_at(name: str, level: int):
    """The logger `name` (the root logger for "") at `level` while the block runs: libraries that log every call
    or round to the console (onnxruntime's quantisation, MetaSchedule) are quieted this way."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)
