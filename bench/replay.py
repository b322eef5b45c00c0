"""Reconnect replay: how long `workspace:join` with `since` takes to answer with what was missed.

    .venv/bin/python bench/replay.py [--repeats 20]

One `indexer head` on the embedded defaults, without runs (INDEXER_WARM=0), its history in
memory. EVENTS `index:progress` events are published through its `/internal/events`, as a
run publishes them (`make_publisher` with HEAD_URL); then one client joins the workspace
room again and again with `since` 10, 100 and EVENTS - 1 events back. Printed: the time to
the `workspace:joined` answer that carries the missed events, p50 and max.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from harness import (
    HeadProcess,
    RoomClient,
    arguments,
    heads,
    new_workspace,
    percentiles,
    print_table,
)

from core.embedded_mongo import EmbeddedMongo
from core.publisher import make_publisher
from core.settings import load_settings

EVENTS = 500


async def publish(head: HeadProcess, workspace_id: str) -> None:
    settings = load_settings({"NEXTAUTH_SECRET": head.secret, "HEAD_URL": head.url})
    publisher = make_publisher(settings)
    try:
        for done in range(EVENTS):
            progress = {
                "phase": "embed",
                "docsDone": 0,
                "docsTotal": 1,
                "pagesDone": done,
                "pagesTotal": EVENTS,
            }
            await publisher.publish(workspace_id, "index:progress", progress)
    finally:
        await publisher.aclose()


async def measure(head: HeadProcess, repeats: int) -> list[list[str]]:
    with EmbeddedMongo(head.data_dir / "mongo") as mongo:  # the head's server, reused
        workspace_id = await new_workspace(mongo.uri, "indexer", [])
    await publish(head, workspace_id)
    client = RoomClient(head.url)
    if not await client.connect(head.cookie()) or await client.join(workspace_id) is None:
        raise RuntimeError("the client could not join")
    epoch, rows = client.joined["epoch"], []
    try:
        for missed in (10, 100, EVENTS - 1):
            timings = []
            for _ in range(repeats):
                since = {"epoch": epoch, "seq": EVENTS - missed}
                timings.append(await client.join(workspace_id, since=since) or float("nan"))
                if len(client.joined.get("missed", [])) != missed:
                    raise RuntimeError(f"expected {missed} missed events: {client.joined}")
            figures = percentiles(timings)
            rows.append([str(missed), f"{figures['p50']:.1f}", f"{figures['max']:.1f}"])
    finally:
        await client.disconnect()
    return rows


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--repeats", type=int, default=20, help="joins per figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp, heads(Path(tmp), 1) as one:
        rows = asyncio.run(measure(one[0], args.repeats))
    print_table(["missed events", "p50 ms", "max ms"], rows)


if __name__ == "__main__":
    main()
