"""When a run's chunk texts are final, so its ontology can be built while the last pages embed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class AnalysisBarrier:
    """Set once no more chunk text will be written in this run.

    That is when every document has started all the page batches it will start (or ended:
    skipped, failed), and every started batch has left the analyze phase (analyzed, or failed
    on the way). Concepts come from chunk texts alone, not from vectors, so an ontology built
    from then on equals the one built after the last embed; building it meanwhile uses the
    core that would otherwise idle at the end of the run.
    """

    def __init__(self, document_ids: Iterable[str]) -> None:
        self._open_documents = set(document_ids)
        self._open_batches = 0
        self._settled = asyncio.Event()
        self._check()

    def batch_started(self) -> None:
        self._open_batches += 1

    def batch_analyzed(self) -> None:
        """The batch's chunks are written, or it failed before they were."""
        self._open_batches -= 1
        self._check()

    def document_scheduled(self, document_id: str) -> None:
        """No more batches of this document will start; safe to call more than once."""
        self._open_documents.discard(document_id)
        self._check()

    async def wait(self) -> None:
        await self._settled.wait()

    def _check(self) -> None:
        if not self._open_documents and self._open_batches == 0:
            self._settled.set()
