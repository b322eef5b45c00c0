"""Says once, on the run's own terminal or log, that its events reach no head.

A run publishes its events from its aggregator, a Ray actor whose log the driver does not
show, and a failed publish costs only that notification (MongoDB keeps the state). So a run
whose HEAD_URL names no head would go on with every browser page standing still and nobody
told. The driver waits on the aggregator for the first failure and writes one warning; a
failure the wait has not reported when the run ends is reported then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ray.exceptions import RayActorError

from actors.ray_futures import as_future

logger = logging.getLogger(__name__)


class DeliveryWatch:
    """One per run, made once its aggregator exists; `close` before the aggregator goes."""

    def __init__(self, aggregator: Any) -> None:
        self._aggregator = aggregator
        self._said = False
        self._waiting = as_future(aggregator.undelivered.remote())
        self._waiting.add_done_callback(self._on_undelivered)

    def _on_undelivered(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._say(future.result())

    def _say(self, warning: str) -> None:
        if not self._said:
            self._said = True
            logger.warning("%s", warning)

    async def close(self) -> None:
        """The run's last events were handed over (or it failed): says what the wait has
        not said yet. An aggregator already gone has nothing more to tell."""
        if self._said:
            return
        with contextlib.suppress(RayActorError):
            warning = await self._aggregator.undelivered_now.remote()
            if warning is not None:
                self._say(warning)
