"""Atomic outputs: a run folder, an instance folder or a file appears complete or not at all.

:func:`atomic_folder` yields a temporary sibling of the target (``.NAME.partial-PID``, in the same parent so the
final step is a rename on one file system) to write into. When the block ends normally the finished folder is
renamed onto the target in one step; an existing target folder (an earlier run) is first moved aside and removed
only after the rename succeeded. When the block raises, the temporary folder is removed and the target is left
as it was. A process killed with ``SIGKILL`` cannot clean up: its ``.partial`` sibling stays hidden, never under
the target's name, and the next :func:`atomic_folder` on that parent removes partial folders whose writer is no
longer alive. :func:`atomic_file` does the same for one file (``twinplan report --out``, ``stress --out``).

What may be replaced is the caller's to say: a folder holding one of ``markers`` (a run folder by default), a file
``replaceable(path)`` accepts; anything else existing at the target is refused before any work
(:func:`check_output_path`, :func:`check_output_file`), so a mistyped ``--out`` never deletes someone's data.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
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


def process_started_at(pid: int) -> datetime | None:
    """When process ``pid`` of this machine started (naive UTC, Linux ``/proc``); None when unknown or gone.

    With :func:`pid_alive` it tells a dead writer from a live process that was given its pid later."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of proc(5): start time after boot, in clock ticks
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        seconds = boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def writer_gone(pid: int, since: datetime | None) -> bool:
    """Whether the process ``pid`` that began writing at ``since`` (naive UTC) has ended: no process has the pid,
    or the one that has it started after ``since`` (the pid was reused)."""
    if not pid_alive(pid):
        return True
    started = process_started_at(pid)
    return since is not None and started is not None and started > since + timedelta(seconds=2)


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
            if m and m["host"] == _host() and not pid_alive(int(m["pid"])):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def check_output_path(target: str | Path, markers: tuple[str, ...] = RUN_MARKERS,
                      what: str = "a run folder") -> str | None:
    """Why ``target`` cannot become a run folder (None when it can): checked before any work starts.

    It must not be an existing file nor an existing non-empty folder other than a run folder (one holding one of
    ``markers``; none: no existing non-empty folder is replaced), its nearest existing ancestor must be a
    writable folder, and every component must fit the file system's name limit.
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
        if target.is_dir() and any(target.iterdir()) and not any((target / m).is_file() for m in markers):
            if not markers:
                return f"{target}: exists and is not empty; it is not replaced (give --force to replace it)"
            return (f"{target}: exists and is not {what} (it has no {' or '.join(markers)}); the output "
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


def check_output_file(target: str | Path, replaceable: Callable[[Path], bool] | None = None,
                      what: str = "a file twinplan wrote") -> str | None:
    """Why ``target`` cannot be written as a file (None when it can): checked before any work starts.

    It must not be a folder, an existing file only when ``replaceable(target)`` says so (None: any existing
    file may be replaced), its nearest existing ancestor must be a writable folder, and its name must leave room
    for the temporary sibling it is first written as.
    """
    target = Path(target)
    if len(os.fsencode(target.name)) > 255 - 40:
        return f"{target}: the file name is {len(os.fsencode(target.name))} bytes long (the limit is 255, less 40)"
    try:
        if target.is_dir():
            return f"{target}: is a folder, not a file"
        if target.exists() and replaceable is not None and not replaceable(target):
            return f"{target}: exists and is not {what}; it is not replaced"
    except OSError as exc:
        return f"{target}: {exc.strerror or exc}"
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{target}: {parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{target}: folder {parent} is not writable"
    return None


def _staging(target: Path, refused: str | None) -> Path:
    """The temporary sibling to write ``target`` through, after the output check: ``refused`` (the check's
    reason) raises :class:`OutputPathError`; else the parent exists and stale partials are gone."""
    if refused:
        raise OutputPathError(refused)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target.parent)
    return partial_path(target)


@contextlib.contextmanager
def atomic_file(target: str | Path, replaceable: Callable[[Path], bool] | None = None,
                what: str = "a file twinplan wrote") -> Iterator[Path]:
    """Write a file atomically: yields a temporary sibling path (``.NAME.partial-HOST-PID``) to write; when the
    block ends normally it is flushed to disk and renamed onto ``target`` in one step (``os.replace``: a reader
    sees the old file or the new one, never half of one). On any exception the temporary file is removed and
    ``target`` is untouched. ``replaceable``: see :func:`check_output_file` (refused: :class:`OutputPathError`).
    """
    target = Path(target)
    tmp = _staging(target, check_output_file(target, replaceable, what))
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_folder(target: str | Path, markers: tuple[str, ...] = RUN_MARKERS,
                  what: str = "a run folder") -> Iterator[Path]:
    """Write a folder atomically: yields the temporary folder; on success it becomes ``target`` in one rename.

    An existing ``target`` is replaced whole only when it holds one of ``markers`` (default: a run folder; none:
    never), else :class:`OutputPathError` before anything is written. On any exception (including
    ``KeyboardInterrupt``) the temporary folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    tmp = _staging(target, check_output_path(target, markers, what))
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


__all__ = ["OutputPathError", "atomic_file", "atomic_folder", "check_output_file", "check_output_path", "partial_path",
           "pid_alive", "process_started_at", "remove_stale_partials", "writer_gone"]
