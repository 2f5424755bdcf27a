"""Who may talk to the service: the ``Host`` header (no DNS rebinding of a service on this machine) and the
origin of browser pages that POST."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from .config import ServeConfig

#: Addresses that only this machine can reach.
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def host_name(host: str) -> str:
    """``host[:port]`` without the port, lower-case (IPv6 brackets kept)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def refused(headers: Any, method: str, cfg: ServeConfig) -> str | None:
    """Why a request (its headers and method; ``"WEBSOCKET"`` for a socket) from an unexpected host or a
    foreign page is refused, or ``None`` when it may proceed. A socket's origin is always checked: browsers let any
    page open one."""
    host = headers.get("host", "")
    if cfg.allowed_hosts is not None and host_name(host) not in {host_name(h) for h in cfg.allowed_hosts}:
        return f"unexpected Host header {host[:100]!r}; this service answers to {', '.join(cfg.allowed_hosts)}"
    origin = headers.get("origin")
    if method not in ("GET", "HEAD", "OPTIONS") and origin and origin != "null":
        own = {f"http://{host}", f"https://{host}"}
        if origin not in own and origin not in cfg.allowed_origins:
            return f"cross-origin request from {origin[:100]} refused; allow it with --allow-origin"
    return None


def refusal(request: Request, cfg: ServeConfig) -> JSONResponse | None:
    """The 403 answer to a request from an unexpected host or a foreign page, or ``None`` when it may proceed."""
    why = refused(request.headers, request.method, cfg)
    return None if why is None else JSONResponse({"detail": why}, status_code=403)


def same_origin(cfg: ServeConfig) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """HTTP middleware that answers :func:`refusal` 's 403s and passes every other request on."""

    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        return refusal(request, cfg) or await call_next(request)

    return middleware
