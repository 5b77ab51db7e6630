"""Output folders: whole or absent, and never at the cost of the user's own files.

A command writes its folder (`-o`) in a temporary folder beside it and renames it into place when done. It replaces
an existing folder only when eenn-tvm wrote it (a marker file names the kind of output) or it is empty; `--force`
replaces any other folder, but never the current folder, the home folder, `/`, a parent of any of them, or a folder
that holds one of the command's own inputs, and never a symlink. All of that is checked, together with whether the
folder can be written at all, before any work starts (`Output.check`).

Temporary folders are named `.NAME.tmp-PID-XXXX` (and the replaced folder `.NAME.old-PID-XXXX` for a moment); SIGTERM
and SIGINT remove them. One left by a killed run (its process is gone) is removed, or restored if it is the only copy
of the previous output, by the next run into the same place, which says so on stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from eenn_tvm.errors import EennError, Terminated

MARKER = ".eenn-tvm-output"  # JSON: {"format": MARKER_FORMAT, "kind": ...}
MARKER_FORMAT = "eenn-tvm output"
# What a run writes beside its output for a moment (earlier versions named them without the process id).
_STALE = re.compile(r"\.(?P<name>.+)\.(?P<what>tmp|old|partial)-(?:(?P<pid>\d+)-[0-9a-f]{8}|[a-z0-9_]{8})")

Log = Callable[[str], None]


@dataclass(frozen=True)
class Output:
    """Where a command writes its folder, what kind of output it is, and what the folder must never be."""

    path: Path  # as given
    kind: str  # "augment", "firmware", "compile": recorded in the marker
    inputs: tuple[Path, ...] = ()  # the command's own inputs (files or folders); None entries are dropped
    force: bool = False  # replace a folder eenn-tvm did not write

    @classmethod
    def of(cls, path: str | Path, kind: str, inputs: Iterable[str | Path | None] = (), force: bool = False) -> Output:
        return cls(Path(path), kind, tuple(Path(p) for p in inputs if p is not None), force)

    @property
    def target(self) -> Path:
        """The absolute path, its parents' links resolved but not a link at its own name."""
        lexical = Path(os.path.abspath(self.path))
        return lexical if lexical == lexical.parent else lexical.parent.resolve() / lexical.name

    def check(self, log: Log = lambda _: None) -> None:
        """Refuse, in one line, an output that would lose the user's files or that cannot be written; clear what
        a killed run left beside it. Call it before any work, and again (`atomic_folder` does) before writing."""
        target, shown = self.target, f"-o {self.path}"
        if target.is_symlink():
            raise EennError(
                f"{shown}: is a symlink (to {os.readlink(target)}): give -o a folder path that is not a symlink"
            )
        _refuse_protected(target, shown, self.inputs)
        if target.exists() and not target.is_dir():
            raise EennError(f"{shown}: is a file: give -o a folder name")
        if target.is_dir() and not self.force:
            _refuse_foreign(target, shown, self.kind)
        _clear_stale(target, log)
        _check_writable(target, shown, "choose another -o")


@contextlib.contextmanager
def atomic_folder(output: Output, log: Log = lambda _: None) -> Iterator[Path]:
    """Yields a temporary folder beside the output; when the block succeeds it becomes the output (marked as
    eenn-tvm's), on any failure or SIGTERM/SIGINT it is removed, with the parents this call created."""
    output.check(log)
    target = output.target
    created = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
    tmp = None
    try:
        with stop_signals_raise():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = _fresh_dir(target, "tmp")
            yield tmp
            _raise_if_stopped()
            (tmp / MARKER).write_text(json.dumps({"format": MARKER_FORMAT, "kind": output.kind}) + "\n")
            _swap_in(tmp, target)
        created = []
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # nearest first: remove what this call made, if nothing else was put there
            with contextlib.suppress(OSError):
                folder.rmdir()


def write_file_atomically(path: Path, content: str | bytes, log: Log = lambda _: None) -> None:
    """Written beside and renamed over `path`: a reader never sees half a file, and a failure leaves nothing."""
    _clear_stale(path, log)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with stop_signals_raise():
            partial.write_bytes(content.encode() if isinstance(content, str) else content)
            partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def check_writable_file(path: Path) -> None:
    """Before any work: whether `path` (a file to be written or replaced) can be written."""
    _check_writable(path, str(path), "make the folder writable")


