"""The data dir itself: one service at a time (flock), and the proof that the configured key is its key.

DATA_DIR/.lock            flock: a second service on the same dir refuses to start
DATA_DIR/key-check.bin    one record sealed with the key; written once every gallery opened with it
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from retailface.services.matching.crypto import RecordCipher, read_sealed_file
from retailface.services.matching.errors import (
    DataDirLockedError,
    DecryptionError,
    KeyConfigError,
    StoreCorruptedError,
)
from retailface.services.matching.recordlog import write_atomically

LOCK_FILE = ".lock"
KEY_CHECK_FILE = "key-check.bin"
KEY_CHECK_TEXT = b"retailface matching data dir key check v1"
KEY_CHECK_CONTEXT = "key-check"


class DataDir:
    """Creates and locks the data dir; ``release`` unlocks it."""

    def __init__(self, path: Path, cipher: RecordCipher) -> None:
        self.path = Path(path).expanduser()
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._cipher = cipher
        self._lock_fd = self._lock()

    def _lock(self) -> int:
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise DataDirLockedError(f"another matching service is using {self.path}") from exc
        return fd

    def check_key(self) -> bool:
        """Raises when the key does not open this data dir's key check; True when there is none yet."""
        path = self.path / KEY_CHECK_FILE
        if not path.exists():
            return True
        try:
            records = read_sealed_file(path, self._cipher, KEY_CHECK_CONTEXT)
        except DecryptionError as exc:
            raise KeyConfigError(
                f"the key in RETAILFACE_MATCHING_KEY_FILE is not the key the data dir {self.path} was written "
                "with; configure the original key (a data dir cannot be read without it)"
            ) from exc
        if records != [KEY_CHECK_TEXT]:
            raise StoreCorruptedError(f"{path} is not a RetailFace matching key check file")
        return False

    def write_key_check(self) -> None:
        """Claims the data dir for the key; only once every gallery decrypted with it (a wrong key must not)."""
        write_atomically(self.path / KEY_CHECK_FILE, [self._cipher.seal(KEY_CHECK_CONTEXT, 0, KEY_CHECK_TEXT)])

    def release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
