"""Session-wide test set-up.

The bpy module and torch in one process can deadlock while the interpreter shuts down (seen after the corpus
tests and the torch model tests ran in one session: every test passed, then the process never exited). When both
are loaded, the process ends right after pytest has written its report, with pytest's exit status.
"""

from __future__ import annotations

import os
import sys

import pytest

_exit_status = 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if "bpy" in sys.modules and "torch" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)
