"""``groupedit-server``: start the local edit server."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from pathlib import Path

from .config import Limits, ServerConfig
from .errors import BackendError

DEFAULT_DATA = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "groupedit-server"


def read_token(path: Path, create: bool) -> str:
    """The token in ``path``; with ``create``, a new random one written readable by the user only."""
    if not path.exists():
        if not create:
            raise BackendError(f"token file {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    if path.stat().st_mode & 0o077:
        raise BackendError(f"token file {path} is readable by others: chmod 600 it")
    return path.read_text().strip()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="groupedit-server", description="GroupEdit's local edit server",
        epilog="To download the groupediting editor's weights: groupedit-server download --to DIR (see --help there)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="jobs database, inputs and results")
    p.add_argument("--editor", default="classical", help="classical, identity, or package.module:Class")
    p.add_argument("--token-file", type=Path, help="require this Bearer token (created if missing, mode 600)")
    p.add_argument("--max-queue", type=int, default=Limits.max_queue)
    p.add_argument("--max-views", type=int, default=Limits.max_views)
    p.add_argument("--max-body-mb", type=int, default=Limits.max_body_bytes >> 20)
    p.add_argument("--result-ttl-hours", type=float, default=24 * 7)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["download"]:
        from .groupediting.download import main as download_main

        return download_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        token = read_token(args.token_file, create=True) if args.token_file else None
        config = ServerConfig(
            data_dir=args.data_dir, host=args.host, port=args.port, token=token, editor=args.editor,
            limits=Limits(max_body_bytes=args.max_body_mb << 20, max_views=args.max_views, max_queue=args.max_queue),
            result_ttl_s=args.result_ttl_hours * 3600,
        )
        from .app import create_app

        app = create_app(config)
    except BackendError as exc:
        print(f"groupedit-server: error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    print(f"groupedit-server {args.editor} editor on http://{args.host}:{args.port} (data in {args.data_dir})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
