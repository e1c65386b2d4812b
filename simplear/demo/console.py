"""The demo's console: every line of the local pipeline run goes to its log; progress lines also to the terminal."""

from __future__ import annotations

import io
import re
import time
from typing import TextIO

PROGRESS_MARK = "[simplear] "
TASK_STATUS = re.compile(r"Task .*'(?P<task>[^'\x1b]+)'.* finished with status .*(?P<status>SUCCESS|FAILURE)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ProgressConsole(io.TextIOBase):
    """A text stream that writes everything to `log` and echoes progress and task failures to `terminal`."""

    def __init__(self, log: TextIO, terminal: TextIO, verbose: bool = False) -> None:
        self.log, self.terminal, self.verbose = log, terminal, verbose
        self.started = time.monotonic()
        self.pending = ""

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
        if PROGRESS_MARK in plain:
            self.say(plain.split(PROGRESS_MARK, 1)[1])
        elif status and status["status"] == "FAILURE":
            self.say(f"task {status['task']} FAILED")
        elif self.verbose:
            self.terminal.write(line + "\n")
            self.terminal.flush()

    def say(self, message: str) -> None:
        """One terminal line stamped with the minutes and seconds since the console was made."""
        minutes, seconds = divmod(int(time.monotonic() - self.started), 60)
        self.terminal.write(f"[{minutes:02d}:{seconds:02d}] {message}\n")
        self.terminal.flush()

    def flush(self) -> None:
        """Flush the log and the terminal."""
        self.log.flush()
        self.terminal.flush()
