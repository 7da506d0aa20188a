"""The one exception type for bad user input, and the CLI wrapper that turns it into a one-line error."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable, NoReturn, Sequence

#: Exit status for bad input (argparse uses the same code for bad arguments).
EXIT_BAD_INPUT = 2


class InputError(Exception):
    """Bad user input: the message names the file and the problem, in one line, without a traceback."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f'{self.path}: {problem}' if self.path else problem)


def first_line(err: BaseException) -> str:
    """An exception's first line (or its repr when it has no text), for one-line error messages."""
    text = str(err).strip()
    return text.splitlines()[0] if text else repr(err)


def fail(path: str | Path | None, problem: str) -> NoReturn:
    raise InputError(path, problem)


class _CurrentStderrHandler(logging.StreamHandler):
    """Logs to whatever ``sys.stderr`` is at the time of each message (not the one at set-up), so a script's
    ``main`` called repeatedly in one process (tests capturing output) never writes to a closed stream."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """INFO-level logging of our modules to stderr, set up once per process."""
    root = logging.getLogger()
    if not any(isinstance(h, _CurrentStderrHandler) for h in root.handlers):
        handler = _CurrentStderrHandler()
        handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(name)s: %(message)s', '%H:%M:%S'))
        root.addHandler(handler)
    root.setLevel(level)


def check_output_file(path: str | Path, overwrite: bool) -> Path:
    """Refuse to replace an existing file unless the user passed ``--overwrite`` (nothing is ever lost)."""
    path = Path(path)
    if path.exists() and not overwrite:
        fail(path, 'already exists; pass --overwrite to replace it')
    if path.exists() and not path.is_file():
        fail(path, 'exists and is not a file')
    return path


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> NoReturn:
    """Run a step script's ``main``; an ``InputError`` becomes ``error: <file>: <problem>`` and exit 2."""
    configure_logging()
    try:
        code = main(argv)
    except InputError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
