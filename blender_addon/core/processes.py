"""Child processes that must not outlive the process that started them (bpy-free)."""

from __future__ import annotations

import signal
import sys


def die_with_parent() -> None:
    """``preexec_fn`` for :class:`subprocess.Popen`: on Linux the child is sent SIGTERM when the thread that started
    it ends, however it ends (even by SIGKILL), so a crashed batch leaves no worker or server behind; elsewhere it
    does nothing. Start such children from a thread that lives as long as they should (the main thread)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
