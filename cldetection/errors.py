"""The one exception type for bad user input, and the CLI wrapper that turns it into a one-line error."""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import sys
import tempfile
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Callable, Iterator, NoReturn, Optional, Sequence

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
    """Refuse to replace an existing file unless the user passed ``--overwrite`` (nothing is ever lost).

    Only a check: a writer that runs long before it writes claims its output with :func:`claim_output`."""
    path = Path(path)
    if path.exists() and not overwrite:
        fail(path, _exists_problem(path))
    if path.exists() and not path.is_file():
        fail(path, 'exists and is not a file')
    return path


def _exists_problem(path: Path) -> str:
    """'already exists', saying so when the file is the placeholder of a run writing it now or of a dead one."""
    hint = ''
    try:
        if path.is_file() and path.stat().st_size == 0:
            hint = ' (an empty file: perhaps left by a run that was killed)'
            fd = os.open(path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return 'already exists: another run is writing it'
            finally:
                os.close(fd)
    except OSError:
        pass
    return f'already exists{hint}; pass --overwrite to replace it'


#: ``OSError`` numbers that mean "this output cannot be written here" (full disk, quota, permission,
#: read-only file system), turned into a one-line error naming the output.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM})


def write_problem(err: OSError) -> str:
    """The one-line problem of an ``OSError`` met while writing an output."""
    return f'cannot write: {err.strerror or first_line(err)}'


class OutputClaim(os.PathLike):
    """An output file claimed by this run (:func:`claim_output`); usable wherever a path is.

    Holds an exclusive ``flock`` on the file under the output's name -- the empty placeholder this run created,
    or with ``--overwrite`` the existing file -- until :meth:`release`, so a second writer of the same output
    is refused. The finished file replaces the placeholder atomically (``challenge_io.atomic_output``); a run
    that fails before that removes its placeholder on release, and an existing file is never touched.
    """

    def __init__(self, path: Path, fd: int, created: bool) -> None:
        self.path, self._fd, self.created = path, fd, created

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f'OutputClaim({str(self.path)!r})'

    def release(self) -> None:
        """Give the output up: remove the placeholder unless a finished file replaced it; unlock."""
        if self._fd is None:
            return
        try:
            if self.created:
                try:
                    if os.path.samestat(os.lstat(self.path), os.fstat(self._fd)):  # still our empty placeholder
                        os.unlink(self.path)
                except FileNotFoundError:
                    pass
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> 'OutputClaim':
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


#: The claims of the innermost :func:`releasing_claims` block (``None``: none is open).
_OPEN_CLAIMS: ContextVar[Optional[list[OutputClaim]]] = ContextVar('cldetection_output_claims', default=None)


@contextmanager
def releasing_claims() -> Iterator[list[OutputClaim]]:
    """Release every claim :func:`claim_output` makes inside the block when it ends, however it ends; also a
    decorator (``@releasing_claims()``). :func:`run_cli` runs every command inside one."""
    claims: list[OutputClaim] = []
    token = _OPEN_CLAIMS.set(claims)
    try:
        yield claims
    finally:
        _OPEN_CLAIMS.reset(token)
        for claim in reversed(claims):
            claim.release()


def claim_output(path: str | Path, overwrite: bool = False) -> OutputClaim:
    """Claim the output file ``path`` before any long work; use the result as a context manager, or claim
    inside a :func:`releasing_claims` block or function (the claim then ends with it).

    Without ``overwrite`` the file is created exclusively (``O_CREAT | O_EXCL``: an existing file, or one a
    concurrent run has just claimed, is refused with 'already exists'); with it, an existing file is kept
    (until the finished one replaces it) and locked. Either way a second run writing the same output is
    refused, and the folder is checked to be writable (a one-line error names the path otherwise).
    """
    path = Path(path)
    if path.parent.exists() and not path.parent.is_dir():
        fail(path.parent, 'exists and is not a folder')
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        fail(path.parent, f'cannot create the output folder: {err.strerror or first_line(err)}')
    cloexec = getattr(os, 'O_CLOEXEC', 0)
    while True:
        created = False
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | cloexec, 0o666)
            created = True
        except FileExistsError:
            if not overwrite:
                fail(path, _exists_problem(path))
            if not path.is_file():
                fail(path, 'exists and is not a file')
            try:
                fd = os.open(path, os.O_RDONLY | cloexec)
            except FileNotFoundError:
                continue  # removed meanwhile: claim it anew
            except OSError as err:
                fail(path, f'cannot open: {err.strerror or first_line(err)}')
        except OSError as err:
            fail(path, write_problem(err))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # our placeholder, if we made it, now belongs to the run that holds the lock
            fail(path, 'is being written by another run; wait for it to end or choose another output')
        try:
            same = os.path.samestat(os.stat(path), os.fstat(fd))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # replaced between open and lock (another run finished): lock the file there now
    claim = OutputClaim(path, fd, created)
    if not created:
        try:  # the finished file is written beside it and renamed: the folder must take new files
            with tempfile.TemporaryFile(dir=path.parent, prefix=f'.{path.name}.'):
                pass
        except OSError as err:
            claim.release()
            fail(path, write_problem(err))
    session = _OPEN_CLAIMS.get()
    if session is not None:
        session.append(claim)
    return claim


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> NoReturn:
    """Run a step script's ``main``; an ``InputError`` becomes ``error: <file>: <problem>`` and exit 2."""
    configure_logging()
    try:
        with releasing_claims():  # a failed command leaves no placeholder of an output it claimed
            code = main(argv)
    except InputError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
