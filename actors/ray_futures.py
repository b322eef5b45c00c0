"""Awaiting Ray calls from asyncio when nobody may be left to read their result."""

from __future__ import annotations

import asyncio
from typing import Any


def as_future(ref: Any) -> asyncio.Future[Any]:
    """An asyncio future of an ObjectRef. Its error (an actor killed while the call waited,
    as a run's aggregator is at the end of every run) is consumed here, so Ray does not
    report it as unhandled when nobody awaits the future any more."""
    future: asyncio.Future[Any] = asyncio.wrap_future(ref.future())
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future
