"""Every error of the matching service, in one place.

Errors a caller can fix are `ServiceError`s (services.shared.errors): the server turns them into their
gRPC status with their message, which says what to change. Errors that stop the service at start (the
key, the data dir) are `StartupError`s: the service exits with their message as a configuration error.
"""

from __future__ import annotations

from retailface.services.shared.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable

# ---------------------------------------------------------------- the caller's: a status per error


class UnknownGalleryError(NotFound):
    pass


class UnknownSubjectError(NotFound):
    pass


class TemplateConflictError(AlreadyExists):
    """A template id that already belongs to another subject of the gallery."""


class InvalidRequestError(InvalidArgument):
    pass


class InvalidVectorError(InvalidArgument):
    """NaN/Inf or not L2-normalised; ``index`` is the vector's position in the request."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


class ReplicaBehindError(Unavailable):
    """A search needs a change this replica has not applied yet; the client retries another replica."""


class DatabaseUnavailableError(Unavailable):
    """PostgreSQL, which holds the galleries' log, cannot be reached; the change was refused."""


class ModelMismatchError(FailedPrecondition):
    """A vector of another model, version or dimension than the gallery's (also stops a start: see below)."""


# ---------------------------------------------------------------- the service's: it does not start


class CalibrationMissingError(FailedPrecondition):
    """A search asked for a calibrated decision from a gallery that has no calibration."""


class StartupError(RuntimeError):
    """The data dir or its key cannot be used; the message says how to fix it."""


class KeyConfigError(StartupError):
    """The encryption key is missing, unreadable or not 32 bytes, or not the data dir's key."""


class DataDirLockedError(StartupError):
    """Another service holds the data dir."""


class StoreCorruptedError(StartupError):
    """The data dir cannot be loaded without losing acknowledged data."""


class DecryptionError(StoreCorruptedError):
    """A whole, checksum-valid record does not decrypt: wrong key, or the file was tampered with."""


class LogGapError(StoreCorruptedError):
    """Changes after this replica's position were pruned (a newer snapshot covers them): reload from it."""


class LogCorruptedError(StoreCorruptedError):
    """The log is damaged in a way that a crash cannot explain; acknowledged records would be lost."""


class CalibrationError(StartupError):
    """The calibration file is missing, malformed, or made for another model."""
