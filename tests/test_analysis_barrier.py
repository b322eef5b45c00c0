"""The barrier that lets a run build its ontology while its last pages embed."""

from __future__ import annotations

import asyncio

from cluster.analysis_barrier import AnalysisBarrier


async def settled(barrier: AnalysisBarrier) -> bool:
    waiter = asyncio.ensure_future(barrier.wait())
    await asyncio.sleep(0)  # one turn of the loop: a set event wakes the waiter in it
    waiter.cancel()
    return waiter.done() and not waiter.cancelled()


async def test_waits_for_every_document_and_every_started_batch() -> None:
    barrier = AnalysisBarrier(["a", "b"])
    barrier.batch_started()
    barrier.batch_started()
    barrier.document_scheduled("a")
    assert not await settled(barrier)  # b may still start batches
    barrier.document_scheduled("b")
    barrier.batch_analyzed()
    assert not await settled(barrier)  # one batch is still being analyzed
    barrier.batch_analyzed()
    assert await settled(barrier)


async def test_a_document_marked_twice_counts_once() -> None:
    barrier = AnalysisBarrier(["a", "b"])
    barrier.document_scheduled("a")
    barrier.document_scheduled("a")
    assert not await settled(barrier)
    barrier.document_scheduled("b")
    assert await settled(barrier)


async def test_a_run_without_documents_is_settled_at_once() -> None:
    assert await settled(AnalysisBarrier([]))
