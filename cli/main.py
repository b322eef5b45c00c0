"""The `indexer` command line. Settings are read once here and passed down."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from cluster.ray_auth import prepare_ray_auth
from core.db import ensure_indexes, open_client, parse_object_id, require_uri
from core.errors import IndexerError
from core.settings import Settings, load_settings
from core.storage import resolved_storage
from core.workspaces import create_workspace, find_workspace, public_state

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

Command = Callable[[argparse.Namespace, Settings], int]


def _run_head(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from head.app import create_app
    from head.server import uvicorn_options

    port = args.port or settings.port
    # uvicorn stops on SIGTERM, then sends it again to the process: raising here unwinds
    # what the head started (its Ray, the embedded MongoDB) as Ctrl-C does.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with resolved_storage(settings) as ready:
        app = create_app(ready.with_overrides(port=port))
        uvicorn.run(app, **uvicorn_options(host=args.host, port=port))
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _driver(args: argparse.Namespace, settings: Settings) -> int:
    from cluster.run_service import serve_driver

    return serve_driver(settings)


def _with_db(settings: Settings, work: Callable[[Any], Awaitable[int]]) -> int:
    """Run `work(db)` on a fresh event loop with a client opened and closed inside it."""

    async def main(ready: Settings) -> int:
        client = open_client(require_uri(ready))
        try:
            db = client[ready.mongodb_db]
            await ensure_indexes(db)
            return await work(db)
        finally:
            await client.close()

    with resolved_storage(settings) as ready:
        return asyncio.run(main(ready))


def _workspace_create(args: argparse.Namespace, settings: Settings) -> int:
    async def work(db: Any) -> int:
        workspace_id = await create_workspace(
            db, name=args.name, owner_id=args.owner, member_ids=args.member or []
        )
        print(workspace_id)
        return 0

    return _with_db(settings, work)


def _workspace_show(args: argparse.Namespace, settings: Settings) -> int:
    async def work(db: Any) -> int:
        workspace = await find_workspace(db, args.workspace_id)
        if workspace is None:
            print(f"indexer: no workspace {args.workspace_id!r}", file=sys.stderr)
            return 1
        print(json.dumps(public_state(workspace), indent=2))
        return 0

    return _with_db(settings, work)


def _add(args: argparse.Namespace, settings: Settings) -> int:
    from cluster.documents import add_document

    async def work(db: Any) -> int:
        if await find_workspace(db, args.workspace_id) is None:
            print(f"indexer: no workspace {args.workspace_id!r}", file=sys.stderr)
            return 1
        failures = 0
        for source in args.sources:
            result = await add_document(
                db, args.workspace_id, source, max_bytes=settings.max_document_bytes
            )
            if result.error:
                failures += 1
                print(f"{result.source}: refused: {result.error}", file=sys.stderr)
            else:
                print(f"{result.document_id} {result.source}")
        return 1 if failures else 0

    return _with_db(settings, work)


def _index(args: argparse.Namespace, settings: Settings) -> int:
    from cluster.run import index_with_progress

    if args.ray_address:
        settings = settings.with_overrides(ray_address=args.ray_address)
    if parse_object_id(args.workspace_id) is None:  # before any Ray starts
        print(f"indexer: no workspace {args.workspace_id!r}", file=sys.stderr)
        return 1
    with resolved_storage(settings) as ready:
        if not asyncio.run(_workspace_exists(ready, args.workspace_id)):
            print(f"indexer: no workspace {args.workspace_id!r}", file=sys.stderr)
            return 1
        summary = index_with_progress(ready, args.workspace_id, args.job_id)
    return 0 if summary.status == "succeeded" else 1


async def _workspace_exists(settings: Settings, workspace_id: str) -> bool:
    client = open_client(require_uri(settings))
    try:
        return await find_workspace(client[settings.mongodb_db], workspace_id) is not None
    finally:
        await client.close()


def _submit(args: argparse.Namespace, settings: Settings) -> int:
    from cluster.submit import submit_run

    with resolved_storage(settings) as ready:
        return asyncio.run(submit_run(ready, args.workspace_id, args.address, wait=args.wait))


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from cli.demo import run_demo

    return run_demo(
        settings, [Path(p) for p in args.pdfs], port=args.port, keep_serving=args.keep_serving
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="indexer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    head = commands.add_parser("head", help="run the head (REST + Socket.IO)")
    head.add_argument("--host", default="127.0.0.1")
    head.add_argument("--port", type=int, default=None, help="default: PORT or 4000")
    head.set_defaults(handler=_run_head)

    workspace = commands.add_parser("workspace", help="create or show workspaces")
    ws_commands = workspace.add_subparsers(dest="workspace_command", required=True)
    create = ws_commands.add_parser("create", help="create a workspace, print its id")
    create.add_argument("--name", required=True)
    create.add_argument("--owner", required=True, help="owner's user id")
    create.add_argument("--member", action="append", help="a viewer's user id (repeatable)")
    create.set_defaults(handler=_workspace_create)
    show = ws_commands.add_parser("show", help="print a workspace's state as JSON")
    show.add_argument("workspace_id")
    show.set_defaults(handler=_workspace_show)

    add = commands.add_parser("add", help="register documents (paths are stored in GridFS)")
    add.add_argument("workspace_id")
    add.add_argument("sources", nargs="+", metavar="PATH_OR_URL")
    add.set_defaults(handler=_add)

    index = commands.add_parser("index", help="index a workspace on Ray and wait for it")
    index.add_argument("workspace_id")
    index.add_argument("--ray-address", default=None, help="default: RAY_ADDRESS or a local Ray")
    index.add_argument("--job-id", default=None, help="a job queued by `submit` or the head")
    index.set_defaults(handler=_index)

    submit = commands.add_parser("submit", help="submit one run as a Ray Job")
    submit.add_argument("workspace_id")
    submit.add_argument("--address", required=True, help="Ray dashboard, e.g. http://HOST:8265")
    submit.add_argument("--wait", action="store_true", help="follow it; exit 1 if it failed")
    submit.set_defaults(handler=_submit)

    driver = commands.add_parser(
        "driver", help="the head's run driver (the head starts it; commands on stdin)"
    )
    driver.set_defaults(handler=_driver)

    demo = commands.add_parser("demo", help="index a demo workspace end to end, nothing to set up")
    demo.add_argument("pdfs", nargs="*", metavar="PDF", help="default: a generated sample set")
    demo.add_argument("--port", type=int, default=None, help="head port (default: PORT or 4000)")
    demo.add_argument(
        "--keep-serving", action="store_true", help="keep the head up after the run (Ctrl-C)"
    )
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    # one line per HTTP request of our own clients is noise in a terminal
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        prepare_ray_auth(os.environ)
        settings = load_settings(os.environ)
        handler: Command = args.handler
        return handler(args, settings)
    except IndexerError as exc:
        print(f"indexer: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
