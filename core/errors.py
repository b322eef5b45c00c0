"""The indexer's exception hierarchy.

    IndexerError
    ├── SettingsError          a setting is missing or malformed (names the variable)
    ├── StorageError           MongoDB (embedded or remote) cannot be reached or started
    ├── ClusterError           Ray cannot be reached, or the local Ray cannot be started
    ├── AuthError              a browser session could not be accepted
    │   ├── AuthenticationRequired   no usable session (missing, invalid, expired, no `sub`)
    │   └── AuthenticationFailed     the check itself broke (e.g. session store down)
    ├── ExtraMissingError      a feature needs an optional extra this install lacks
    ├── DocumentError          one document cannot be indexed; the run goes on
    ├── PublishError           an event could not be handed over (head or Redis down)
    │   └── PublishRefusedError      a head answered and refused it
    └── RunError               the indexing run itself failed (becomes `index:failed`)

All classes are plain and picklable so they survive a trip through Ray.
"""

from __future__ import annotations


class IndexerError(Exception):
    """Base of every error the indexer raises on purpose."""


class SettingsError(IndexerError):
    """A setting is missing or malformed; the message names the variable."""


class StorageError(IndexerError):
    """MongoDB cannot be reached, or the embedded server cannot be started."""


class ClusterError(IndexerError):
    """Ray cannot be reached, or the head's local Ray cannot be started."""


class AuthError(IndexerError):
    """A browser session could not be accepted.

    `message` is what the client is told (the spec's exact wording); `reason` is a short
    machine label for logs and metrics that never contains token material.
    """

    message = "Authentication failed"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AuthenticationRequired(AuthError):
    """No usable session: no cookie, undecryptable, expired, or no `sub`."""

    message = "Authentication required"


class AuthenticationFailed(AuthError):
    """The check itself broke (the session store could not be read)."""

    message = "Authentication failed"


class ExtraMissingError(IndexerError):
    """A feature needs an optional extra (`pip install '.[pipeline]'`) that this
    install lacks; the message names the feature, the extra and the missing modules."""


class _PhaseError(IndexerError):
    """An error tied to a pipeline phase; picklable with both fields for Ray."""

    def __init__(self, phase: str, message: str) -> None:
        super().__init__(f"{phase}: {message}")
        self.phase = phase
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.phase, self.message))


class DocumentError(_PhaseError):
    """One document cannot be indexed (corrupt, encrypted, empty, too large)."""


class RunError(_PhaseError):
    """The run itself failed; reported to the room as `index:failed {error, phase}`."""


class PublishError(IndexerError):
    """An event could not be handed over (head down, Redis down, rejected)."""


class PublishRefusedError(PublishError):
    """A head answered and refused the event (a wrong publish token, or no head there)."""
