"""The terminal side of `make demo`: a progress display, warnings only on the console, every
log line (Dagster's run events at DEBUG, Python warnings such as Dagster's BetaWarning,
alembic, httpx, the generator) in one log file.

Where the noise came from, and where it goes now:

- Dagster's run events: a job's default `console` logger writes every event, DEBUG included,
  to stderr. `run_quietly(job)` gives the run one logger instead, `chainlake.demo.dagster`, a
  plain Python logger whose records reach the root handlers below: all of them the file, only
  warnings the console (a run's failure is reported by the demo itself, in two lines).
- A run's compute-log capture points file descriptors 1 and 2 into the run's log files (and
  mirrors them back), so the console writes to a copy of the terminal's stdout taken before
  any run (`open_console`).
- Python's `warnings` (BetaWarning, deprecations) go to the `py.warnings` logger: file only.
- Library loggers (alembic, httpx, urllib3, ...) propagate to the root: INFO and DEBUG to the
  file, WARNING and above to the console, one line each (a traceback stays in the file).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

if TYPE_CHECKING:
    import dagster as dg

DAGSTER_LOGGER = "chainlake.demo.dagster"
# A record with `file_only=True` (extra) is kept out of the console.
FILE_ONLY = {"file_only": True}
# Libraries whose DEBUG records are a line per byte sent, not worth a file.
QUIET_LIBRARIES = ("httpcore", "hpack", "urllib3", "botocore", "s3transfer", "asyncio")

_listeners: list[Callable[[Any], None]] = []


def open_console() -> Console:
    """A rich Console on a copy of this process's stdout, so the display reaches the terminal
    while a Dagster run captures (redirects) file descriptors 1 and 2."""
    stream = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    return Console(file=stream, highlight=False, soft_wrap=True)


class _ConsoleHandler(logging.Handler):
    """Records at WARNING and above as one line each, printed above the progress display."""

    def __init__(self, console: Console) -> None:
        super().__init__(level=logging.WARNING)
        self.console = console

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "file_only", False) or record.name == "py.warnings":
            return False
        # Dagster run events: failures are the demo's own report; only warnings show here.
        return not (record.name == DAGSTER_LOGGER and record.levelno >= logging.ERROR)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            meta = getattr(record, "dagster_meta", None)
            text = meta["orig_message"] if meta else record.getMessage()
            first = next((line for line in str(text).splitlines() if line.strip()), "")
            where = (meta or {}).get("step_key") or record.name
            style = "red" if record.levelno >= logging.ERROR else "yellow"
            self.console.print(
                f"[{style}]{record.levelname.lower()}[/{style}] {where}: {first[:200]}",
                markup=True,
                highlight=False,
            )
        except Exception:
            self.handleError(record)


class _EventHandler(logging.Handler):
    """Hands each Dagster event of a run to the listeners (the progress display)."""

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None)
        event = meta.get("dagster_event") if meta else None
        if event is not None:
            for listener in list(_listeners):
                listener(event)


def setup_logging(log_path: Path, console: Console) -> None:
    """Everything to `log_path` (DEBUG), WARNING and above to `console`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(logging.DEBUG)
    to_file = logging.FileHandler(log_path, encoding="utf-8")
    to_file.setLevel(logging.DEBUG)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(to_file)
    root.addHandler(_ConsoleHandler(console))
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.INFO)
    # Dagster's own logger reaches the root like any other (no handler of its own here).
    dagster_logger = logging.getLogger("dagster")
    for h in list(dagster_logger.handlers):
        dagster_logger.removeHandler(h)
    dagster_logger.propagate = True
    runs = logging.getLogger(DAGSTER_LOGGER)
    runs.setLevel(logging.DEBUG)
    runs.addHandler(_EventHandler())
    logging.captureWarnings(True)


@contextlib.contextmanager
def listen(callback: Callable[[Any], None]) -> Iterator[None]:
    """Call `callback(event)` with every Dagster event of the runs inside the block."""
    _listeners.append(callback)
    try:
        yield
    finally:
        _listeners.remove(callback)


def run_quietly(job: dg.JobDefinition, **kwargs: Any) -> dg.ExecuteInProcessResult:
    """`job.execute_in_process(**kwargs)` with the demo's logger instead of Dagster's console
    logger (a job runs the loggers its run config names, and the console one when it names
    none)."""
    import dagster as dg

    demo_logger = dg.LoggerDefinition(
        lambda _context: logging.getLogger(DAGSTER_LOGGER),
        description="The demo's log file (through the chainlake.demo.dagster logger).",
    )
    run_config = {**(kwargs.pop("run_config", None) or {}), "loggers": {"demo": {}}}
    return job.with_logger_defs({"demo": demo_logger}).execute_in_process(
        run_config=run_config, **kwargs
    )


class Task:
    """One line of the display: a phase or a chain-day."""

    def __init__(self, display: Display, name: str, total: int | None, unit: str) -> None:
        self.display = display
        self.name = name
        self.unit = unit
        self.total = total
        self.completed = 0
        self.started = time.monotonic()
        self.id: TaskID | None = None
        if display.progress is not None:
            self.id = display.progress.add_task(name, total=total, note=unit)

    @property
    def seconds(self) -> float:
        """Seconds since the task was created."""
        return time.monotonic() - self.started

    def update(self, completed: int, total: int | None = None, note: str | None = None) -> None:
        """Set the count done (and the total, and the note after the bar)."""
        self.completed = completed
        if total is not None:
            self.total = total
        if self.display.progress is not None and self.id is not None:
            fields: dict[str, Any] = {"completed": completed}
            if total is not None:
                fields["total"] = total
            if note is not None:
                fields["note"] = note
            self.display.progress.update(self.id, **fields)

    def advance(self, note: str | None = None) -> None:
        """One more done."""
        self.update(self.completed + 1, note=note)

    def finish(self, status: str, note: str = "") -> None:
        """Close the line: `status` is OK or FAIL (`note` says what was done)."""
        text = f"{status} {note}".strip()
        if self.display.progress is not None and self.id is not None:
            total = self.total if self.total is not None else max(self.completed, 1)
            colour = "green" if status == "OK" else "red"
            self.display.progress.update(
                self.id,
                completed=total if status == "OK" else self.completed,
                total=total,
                note=f"[{colour}]{text}[/{colour}]",
            )
            self.display.progress.stop_task(self.id)
        else:
            self.display.line(f"{self.name:<28} {text} [{self.seconds:.1f}s]")


class Display:
    """The progress display: live bars on a terminal, one line per finished task elsewhere
    (a pipe, a CI log)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        if console.is_terminal:
            self.progress = Progress(
                SpinnerColumn(finished_text="•"),
                TextColumn("{task.description:<28}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[note]}"),
                console=console,
                redirect_stdout=False,
                redirect_stderr=False,
            )

    def __enter__(self) -> Display:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """End the live display (the finished bars stay on the terminal)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def task(self, name: str, total: int | None = None, unit: str = "") -> Task:
        """A new line of the display."""
        return Task(self, name, total, unit)

    def line(self, text: str) -> None:
        """Print `text` as it is (above the live display, if any)."""
        self.console.print(text, markup=False, highlight=False)
