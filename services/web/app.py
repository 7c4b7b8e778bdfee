"""The wiring of the web consoles: the FastAPI app (pages, sessions, security), and its place on the bootstrap.

`create_app(consoles)` builds the ASGI app. `build(config)` (what `python -m retailface.services.web` runs
through services/shared/server.py) reads the settings, opens the channels, starts the HTML server (uvicorn,
HTTPS when RETAILFACE_TLS_CERT is set) in a thread, and hands the bootstrap a gRPC registration that serves
only grpc.health.v1 (SERVING / NOT_SERVING like every service) with the usual metrics, logs and SIGTERM drain.
On SIGTERM the health goes NOT_SERVING first, live alert streams end, and the HTML server finishes the
requests in flight within RETAILFACE_GRACE_SECONDS. GET /healthz answers the same over HTTP.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog
import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from retailface.services.shared.config import ConfigError, ServiceConfig
from retailface.services.shared.server import Registration, auth_limiter
from retailface.services.web import admin, analytics, member, privacy, sessions, signin, staff
from retailface.services.web.backend import Backend
from retailface.services.web.pages import (
    CLEAR,
    HERE,
    Consoles,
    PageError,
    TokenFile,
    consoles_of,
    csrf_protect,
    error_page,
)
from retailface.services.web.security import WEB_REQUESTS, SignInGuard, security_headers
from retailface.services.web.sessions import COOKIE_NAME, SessionCodec
from retailface.services.web.settings import SETTINGS as SETTINGS
from retailface.services.web.settings import web_settings

log = structlog.get_logger(__name__)
SERVICE_NAME = "retailface.web.Consoles"  # the health service's name for the consoles (no RPCs of their own)
START_TIMEOUT_SECONDS = 15.0


async def request_metrics(request: Request, call_next: Any) -> Response:
    """One log line and one latency sample per request, labelled by route (never by a URL's values)."""
    started = time.perf_counter()
    response: Response = await call_next(request)
    route = getattr(request.scope.get("route"), "path", "static" if request.url.path.startswith("/static/") else "-")
    elapsed = time.perf_counter() - started
    WEB_REQUESTS.labels(request.method, route, str(response.status_code)).observe(elapsed)
    if route != "static":
        log.info("http", method=request.method, route=route, status=response.status_code, ms=round(elapsed * 1000, 3))
    return response


async def session_cookie(request: Request, call_next: Any) -> Response:
    """Opens the session cookie (an unreadable or expired one is no session), and writes back a new session."""
    consoles = consoles_of(request)
    raw = request.cookies.get(COOKIE_NAME)
    session = consoles.codec.open(raw)
    request.state.new_session = None
    if session is None:
        session = sessions.anonymous(consoles.settings.session_seconds, consoles.clock)
        request.state.new_session = session
    request.state.session = session
    response: Response = await call_next(request)
    new = request.state.new_session
    if new is CLEAR:
        response.delete_cookie(COOKIE_NAME, path="/", secure=consoles.settings.tls, httponly=True, samesite="strict")
    elif new is not None and not request.url.path.startswith("/static/"):
        response.set_cookie(
            COOKIE_NAME,
            consoles.codec.seal(new),
            max_age=max(1, consoles.codec.remaining(new)),
            path="/",
            secure=consoles.settings.tls,
            httponly=True,
            samesite="strict",
        )
    return response


def create_app(consoles: Consoles) -> FastAPI:
    app = FastAPI(
        title="RetailFace consoles",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(csrf_protect)],
    )
    app.state.consoles = consoles
    # Starlette runs the last-added middleware first: headers go on every response, the session's too.
    app.middleware("http")(session_cookie)
    app.middleware("http")(security_headers)
    app.middleware("http")(request_metrics)

    @app.exception_handler(PageError)
    async def page_error(request: Request, error: PageError) -> Response:
        return error_page(request, error.status, error.title, error.detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        titles = {404: "Not found", 405: "Method not allowed"}
        return error_page(request, error.status_code, titles.get(error.status_code, "Error"), "")

    @app.exception_handler(RequestValidationError)
    async def invalid_form(request: Request, error: RequestValidationError) -> Response:
        return error_page(request, 400, "Invalid form", "A field is missing or malformed.")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        if consoles.stopping.is_set():
            return PlainTextResponse("NOT_SERVING", status_code=503)
        return PlainTextResponse("SERVING")

    for router in (signin.router, staff.router, member.router, privacy.router, analytics.router, admin.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    return app


class HtmlServer:
    """uvicorn in a thread of the service's process (the bootstrap's main thread waits for SIGTERM)."""

    def __init__(self, app: FastAPI, cfg: ServiceConfig, port: int, grace: float) -> None:
        cert, key = cfg.get("RETAILFACE_TLS_CERT"), cfg.get("RETAILFACE_TLS_KEY")
        config = uvicorn.Config(
            app,
            host=cfg.get("RETAILFACE_HOST"),
            port=port,
            ssl_certfile=str(cert) if cert else None,
            ssl_keyfile=str(key) if key else None,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(max(1, grace)),
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="web-html", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"the HTML server did not start on port {self.server.config.port} (port in use?)")
            time.sleep(0.05)

    def stop(self, grace: float) -> None:
        self.server.should_exit = True
        self.thread.join(grace + 5.0)


def build(cfg: ServiceConfig) -> Registration:
    settings = web_settings(cfg)
    backend = Backend.from_config(cfg, settings.gateway_addr, settings.personalization_addr, settings.web_token)
    consoles = Consoles(
        settings=settings,
        codec=SessionCodec(settings.session_key),
        backend=backend,
        guard=SignInGuard(auth_limiter(cfg)),
        tokens=TokenFile(cfg.get("RETAILFACE_AUTH_TOKENS_FILE")),
    )
    if not (HERE / "static" / "vendor" / "chart.umd.min.js").is_file():
        log.warning("web_assets_missing", detail="the analytics charts need Chart.js: run `make web-assets`")
    grace = float(cfg.get("RETAILFACE_GRACE_SECONDS"))
    html = HtmlServer(create_app(consoles), cfg, settings.http_port, grace)
    html.start()
    log.info("web_consoles_serving", url=settings.public_url, tls=settings.tls)

    def on_stop() -> None:
        consoles.stopping.set()  # live alert streams end; then uvicorn drains the rest
        html.stop(grace)
        backend.close()

    return Registration(
        servicer=object(),
        add_to_server=lambda _servicer, _server: None,
        service_name=SERVICE_NAME,
        method_roles={},
        on_stop=on_stop,
    )