def check_output_file(path: str | Path, inputs: Iterable[str | Path | None], force: bool) -> None:
    """Before any work, for a command whose -o is one file (quantize's int8 model): a new file, or with --force an
    existing one, but never one of the command's inputs, a folder or a symlink; and writable."""
    path, shown = Path(path), f"-o {path}"
    target = Path(os.path.abspath(path))
    if target.is_symlink():
        raise EennError(f"{shown}: is a symlink (to {os.readlink(target)}): give -o a file path that is not a symlink")
    if target.is_dir():
        raise EennError(f"{shown}: is a folder: give -o the file to write")
    for given in (Path(p) for p in inputs if p is not None):
        if given.resolve() == target.resolve():
            raise EennError(f"{shown}: is {given}, an input of this command: give -o a new file")
    if target.exists() and not force:
        raise EennError(f"{shown}: exists: give -o a new file, or add --force to replace it")
    _check_writable(target, shown, "choose another -o")


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """While inside: SIGTERM raises `Terminated` and SIGINT `KeyboardInterrupt`, so `finally` blocks clean up
    (a terminated Python process runs none). Handlers can only be set in the main thread; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, _raise_stop)
    if previous[signal.SIGINT] is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _raise_stop)
    try:
        yield
        _raise_if_stopped()
    except BaseException as error:
        stopped = _received[:1]
        _received.clear()  # on its way out: a later block starts afresh
        if stopped and not isinstance(error, Terminated | KeyboardInterrupt):
            _raise_for(stopped[0])  # native code turned the handler's exception into an error of its own
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# Signals the handler saw. Native code may swallow what the handler raises (TVM's LLVM code generation runs it
# from C++ and drops the exception) or wrap it in an error of its own (a RuntimeError from TVM's FFI), so a block
# that ends, normally or by another error, raises it again (`_raise_if_stopped`).
_received: list[int] = []


def _raise_stop(signum, _frame):
    _received.append(signum)
    _raise_for(signum)


def _raise_for(signum: int):
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _raise_if_stopped() -> None:
    """Raise what a SIGTERM or SIGINT received inside `stop_signals_raise` raised, had nothing swallowed it."""
    if _received:
        _raise_for(_received[0])


def _refuse_protected(target: Path, shown: str, inputs: tuple[Path, ...]) -> None:
    """Folders no output may replace, --force or not: they hold the user's other files or this command's inputs."""
    real = target.resolve()
    for name, folder in (("the current folder", Path.cwd()), ("your home folder", Path.home())):
        folder = folder.resolve()
        if folder == real or folder.is_relative_to(real):
            what = name if folder == real else f"a parent of {name}"
            raise EennError(f"{shown}: is {what}: give -o a new folder for the output")
    for given in inputs:
        for path in {Path(os.path.abspath(given)), given.resolve()}:
            if path == real or path.is_relative_to(real):
                what = "is" if path == real else "holds"
                raise EennError(f"{shown}: {what} {given}, an input of this command: give -o a new folder")


def _refuse_foreign(target: Path, shown: str, kind: str) -> None:
    """An existing folder is replaced without --force only when it is empty or an eenn-tvm output of this kind."""
    entries = sorted(p.name for p in target.iterdir())
    if not entries:
        return
    written = marked_kind(target)
    if written is None:
        example = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise EennError(
            f"{shown}: is a folder eenn-tvm did not write (it holds {example}): "
            "give -o a new or empty folder, or add --force to replace it"
        )
    if written != kind:
        raise EennError(
            f"{shown}: holds an eenn-tvm {written} output, not {kind}: give another -o, or add --force to replace it"
        )


def marked_kind(folder: Path) -> str | None:
    """The kind of eenn-tvm output `folder` is (its marker), None when eenn-tvm did not write it."""
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    ours = isinstance(marker, dict) and marker.get("format") == MARKER_FORMAT and isinstance(marker.get("kind"), str)
    return marker["kind"] if ours else None


def _clear_stale(target: Path, log: Log) -> None:
    """Temporary folders of this output whose process is gone: a killed run's. The replaced output of a run killed
    between its two renames is the only copy of the previous output: it is put back when nothing took its place."""
    if not target.parent.is_dir():
        return
    for path in sorted(target.parent.iterdir()):
        match = _STALE.fullmatch(path.name)
        if not match or match["name"] != target.name or (match["pid"] and _alive(int(match["pid"]))):
            continue
        if match["what"] == "old" and not target.exists() and not path.is_symlink():
            path.rename(target)
            log(f"eenn-tvm: restored {target} from {path.name}, left by an interrupted run")
        else:
            _remove(path)
            log(f"eenn-tvm: removed {path}, left by an interrupted run")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _check_writable(target: Path, shown: str, advice: str) -> None:
    """Whether `target` can be made or replaced: its nearest existing ancestor (and an existing folder to be replaced:
    renaming a folder updates its `..`) must be a writable folder; access(2) also sees read-only file systems and
    immutable folders. Found now, not after the work, and without writing anything."""
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise EennError(f"{shown}: cannot be written: {ancestor} is a file, not a folder: {advice}")
    for folder in [ancestor] + ([target] if target.is_dir() else []):
        if not os.access(folder, os.W_OK | os.X_OK):
            raise EennError(f"{shown}: cannot be written ({folder} is not writable): {advice}")


def _fresh_dir(beside: Path, what: str) -> Path:
    """A new folder `.NAME.what-PID-XXXX` beside `beside`, with the user's usual permissions (the umask's)."""
    while True:
        path = beside.with_name(f".{beside.name}.{what}-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def _swap_in(tmp: Path, target: Path) -> None:
    """Rename `tmp` to `target`, replacing a folder there, with SIGTERM and SIGINT held off between the renames."""
    blocked = {signal.SIGTERM, signal.SIGINT}
    held = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        if target.exists():
            old = _fresh_dir(target, "old")
            old.rmdir()
            target.rename(old)
            try:
                tmp.rename(target)
            except OSError:
                old.rename(target)
                raise
            _remove(old)
        else:
            tmp.rename(target)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
