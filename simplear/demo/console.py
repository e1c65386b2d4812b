"""The demo's console: every line of the local pipeline run goes to its log; progress lines also to the terminal,
and the running stage's progress bar (step of total, loss or reward, ETA) as one updating line."""

from __future__ import annotations

import io
import re
import time
from typing import TextIO

from simplear.platform.run_progress import RunProgress

PROGRESS_MARK = "[simplear] "
RUN_LINE = re.compile(r"^\s+(?P<run>[a-z0-9-]+)-[0-9a-f]{8} \| (?P<text>.*)$")
"""A stage run's log line as a step echoes it (`  <run>-<id> | ...`), indented further by kfp.local."""
STATUS_EVERY_S = 30.0
"""Without a terminal (a log file, CI), the running stage's status is printed as a line this often."""
TASK_STATUS = re.compile(r"Task .*'(?P<task>[^'\x1b]+)'.* finished with status .*(?P<status>SUCCESS|FAILURE)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ProgressConsole(io.TextIOBase):
    """A text stream that writes everything to `log` and echoes progress and task failures to `terminal`."""

    def __init__(self, log: TextIO, terminal: TextIO, verbose: bool = False) -> None:
        self.log, self.terminal, self.verbose = log, terminal, verbose
        self.started = time.monotonic()
        self.pending = ""
        self.progress: dict[str, RunProgress] = {}
        self.status_line = ""
        self.status_printed = 0.0

    def writable(self) -> bool:
        """A console is written to."""
        return True

    def write(self, text: str) -> int:
        """Log the text; show each complete line that is progress (or everything, when verbose)."""
        self.log.write(text)
        self.log.flush()
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self._show(line)
        return len(text)

    def _show(self, line: str) -> None:
        """Echo one line to the terminal if it is progress, a failed task or (verbose) anything."""
        plain = ANSI.sub("", line)
        status = TASK_STATUS.search(plain)
        if run_line := RUN_LINE.match(plain):
            self._update(run_line["run"], run_line["text"])
        if PROGRESS_MARK in plain:
            self.say(plain.split(PROGRESS_MARK, 1)[1])
        elif status and status["status"] == "FAILURE":
            self.say(f"task {status['task']} FAILED")
        elif self.verbose:
            self.terminal.write(line + "\n")
            self.terminal.flush()

    def _update(self, run: str, text: str) -> None:
        """Fold one log line of a running stage into its progress; show it (one rewritten line on a terminal)."""
        progress = self.progress.get(run, RunProgress()).update(text)
        if progress == self.progress.get(run):
            return
        self.progress[run] = progress
        status = progress.describe()
        if not status:
            return
        line = f"{self._stamp()} {run}: {status}"
        if self.terminal.isatty():
            self.terminal.write("\r\x1b[K" + line)
            self.terminal.flush()
            self.status_line = line
        elif time.monotonic() - self.status_printed >= STATUS_EVERY_S:
            self.terminal.write(line + "\n")
            self.terminal.flush()
            self.status_printed = time.monotonic()

    def _stamp(self) -> str:
        """Minutes and seconds since the console was made, as [mm:ss]."""
        minutes, seconds = divmod(int(time.monotonic() - self.started), 60)
        return f"[{minutes:02d}:{seconds:02d}]"

    def say(self, message: str) -> None:
        """One terminal line stamped with the time since the console was made; it replaces the status line."""
        if self.status_line:
            self.terminal.write("\r\x1b[K")
            self.status_line = ""
        self.terminal.write(f"{self._stamp()} {message}\n")
        self.terminal.flush()

    def flush(self) -> None:
        """Flush the log and the terminal."""
        self.log.flush()
        self.terminal.flush()
