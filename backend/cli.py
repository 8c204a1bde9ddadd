"""``groupedit-server``: start the local edit server."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from .config import Limits, ServerConfig
from .errors import BackendError
from .groupediting.settings import LOAD_NAMES, SETTING_NAMES, add_setting_flags, settings_from

DEFAULT_DATA = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "groupedit-server"


def read_token(path: Path, create: bool) -> str:
    """The token in ``path``; with ``create``, a new random one written readable by the user only."""
    if not path.exists():
        if not create:
            raise BackendError(f"token file {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        # written whole under a private name, then linked into place: a reader never sees an empty file,
        # and a token another process made first is kept (the link fails, theirs is read below)
        part = path.with_name(f".{path.name}.{os.getpid()}.part")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
        try:
            os.link(part, path)
        except FileExistsError:
            pass
        finally:
            part.unlink()
    if path.stat().st_mode & 0o077:
        raise BackendError(f"token file {path} is readable by others: chmod 600 it")
    token = path.read_text(errors="replace").strip()
    if not token:  # an empty token would turn authentication off without a word
        raise BackendError(f"token file {path} is empty: write a token in it, or delete it to have a new one made")
    return token


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="groupedit-server", description="GroupEdit's local edit server",
        epilog="To download the groupediting editor's weights: groupedit-server download --to DIR; to check a "
               "weights file: groupedit-server inspect-weights FILE (see --help there)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="jobs database, inputs and results")
    p.add_argument("--editor", default="classical",
                   help="classical, identity, groupediting (needs --model-dir), or package.module:Class")
    p.add_argument("--token-file", type=Path, help="require this Bearer token (created if missing, mode 600)")
    p.add_argument("--max-queue", type=int, default=Limits.max_queue)
    p.add_argument("--max-views", type=int, default=Limits.max_views)
    p.add_argument("--max-body-mb", type=int, default=Limits.max_body_bytes >> 20)
    p.add_argument("--max-job-megapixels", type=float, default=Limits.max_job_pixels / 2**20,
                   help="all images of one job together, in units of 2^20 pixels (checked from the image headers)")
    p.add_argument("--result-ttl-hours", type=float, default=24 * 7)
    add_groupediting_arguments(p)
    return p


#: Flags (argparse ``dest``) passed to :class:`backend.editors.groupediting_editor.GroupEditingEditor` under the same
#: keyword when given: its load settings and its edit defaults (backend/groupediting/settings.py).
GROUPEDITING_FLAGS: tuple[str, ...] = LOAD_NAMES + SETTING_NAMES


def add_groupediting_arguments(p: argparse.ArgumentParser) -> None:
    """The groupediting editor's flags, made from its settings (see docs/models.md)."""
    add_setting_flags(p.add_argument_group("groupediting editor: model, device and edit defaults (a job's options "
                                           "override the edit defaults; see docs/models.md)"))


def editor_config(args: argparse.Namespace) -> dict[str, Any]:
    """The editor's keyword arguments from the flags; groupediting flags with another editor are an error."""
    given = {flag: getattr(args, flag) for flag in GROUPEDITING_FLAGS if getattr(args, flag) is not None}
    if args.editor != "groupediting":
        if given:
            names = ", ".join("--" + f.replace("_", "-") for f in given)
            raise BackendError(f"{names} only apply to --editor groupediting (the {args.editor} editor has no model)")
        return {}
    if "model_dir" not in given:
        raise BackendError("--editor groupediting needs --model-dir DIR (the diffusers Wan2.1-VACE directory): "
                           "see docs/models.md, or `groupedit-server download --to DIR`")
    settings_from(given)  # refuse bad values now, not in the worker
    return given


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["download"]:
        from .groupediting.download import main as download_main

        return download_main(argv[1:])
    if argv[:1] == ["inspect-weights"]:
        return inspect_weights_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        token = read_token(args.token_file, create=True) if args.token_file else None
        config = ServerConfig(
            data_dir=args.data_dir, host=args.host, port=args.port, token=token, editor=args.editor,
            editor_config=editor_config(args),
            limits=Limits(max_body_bytes=args.max_body_mb << 20, max_views=args.max_views, max_queue=args.max_queue,
                          max_job_pixels=int(args.max_job_megapixels * 2**20)),
            result_ttl_s=args.result_ttl_hours * 3600,
        )
        from .app import create_app

        app = create_app(config)
    except BackendError as exc:
        print(f"groupedit-server: error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    print(f"groupedit-server {args.editor} editor on http://{args.host}:{args.port} (data in {args.data_dir})", flush=True)
    # open event streams end at a shutdown (see app.event_stream); anything else gets 5 s to finish
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                           timeout_graceful_shutdown=5))
    app.state.http_server = server
    app.state.supervisor.on_fatal = lambda: setattr(server, "should_exit", True)
    server.run()
    if app.state.supervisor.fatal:
        print(f"groupedit-server: error: {app.state.supervisor.fatal}", file=sys.stderr)
        return 1
    return 0


def inspect_weights_main(argv: list[str]) -> int:
    """``groupedit-server inspect-weights FILE [--model-dir DIR] [--json]``: what a weights file holds, from its
    header only."""
    import json

    p = argparse.ArgumentParser(prog="groupedit-server inspect-weights",
                                description="Read a GroupEditing weights file's header (no tensor is loaded) and say "
                                            "what it holds and what loading would skip")
    p.add_argument("file", type=Path, help="a .safetensors file (the release's epoch-9.safetensors or our format)")
    p.add_argument("--model-dir", type=Path, help="plan the file against this Wan2.1-VACE directory's transformer, "
                                                  "exactly as loading would")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    from .groupediting.weights import inspect_weights

    try:
        info = inspect_weights(args.file, args.model_dir)
    except BackendError as exc:
        print(f"groupedit-server inspect-weights: error: {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info, indent=2))
        return 0 if info["problem"] is None else 1
    print(f"{info['path']}\n  layout: {info['layout']}\n  tensors: {info['tensors']} "
          f"({info['parameters'] / 1e9:.3f} B parameters, {info['bytes'] / 2**30:.2f} GiB)")
    print("  dtypes: " + ", ".join(f"{d} x {n}" for d, n in info["dtypes"].items()))
    print(f"  VACE tensors: {info['vace_tensors']}; LoRA pairs: {info['lora_pairs']} "
          f"(rank {', '.join(map(str, info['lora_ranks'])) or '-'}); other tensors: {info['other_tensors']}")
    for label, names in (("would be skipped", info["skipped"]), ("kept from the base", info["kept_from_base"])):
        shown = ", ".join(names[:10]) + (f", … and {len(names) - 10} more" if len(names) > 10 else "")
        print(f"  {label}: {len(names)}" + (f" ({shown})" if names else ""))
    if args.model_dir is None:
        print("  (pass --model-dir to check it against the base model exactly as loading would)")
    elif info["problem"]:
        print(f"  loading would refuse it: {info['problem']}")
    else:
        print("  loads into this base model")
    return 0 if info["problem"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
