"""Atomic output folders: a run folder appears complete or not at all.

:func:`atomic_folder` yields a temporary sibling of the target (``.NAME.partial-PID``, in the same parent so the
final step is a rename on one file system) to write into. When the block ends normally the finished folder is
renamed onto the target in one step; an existing target folder (an earlier run) is first moved aside and removed
only after the rename succeeded. When the block raises, the temporary folder is removed and the target is left
as it was. A process killed with ``SIGKILL`` cannot clean up: its ``.partial`` sibling stays hidden, never under
the target's name, and the next :func:`atomic_folder` on that parent removes partial folders whose writer is no
longer alive.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

PARTIAL_MARK = ".partial-"
RUN_MARKERS = ("run.json", "result.json")
"""Files that mark a folder as a run folder, which a new run may replace whole (any other non-empty folder is
refused: a mistyped ``--out`` must never delete someone's data)."""
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.partial-(?P<host>[^-]+)-(?P<pid>\d+)$")


class OutputPathError(ValueError):
    """The output path cannot hold a run folder (an existing file, an unwritable parent...)."""


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a process of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def partial_path(target: Path) -> Path:
    """The temporary sibling this process writes ``target`` into."""
    return target.with_name(f".{target.name}{PARTIAL_MARK}{_host()}-{os.getpid()}")


def remove_stale_partials(parent: Path) -> list[Path]:
    """Remove ``.partial`` folders in ``parent`` left by dead processes of this host; returns what it removed."""
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    with contextlib.suppress(OSError):
        for p in parent.iterdir():
            m = _PARTIAL.match(p.name)
            if m and m["host"] == _host() and not pid_alive(int(m["pid"])) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def check_output_path(target: str | Path) -> str | None:
    """Why ``target`` cannot become a run folder (None when it can): checked before any work starts.

    It must not be an existing file nor an existing non-empty folder other than a run folder (one holding
    :data:`RUN_MARKERS`), its nearest existing ancestor must be a writable folder, and every component must fit
    the file system's name limit.
    """
    target = Path(target)
    for part in target.parts:
        if len(os.fsencode(part)) > 255 - 40:  # room for the temporary sibling's prefix and suffix
            return (f"{target}: a path component is {len(os.fsencode(part))} bytes long (the limit is 255, "
                    "less 40 for the temporary folder it is written as)")
    if target.name in ("", ".", ".."):
        return f"{target}: must name a folder of its own, not the current or parent folder"
    try:
        if target.exists() and not target.is_dir():
            return f"{target}: exists and is not a folder"
        if target.is_dir() and any(target.iterdir()) and not any((target / m).is_file() for m in RUN_MARKERS):
            return (f"{target}: exists and is not a run folder (it has no {' or '.join(RUN_MARKERS)}); a run "
                    "replaces its folder whole, so it will not replace this one")
    except OSError as exc:
        return f"{target}: {exc.strerror or exc}"
    parent = target.parent if not target.exists() else target
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        return f"{target}: {parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{target}: folder {parent} is not writable"
    if target.exists() and not os.access(target.parent, os.W_OK | os.X_OK):
        return f"{target}: folder {target.parent} is not writable (the run folder is replaced by a rename)"
    return None


@contextlib.contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """Write a folder atomically: yields the temporary folder; on success it becomes ``target`` in one rename.

    On any exception (including ``KeyboardInterrupt``) the temporary folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    why = check_output_path(target)
    if why:
        raise OutputPathError(why)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target.parent)
    tmp = partial_path(target)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        _replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` onto ``target``; an existing target folder is moved aside first and removed after."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{_host()}-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    """Flush every file of ``root`` to disk, so that the rename never publishes a folder of unwritten files."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


__all__ = ["OutputPathError", "atomic_folder", "check_output_path", "partial_path", "remove_stale_partials"]
