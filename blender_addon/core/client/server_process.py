"""Start, stop and restart a local edit server from a command line (the add-on's preferences)."""

from __future__ import annotations

import logging
import shlex
import subprocess
import time

from .. import processes
from .api import BackendClient
from ..errors import ServerRequestError
from ..errors import InvalidInputError

log = logging.getLogger(__name__)


class LocalServer:
    """A server process this Blender session started; restarting it frees all of its GPU memory."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, command: str, url: str, wait_s: float = 60.0, die_with_parent: bool = False) -> None:
        """Run ``command`` (split like a shell would, not run through one) and wait until ``url`` answers.

        ``die_with_parent``: the server ends when this process does, however it ends (Linux; see
        :func:`..processes.die_with_parent`): for servers a command-line run starts for itself."""
        if self.running:
            return
        args = shlex.split(command)
        if not args:
            raise InvalidInputError("set the command that starts the server in the GroupEdit preferences")
        try:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, start_new_session=True,
                                         preexec_fn=processes.die_with_parent if die_with_parent else None)
        except OSError as exc:
            raise InvalidInputError(f"cannot start the server with {command!r}: {exc}") from exc
        end = time.monotonic() + wait_s
        client = BackendClient(url, timeout=1.0)
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")[-800:] if self.proc.stderr else ""
                self.proc = None
                raise InvalidInputError(f"the server exited at once: {err.strip() or 'no message'}")
            try:
                if client.health()["status"] in ("ready", "busy"):
                    return
            except ServerRequestError:
                pass
            time.sleep(0.2)
        raise InvalidInputError(f"the server did not answer at {url} within {wait_s:.0f} s: check the URL and command")

    def stop(self) -> None:
        if self.running:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, command: str, url: str) -> None:
        self.stop()
        self.start(command, url)
