"""A job's progress in the terminal: its timeline as readable lines, and a live status line while it runs.

``alter0 send`` on a terminal shows the stage, the routing decision and the executor's progress events as
they happen (a spinner line on stderr, redrawn in place; the permanent lines stay above it), then the
reply on stdout. ``alter0 job show ID --follow`` prints every timeline entry as it appears. Both poll the
job's JobEvent rows by seq, as the web streams do; nothing here writes.

The long commands (``bench routing``, ``backup``, ``restore``, ``verify``, ``workspace prune``) draw a
``Bar`` on stderr while they work: ``with progress_bar(args, label) as bar`` gives one on a terminal and a
``NoBar`` elsewhere (a pipe, a file, ``--json``); the operation calls it as ``on_progress(done, total, what)``.
"""

from __future__ import annotations

import shutil
import sys
import time
from contextlib import contextmanager
from datetime import datetime
from typing import Iterator, TextIO

from .. import views
from ..models import TERMINAL, Job, JobEvent, stage_of

SPINNER = "|/-\\"
#: Seconds between two polls of the database / redraws of the status line.
POLL_SEC = 0.1
#: Event kinds ``send`` keeps as lines (the rest only update the status line).
KEPT = ("stage.finished", "executor.item", "executor.warning", "error", "retry", "retry.requested")


def timeline_line(e: JobEvent) -> str:
    """``HH:MM:SS.mmm  stage     text`` for one timeline entry."""
    at = datetime.fromtimestamp(e.created_at).strftime("%H:%M:%S.%f")[:-3]
    return f"{at}  {(e.stage or '-'):<8}  {views.event_text(e.kind, e.stage, e.data)}"


class StatusLine:
    """One line on a terminal redrawn in place: spinner, stage, elapsed seconds, the latest news."""

    def __init__(self, out: TextIO):
        self.out = out
        self.frame = 0
        self.started = time.monotonic()
        self.shown = False

    def draw(self, stage: str, news: str) -> None:
        self.frame += 1
        width = shutil.get_terminal_size((80, 24)).columns - 1
        text = f"{SPINNER[self.frame % len(SPINNER)]} {stage} {time.monotonic() - self.started:5.1f}s  {news}"
        self.out.write("\r\x1b[K" + " ".join(text.split())[:width])
        self.out.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self.shown = False

    def print(self, line: str) -> None:
        """A permanent line above the status line."""
        self.clear()
        self.out.write(line + "\n")
        self.out.flush()


class Bar:
    """A progress bar redrawn in place on a terminal: ``label [#####.....] done/total  what  elapsed``."""

    WIDTH = 24
    #: Seconds between two redraws (the last step is always drawn).
    EVERY_SEC = 0.1

    def __init__(self, label: str, out: TextIO):
        self.label, self.out = label, out
        self.started = time.monotonic()
        self.drawn_at = 0.0
        self.line = StatusLine(out)

    def __call__(self, done: int, total: int, what: str = "") -> None:
        now = time.monotonic()
        if done < total and now - self.drawn_at < self.EVERY_SEC:
            return
        self.drawn_at = now
        filled = self.WIDTH * done // total if total > 0 else self.WIDTH  # nothing to do: done
        bar = "#" * filled + "." * (self.WIDTH - filled)
        width = shutil.get_terminal_size((80, 24)).columns - 1
        text = f"{self.label} [{bar}] {done}/{total}  {now - self.started:5.1f}s  {what}"
        self.out.write("\r\x1b[K" + " ".join(text.split())[:width])
        self.out.flush()
        self.line.shown = True

    def close(self) -> None:
        """Take the bar off the screen (what the command prints next starts on a clean line)."""
        self.line.clear()


class NoBar:
    """What a command gets off a terminal or with --json: draws nothing."""

    def __call__(self, done: int, total: int, what: str = "") -> None:
        pass

    def close(self) -> None:
        pass


@contextmanager
def progress_bar(args, label: str, out: TextIO | None = None) -> Iterator[Bar | NoBar]:
    """A Bar on stderr when it is a terminal and the command does not print JSON, else a NoBar; taken off the
    screen when the block ends, however it ends."""
    out = out or sys.stderr
    bar = NoBar() if getattr(args, "json", False) or not out.isatty() else Bar(label, out)
    try:
        yield bar
    finally:
        bar.close()


def follow(job_id: int, timeout: float, out: TextIO = sys.stderr, live: bool = True, every_event: bool = False) -> Job:
    """Follow the job until it ends or ``timeout`` passes, printing its progress to ``out``; the job as last seen.

    ``live``: draw the status line (a terminal). ``every_event``: print every entry as a timeline line
    (``job show --follow``); else only the decisions and the executor's progress (``send``)."""
    status = StatusLine(out) if live else None
    deadline = time.monotonic() + timeout
    after, news, writing = 0, "queued", ""
    try:
        while True:
            job = views.get_job(job_id)  # the state first: every event written before it ended is read below
            events = views.new_events(job_id, after)
            for e in events:
                after = e.id
                if e.kind == "executor.delta":
                    writing = (writing + str((e.data or {}).get("text", "")))[-400:]
                    news = "writing: " + writing.replace("\n", " ")[-120:]
                    if every_event:
                        _emit(status, out, timeline_line(e))
                    continue
                news = views.event_text(e.kind, e.stage, e.data)
                if every_event:
                    _emit(status, out, timeline_line(e))
                elif e.kind in KEPT and not (e.kind == "stage.finished" and e.stage == "generate"):
                    _emit(status, out, f"  {e.stage or '-'}: {news}")
            if (job.state in TERMINAL and not events) or time.monotonic() >= deadline:
                return job
            if status is not None:
                status.draw(stage_of(job.status) or job.status, news)
            if not events:
                time.sleep(POLL_SEC)
    finally:
        if status is not None:
            status.clear()


def _emit(status: StatusLine | None, out: TextIO, line: str) -> None:
    if status is not None:
        status.print(line)
    else:
        out.write(line + "\n")
        out.flush()
