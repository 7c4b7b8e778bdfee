"""Credentials rotated without a restart: the tokens file and the TLS certificate, key and CA are watched.

`CredentialsWatcher` polls the files (their content's SHA-256, every RETAILFACE_CREDENTIALS_POLL_SECONDS) on
one `PeriodicWorker` and loads a change:

- `RotatingTokens` wraps `TokenStore`. A new tokens file takes effect at once; the tokens it dropped stay
  accepted for RETAILFACE_TOKEN_ROTATION_OVERLAP_SECONDS (clients move to the new token meanwhile), then
  are refused.
- `RotatingCertificate` feeds `grpc.dynamic_ssl_server_credentials`: gRPC asks it for the certificate
  before each new handshake, so new connections get the new certificate (and are verified against the new
  CA) while established ones live on.

A bad new file (invalid JSON, a key that is not the certificate's, an unreadable file) is logged as an
error and the old values stay in force: a half-written rotation never takes a service down. The next
change to the files is tried again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from retailface.client.connection import files_digest
from retailface.services.shared.auth import Principal, TokenStore
from retailface.services.shared.periodic import PeriodicWorker

log = structlog.get_logger(__name__)


class RotatingTokens:
    """Who holds a bearer token (TokenStore's lookups): the tokens file as it is now, and as it was for the overlap."""

    def __init__(self, path: Path, overlap_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        if overlap_seconds < 0:
            raise ValueError(f"the token rotation overlap must be >= 0 seconds, got {overlap_seconds}")
        self.path = Path(path)
        self._overlap = overlap_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._digest = files_digest([self.path])
        self._current = TokenStore.from_file(self.path)  # at start-up a bad file is a startup error
        self._retired: list[tuple[TokenStore, float]] = []  # (an earlier file's tokens, accepted until)

    def principal_of(self, token: str) -> Principal | None:
        """Who holds `token` in the current file, else in an earlier file while its overlap lasts."""
        with self._lock:
            now = self._clock()
            self._retired = [(store, until) for store, until in self._retired if until > now]
            stores = [self._current, *(store for store, _ in reversed(self._retired))]
        for store in stores:
            principal = store.principal_of(token)
            if principal is not None:
                return principal
        return None

    def role_of(self, token: str) -> str | None:
        principal = self.principal_of(token)
        return principal.role if principal else None

    def reload(self) -> bool:
        """Loads the file if its content changed; True when new tokens took effect."""
        digest = files_digest([self.path])
        if digest == self._digest:
            return False
        self._digest = digest  # a bad file is reported once, not on every poll
        try:
            store = TokenStore.from_file(self.path)
        except (OSError, ValueError, TypeError, AttributeError) as error:
            # The message names the file and what is wrong with it, never a token.
            log.error("tokens_reload_failed", path=str(self.path), error=_describe(error), kept="previous tokens")
            return False
        with self._lock:
            self._retired.append((self._current, self._clock() + self._overlap))
            self._current = store
        log.info("tokens_reloaded", path=str(self.path), overlap_seconds=self._overlap)
        return True


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path | None  # verifies client certificates (mutual TLS); None: clients are not asked for one

    @property
    def paths(self) -> list[Path]:
        return [self.cert, self.key, *([self.ca] if self.ca is not None else [])]


def check_tls_pem(files: TlsFiles, pem: dict[Path, bytes]) -> None:
    """The certificate and key (`pem[path]`, the bytes read once: what is checked is what gets used) are PEM and
    a pair, and the CA bundle is PEM; ValueError names the file at fault."""
    try:
        certificate = x509.load_pem_x509_certificate(pem[files.cert])
    except ValueError:
        raise ValueError(f"{files.cert}: not a PEM certificate") from None
    try:
        private_key = serialization.load_pem_private_key(pem[files.key], password=None)
    except (ValueError, TypeError):
        raise ValueError(f"{files.key}: not an unencrypted PEM private key") from None
    encoding, public = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    if private_key.public_key().public_bytes(encoding, public) != certificate.public_key().public_bytes(
        encoding, public
    ):
        raise ValueError(f"{files.key} is not the private key of {files.cert}: install the matching pair")
    if files.ca is not None:
        try:
            x509.load_pem_x509_certificates(pem[files.ca])
        except ValueError:
            raise ValueError(f"{files.ca}: not a PEM CA bundle") from None


def load_certificate_configuration(files: TlsFiles) -> grpc.ServerCertificateConfiguration:
    """The server's certificate configuration from PEM files; ValueError names the file that is wrong."""
    pem = {path: path.read_bytes() for path in files.paths}
    check_tls_pem(files, pem)
    ca_pem = pem[files.ca] if files.ca is not None else None
    return grpc.ssl_server_certificate_configuration([(pem[files.key], pem[files.cert])], root_certificates=ca_pem)


class RotatingCertificate:
    """The server certificate gRPC uses for each new handshake, replaced when its files change."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._lock = threading.Lock()
        self._digest = files_digest(files.paths)
        self.initial = load_certificate_configuration(files)  # at start-up a bad file is a startup error
        self._pending: grpc.ServerCertificateConfiguration | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self.initial, self.fetch, require_client_authentication=self.files.ca is not None
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before each new handshake: a new configuration once, None while nothing changed."""
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def reload(self) -> bool:
        """Loads the files if their content changed; True when the next handshakes get the new certificate."""
        digest = files_digest(self.files.paths)
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            configuration = load_certificate_configuration(self.files)
        except (OSError, ValueError) as error:
            log.error(
                "tls_reload_failed", cert=str(self.files.cert), error=_describe(error), kept="previous certificate"
            )
            return False
        with self._lock:
            self._pending = configuration
        log.info("tls_reloaded", cert=str(self.files.cert))
        return True


class CredentialsWatcher:
    """Polls the tokens file and the TLS files every `interval` seconds on one background thread."""

    def __init__(
        self, interval: float, tokens: RotatingTokens | None = None, certificate: RotatingCertificate | None = None
    ) -> None:
        self.tokens, self.certificate = tokens, certificate
        self._worker = PeriodicWorker("credentials-watcher", interval, self.poll)

    def poll(self) -> None:
        if self.tokens is not None:
            self.tokens.reload()
        if self.certificate is not None:
            self.certificate.reload()

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError):
        return f"cannot read {error.filename}: {error.strerror}"
    return str(error)
