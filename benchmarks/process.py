"""Run one pipeline step as a subprocess and measure it: wall time and peak resident memory.

Every benchmark figure about a step (stack build, step 2, step 3, step 4) comes from here, so they are measured
the same way: the peak RSS is the kernel's ``ru_maxrss`` of the child returned by ``wait4``, which covers the
child and every descendant it waited for (data-loader workers included).
"""
from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cldetection.errors import fail

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Measured:
    """A finished subprocess: its command, wall-clock seconds, peak RSS (bytes) and log file."""
    command: list[str]
    wall_s: float
    peak_rss_bytes: int
    log_path: Path

    def as_dict(self) -> dict:
        return {'command': shlex.join(self.command), 'wall_s': round(self.wall_s, 3),
                'peak_rss_bytes': self.peak_rss_bytes, 'log': str(self.log_path)}


def python_command(*args: str) -> list[str]:
    """A command line running this interpreter (the project's venv) with ``args``."""
    return [sys.executable, *args]


def run_measured(command: Sequence[str], log_path: str | Path, *, echo: bool = False,
                 cwd: str | Path = REPO_ROOT, tail_lines: int = 25) -> Measured:
    """Run ``command``, write its stdout + stderr to ``log_path`` (echoed when ``echo``), and measure it.

    A non-zero exit is reported as a one-line error naming the log, after printing the log's last lines.
    """
    command = [str(c) for c in command]
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    shown = shlex.join(command)
    logger.info('running: %s  (log: %s)', shown if len(shown) <= 400 else shown[:400] + ' ...', log_path)
    tail: deque[str] = deque(maxlen=tail_lines)
    start = time.perf_counter()
    with open(log_path, 'w', encoding='utf-8') as log:
        log.write(f'$ {shlex.join(command)}\n')
        log.flush()
        proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors='replace', bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            tail.append(line)
            if echo:
                sys.stdout.write(line)
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(''.join(tail))
        fail(log_path, f'{Path(command[1]).name if len(command) > 1 else command[0]} failed with exit status '
                       f'{proc.returncode} after {wall:.0f} s (its last lines are above; full log in this file)')
    # Linux reports ru_maxrss in KiB.
    return Measured(command, wall, int(usage.ru_maxrss) * 1024, log_path)
