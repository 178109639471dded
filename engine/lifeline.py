"""Worker processes that end when their driver dies, even when it is killed with ``SIGKILL``.

A process pool's workers wait on a queue for their next task; when the driver is killed outright nobody tells
them, and they live on, re-parented to init, each holding its memory. :func:`die_with_parent` (a pool
``initializer``) makes a worker follow its driver two ways:

- on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` through ctypes: the kernel kills the worker the moment the
  thread that forked it exits (the driver's process pool forks its workers from the driver's main thread, which
  lives as long as the driver);
- everywhere, a daemon thread that checks every :data:`POLL_SECONDS` whether the worker's parent is still the
  driver (``os.getppid()`` changes when the parent dies) and ends the worker with ``os._exit`` when not.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
POLL_SECONDS = 0.5
ORPHAN_EXIT_CODE = 70
"""Exit status of a worker that ended because its driver died."""


def _set_pdeathsig(sig: int) -> bool:
    """Ask the Linux kernel to send ``sig`` when our parent dies; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    return False


def _watch(parent_pid: int, interval: float) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(ORPHAN_EXIT_CODE)
        time.sleep(interval)


def die_with_parent(parent_pid: int, interval: float = POLL_SECONDS) -> None:
    """Make this (worker) process end when ``parent_pid`` ends; call it first thing in the worker.

    Returns at once; when the parent is already gone the worker exits immediately.
    """
    _set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the kernel was asked to tell us
        os._exit(ORPHAN_EXIT_CODE)
    threading.Thread(target=_watch, args=(parent_pid, interval), name="twinplan-lifeline", daemon=True).start()


__all__ = ["ORPHAN_EXIT_CODE", "POLL_SECONDS", "die_with_parent"]
