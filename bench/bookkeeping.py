"""What a page costs outside the model: CPU of the driver, the aggregator and the MongoDB
server per page, on the embedded default.

    .venv/bin/python bench/bookkeeping.py [--documents 8] [--pages 12] [--runs 3]

A generated workspace (8 PDFs, 98 pages by default) indexed by `run_index` on a local Ray
with 2 CPUs, against the embedded MongoDB server on disk (what `indexer` uses with
MONGODB_URI unset), `--runs` times on fresh workspaces in one database (the first run
cold, the next ones warm). For each run: pages/s, and CPU milliseconds per page of the
MongoDB server, the driver (this process) and the aggregator, from the CPU meter; and the
server's operations per page by kind (its `serverStatus` opcounters: an update or a command
costs it more than an insert).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from harness import (
    CpuMeter,
    arguments,
    new_workspace,
    other_load,
    print_cpu,
    print_table,
    run_settings,
    sample_corpus,
    timed_run,
)
from pymongo import MongoClient

from cluster.ray_runtime import connect_ray
from core.embedded_mongo import EmbeddedMongo

RAY_CPUS = 2
STORE = "MongoDB server (secantusd)"
DRIVER = "bench (this process)"
AGGREGATOR = "ray::ProgressAggregator"


def per_page(meter: CpuMeter, label: str, pages: int) -> str:
    return f"{1000 * meter.by_label().get(label, 0.0) / pages:.1f}"


def operations(uri: str) -> dict[str, int]:
    with MongoClient(uri) as client:
        return dict(client.admin.command("serverStatus")["opcounters"])


def main() -> None:
    parser = arguments(__doc__, documents=8, pages=12)
    parser.add_argument("--runs", type=int, default=3, help="runs on fresh workspaces")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-bookkeeping-"))
    paths = sample_corpus(work / "corpus", args)
    print(f"other load before: {other_load():.0%} of the CPUs")
    with EmbeddedMongo(work / "mongo") as mongo:
        connect_ray(None, num_cpus=RAY_CPUS)
        settings = run_settings(mongo.uri, work / "data")
        rows, meters, ops = [], {}, []
        for run in range(1, args.runs + 1):
            workspace_id = asyncio.run(new_workspace(mongo.uri, settings.mongodb_db, paths))
            before = operations(mongo.uri)
            timed = timed_run(settings, workspace_id)
            after = operations(mongo.uri)
            pages = timed.summary.pages
            label = f"run {run}" + (" (cold)" if run == 1 else "")
            meters[label] = timed.cpu
            rows.append(
                [
                    label,
                    pages,
                    f"{pages / timed.seconds:.1f}",
                    per_page(timed.cpu, STORE, pages),
                    per_page(timed.cpu, DRIVER, pages),
                    per_page(timed.cpu, AGGREGATOR, pages),
                    f"{timed.cpu.foreign_load():.0%}",
                ]
            )
            ops.append([label, *(f"{(after[k] - before[k]) / pages:.2f}" for k in sorted(after))])
            kinds = sorted(after)
    header = ["run", "pages", "pages/s", "store ms/page", "driver ms/page", "aggregator ms/page"]
    print_table([*header, "other load"], rows)
    print_table(["operations per page", *kinds], ops)
    print_cpu(meters)


if __name__ == "__main__":
    main()
