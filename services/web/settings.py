"""The web consoles' settings (RETAILFACE_WEB_*), and what the app reads from them (`WebSettings`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from retailface.services.shared.config import (
    ConfigError,
    ServiceConfig,
    Setting,
    parse_path,
    parse_port,
    parse_positive_float,
)

W = "RETAILFACE_WEB_"

SETTINGS: list[Setting] = [
    Setting(f"{W}HTTP_PORT", parse_port, 8480, "port of the consoles' HTML (HTTPS when RETAILFACE_TLS_CERT is set)"),
    Setting(f"{W}GATEWAY_ADDR", str, "127.0.0.1:50050", "the gateway (staff alerts, erasures)"),
    Setting(f"{W}PERSONALIZATION_ADDR", str, "127.0.0.1:50054", "the personalization service (everything else)"),
    Setting(
        f"{W}TOKEN_FILE",
        parse_path,
        None,
        "file with the web's own bearer token (role web): the member portal's calls for the member it signed in",
        required=True,
        secret=True,
    ),
    Setting(
        f"{W}SESSION_KEY_FILE",
        parse_path,
        None,
        "file with the secret that encrypts and signs the session cookies (AES-GCM; any length, 32 random bytes "
        "or more); changing it signs everybody out",
        required=True,
        secret=True,
    ),
    Setting(f"{W}SESSION_SECONDS", parse_positive_float, 8 * 3600.0, "a staff or office session ends after this"),
    Setting(
        f"{W}MEMBER_SESSION_SECONDS",
        parse_positive_float,
        1800.0,
        "a member's portal session ends after this (or earlier, when the sign-in code says so)",
    ),
    Setting(
        f"{W}PUBLIC_URL",
        str,
        "",
        "the consoles' address as people reach it (the member sign-in links); empty: this host and port",
    ),
]


@dataclass(frozen=True)
class WebSettings:
    http_port: int
    gateway_addr: str
    personalization_addr: str
    web_token: str
    session_key: bytes  # 32 bytes, derived from the secret file
    session_seconds: float
    member_session_seconds: float
    public_url: str
    tls: bool  # HTML over HTTPS: Secure cookies


def session_key_from(secret: bytes) -> bytes:
    """A 256-bit AES key from the secret file's bytes (the file may hold any text)."""
    if len(secret.strip()) < 16:
        raise ConfigError(f"{W}SESSION_KEY_FILE holds fewer than 16 bytes: use 32 random bytes or more")
    return hashlib.sha256(b"retailface-web-session\x00" + secret.strip()).digest()


def read_secret(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{name}={path}: {error.strerror}") from None


def web_settings(cfg: ServiceConfig) -> WebSettings:
    token = read_secret(cfg.get(f"{W}TOKEN_FILE"), f"{W}TOKEN_FILE").decode().strip()
    if not token:
        raise ConfigError(f"{W}TOKEN_FILE is empty")
    port = int(cfg.get(f"{W}HTTP_PORT"))
    tls = cfg.get("RETAILFACE_TLS_CERT") is not None
    public = cfg.get(f"{W}PUBLIC_URL") or f"{'https' if tls else 'http'}://{cfg.get('RETAILFACE_HOST')}:{port}"
    return WebSettings(
        http_port=port,
        gateway_addr=cfg.get(f"{W}GATEWAY_ADDR"),
        personalization_addr=cfg.get(f"{W}PERSONALIZATION_ADDR"),
        web_token=token,
        session_key=session_key_from(read_secret(cfg.get(f"{W}SESSION_KEY_FILE"), f"{W}SESSION_KEY_FILE")),
        session_seconds=float(cfg.get(f"{W}SESSION_SECONDS")),
        member_session_seconds=float(cfg.get(f"{W}MEMBER_SESSION_SECONDS")),
        public_url=public.rstrip("/"),
        tls=tls,
    )
