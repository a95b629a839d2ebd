"""The console every command prints to, and tables that keep their meaning at any width.

One width for every command (:func:`width`): ``$COLUMNS`` when set, else the terminal's, else 100 (a pipe,
a CI log). A table (:func:`fit`) names the columns that must stay (the artifact, its default marker, its
verdict) and the order in which the others go when the width is short: columns are dropped whole, never
squeezed, so a number is never cut into ``1.00…``. The verdict column keeps its label (pass, FAIL, ...)
and as much of the reason as fits in two lines; a reason cut short gets a numbered note under the table
with all of it (the JSON always has all of it).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

DEFAULT_WIDTH = 100  # a pipe or a CI log without $COLUMNS
MIN_WIDTH = 40
VERDICT_LINES = 2  # a row explains itself in at most this many lines
REASON_ROOM = 16  # the verdict column's room for a reason, beside its label, before optional columns go


def width(stream=None) -> int:
    """``$COLUMNS`` (a positive integer, at least 40), else the width of the terminal ``stream`` (default: standard
    output) is, else 100."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return max(int(columns), MIN_WIDTH)
    stream = stream or sys.stdout
    try:
        if stream.isatty() and (size := os.get_terminal_size(stream.fileno()).columns) > 0:  # 0: size unknown
            return max(size, MIN_WIDTH)
    except (OSError, ValueError, AttributeError):  # not a real terminal after all (a test's capture, a closed fd)
        pass
    return DEFAULT_WIDTH


_width = width  # console()'s keyword of the same name hides it


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """`edgecnn check DIR | head -1`: the reader left. Print nothing more (rich would exit 1 here, so a
        passing check would read as failed); the command finishes and exits with its own status."""
        self.quiet = True
        stdout_to_devnull()


def stdout_to_devnull() -> None:
    """The reader of stdout left: what is still written (and flushed at exit) goes nowhere, quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def console(*, width: int | None = None, stderr: bool = False, **kwargs) -> Console:
    """The console every command prints to (standard error with ``stderr``), :func:`width` columns wide; colour
    only on a terminal. A reader that leaves the pipe ends the output, not the command."""
    return _Console(width=width or _width(sys.stderr if stderr else None), stderr=stderr, **kwargs)


@dataclass(frozen=True)
class Col:
    """A column: ``drop`` 0 stays at any width; among the others the highest ``drop`` goes first."""

    header: str
    justify: str = "right"
    drop: int = 0


@dataclass(frozen=True)
class Verdict:
    """A verdict cell: its label (rich markup: pass, FAIL, advisory...) and the reason, plain text."""

    label: str
    reason: str = ""

    def text(self, reason: str | None = None) -> Text:
        text = Text.from_markup(self.label)
        why = self.reason if reason is None else reason
        return text.append(" " + why) if why else text


def _table(title: str | None, cols: list[Col], rows: list[list], caption: str | None = None) -> Table:
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, padding=0, pad_edge=False,
                  collapse_padding=True, show_edge=False)
    for c in cols:  # wrapping allowed (folding, never an ellipsis), but only a verdict ever needs it
        table.add_column(c.header, justify=c.justify, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def _natural(table: Table, con: Console) -> int:
    return Measurement.get(con, con.options.update_width(10_000), table).maximum


def _fits(text: Text, con: Console, room: int) -> bool:
    return len(text.wrap(con, room, overflow="fold")) <= VERDICT_LINES


def _shorten(v: Verdict, con: Console, room: int, mark: str) -> Text:
    """The label and the reason's first clauses (split at '; ') or, when even one is too long, its first words,
    then ``mark``, in at most two lines of ``room`` cells. Cut between words only: a figure is whole or absent."""
    clauses = v.reason.split("; ")
    for k in range(len(clauses) - 1, 0, -1):
        text = v.text("; ".join(clauses[:k]) + " " + mark)
        if _fits(text, con, room):
            return text
    words = v.reason.split()
    while words:
        text = v.text(" ".join(words) + " " + mark)
        if _fits(text, con, room):
            return text
        words.pop()
    return v.text(mark)


def fit(cols: list[Col], rows: list[list], *, title: str | None = None, caption: list[str] | None = None,
        con: Console | None = None, key: int = 0) -> Table:
    """A table of ``rows`` (cells: rich markup, or a :class:`Verdict`) no wider than the console: columns
    are dropped, highest ``drop`` first, until the rest fits with :data:`REASON_ROOM` cells for a verdict's
    reason; a reason that still does not fit in two lines is cut between words and given a note (keyed
    by the row's cell ``key``) under the table, after ``caption``'s lines. Dropped columns are named there."""
    con = con or console()
    limit = con.width
    keep = list(range(len(cols)))
    has_verdict = [i for i in keep if any(isinstance(r[i], Verdict) for r in rows)]

    def cell(c):  # a verdict as its label and REASON_ROOM cells of its reason (its width, not its words)
        if not isinstance(c, Verdict):
            return c
        return Text.from_markup(c.label) + Text(" " + "x" * min(REASON_ROOM, len(c.reason)) if c.reason else "")

    def probe(idx: list[int]) -> Table:
        return _table(None, [cols[i] for i in idx], [[cell(r[i]) for i in idx] for r in rows])

    dropped = []
    while _natural(probe(keep), con) > limit:
        optional = [i for i in keep if cols[i].drop > 0]
        if not optional:
            break
        worst = max(optional, key=lambda i: (cols[i].drop, i))
        keep.remove(worst)
        dropped.append(cols[worst].header)
    notes = []
    body = [[r[i] for i in keep] for r in rows]
    for v_idx in [keep.index(i) for i in has_verdict]:
        others = _natural(_table(None, [cols[i] for i in keep],
                                 [[c if j != v_idx else "" for j, c in enumerate(r)] for r in body]), con)
        room = max(limit - others + Text(cols[keep[v_idx]].header).cell_len, 8)
        for r, row in zip(rows, body):
            v = row[v_idx]
            if not isinstance(v, Verdict):
                continue
            if _fits(v.text(), con, room):
                row[v_idx] = v.text()
                continue
            mark = f"[{len(notes) + 1}]"
            row[v_idx] = _shorten(v, con, room, mark)
            notes.append(f"{mark} {Text.from_markup(str(r[key])).plain}: {v.reason}")
    lines = list(caption or ()) + notes
    if dropped:
        lines.append(f"({limit} columns: {', '.join(dropped)} not shown; set COLUMNS wider, or see the JSON)")
    table = _table(title, [cols[i] for i in keep], body, caption=Text("\n".join(lines)) if lines else None)
    table.caption_justify = "left"
    return table
