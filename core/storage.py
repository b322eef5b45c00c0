"""Where MongoDB lives: MONGODB_URI when set, otherwise the embedded SecantusDB server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from core.embedded_mongo import EmbeddedMongo
from core.settings import Secret, Settings


@contextmanager
def resolved_storage(settings: Settings) -> Iterator[Settings]:
    """Yield settings whose `mongodb_uri` is set, starting the embedded server if needed.

    The embedded server keeps its data in `INDEXER_DATA_DIR`, is reused when another
    process already runs it for that directory, and is stopped on exit only if started here.
    """
    if settings.mongodb_uri is not None:
        yield settings
        return
    with EmbeddedMongo(settings.data_dir / "mongo") as server:
        yield settings.with_overrides(mongodb_uri=Secret(server.uri))
