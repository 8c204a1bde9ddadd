"""Server configuration: where it listens, where it keeps jobs, which editor it runs, and its limits."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidInput


@dataclass
class Limits:
    """Request limits, checked before any work (the body size before the body is read)."""

    max_body_bytes: int = 1 << 30
    max_views: int = 32
    max_pixels: int = 4096 * 4096
    #: all views of one job together (the reference image too), from the image headers before anything is decoded
    max_job_pixels: int = 64 * 1024 * 1024
    max_instruction_chars: int = 2000
    max_queue: int = 16

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class ServerConfig:
    """Everything ``groupedit-server`` is started with."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    editor: str = "classical"
    editor_config: dict[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    result_ttl_s: float = 7 * 24 * 3600.0
    #: test hook: seconds the worker sleeps per step (lets tests cancel or kill mid-job)
    step_delay_s: float = 0.0

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def validate(self) -> None:
        if not self.loopback and not self.token:
            raise InvalidInput(
                f"refusing to listen on {self.host} without a token: anyone on the network could use the GPU. "
                "Pass --token-file (or bind 127.0.0.1)"
            )
