"""Output folders that are whole or absent: written in a temporary folder beside, then renamed into place."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from eenn_tvm.errors import EennError


@contextlib.contextmanager
def atomic_folder(target: str | Path):
    """Yields a temporary folder; on success it replaces `target`, on any failure it is removed."""
    target = Path(target).resolve()
    if target.exists() and not target.is_dir():
        raise EennError(f"{target} is a file: give -o a folder name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except PermissionError as err:
        raise EennError(f"cannot write beside {target} ({err.strerror}): choose another -o folder") from None
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{tmp.name[-8:]}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
