"""The API documentation at ``/docs``: Swagger UI served by this service itself, from the ``swagger-ui-bundle``
package (part of the ``serve`` extra), so the page works offline and loads nothing from elsewhere.

The page is FastAPI's (:func:`fastapi.openapi.docs.get_swagger_ui_html`) with local URLs for Swagger UI's script,
style sheet and icon. It starts Swagger UI with one inline script; its Content-Security-Policy allows exactly that
script (by its SHA-256 hash) and otherwise only this service's own files. The bundled Swagger UI (4.x) reads
OpenAPI 3.0 only, so the page reads the service's OpenAPI 3.1 schema as 3.0 (:func:`openapi_30`, at
``/docs/openapi-3.0.json``); ``/openapi.json`` itself stays 3.1. Without ``swagger-ui-bundle`` the page says what
to install instead of staying blank.
"""
from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

#: Where the page and Swagger UI's files are served.
DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
SCHEMA_30_URL = "/docs/openapi-3.0.json"
#: The files of Swagger UI the page loads (nothing else of the package's folder is served).
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon-32x32.png": "image/png"}
DOCS_CSP = (
    "default-src 'none'; script-src 'self' {scripts}; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
NO_SCRIPT_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def swagger_ui_dir() -> Path | None:
    """The folder of Swagger UI's files in the installed ``swagger-ui-bundle`` package, or ``None`` without it."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    folder = Path(str(swagger_ui_path))
    return folder if all((folder / name).is_file() for name in ASSETS) else None


def script_hashes(html: str) -> str:
    """CSP sources allowing the inline scripts of ``html``, each by its SHA-256 hash."""
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                    for s in INLINE_SCRIPT.findall(html))


def schema_30(node: Any) -> Any:
    """A JSON Schema of OpenAPI 3.1 (JSON Schema 2020-12) as OpenAPI 3.0 writes it: ``null`` among ``anyOf``/``oneOf``
    or in a ``type`` list becomes ``nullable``, ``const`` a one-value ``enum``, ``examples`` one ``example``."""
    if isinstance(node, list):
        return [schema_30(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: ({name: schema_30(s) for name, s in v.items()} if k in ("properties", "patternProperties", "$defs")
               and isinstance(v, dict) else schema_30(v)) for k, v in node.items()}
    null = {"type": "null"}
    for key in ("anyOf", "oneOf"):
        options = out.get(key)
        if isinstance(options, list) and null in options:
            rest = [o for o in options if o != null]
            del out[key]
            out["nullable"] = True
            if len(rest) == 1 and "$ref" not in rest[0]:
                out = rest[0] | out
            elif len(rest) == 1:
                out["allOf"] = rest  # a $ref takes no siblings in 3.0
            elif rest:
                out[key] = rest
    if isinstance(out.get("type"), list):
        types = [t for t in out.pop("type") if t != "null"]
        if len(types) < len(node["type"]):
            out["nullable"] = True
        if len(types) == 1:
            out["type"] = types[0]
        elif types:
            out["anyOf"] = [{"type": t} for t in types]
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if isinstance(out.get("examples"), list) and out["examples"]:
        out["example"] = out.pop("examples")[0]
    return out


def openapi_30(spec: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI 3.1 document as OpenAPI 3.0.3, for the bundled Swagger UI: each of its schemas through
    :func:`schema_30`."""

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for key, value in node.items():
            if key == "schema":  # of a parameter, a request body or a response
                out[key] = schema_30(value)
            elif key == "schemas" and isinstance(value, dict):  # the components' named schemas
                out[key] = {name: schema_30(s) for name, s in value.items()}
            else:
                out[key] = walk(value)
        return out

    return walk(spec) | {"openapi": "3.0.3"}


def missing_page(openapi_url: str) -> str:
    """The ``/docs`` page of a service without ``swagger-ui-bundle``: what to install, and where the schema is."""
    schema = f' The OpenAPI schema is at <a href="{openapi_url}">{openapi_url}</a>.'
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>emovox API documentation</title>"
            "</head><body>"
            "<h1>API documentation unavailable</h1>"
            "<p>The interactive documentation needs the <code>swagger-ui-bundle</code> package, which is not installed "
            "here. Install it with <code>pip install 'emovox[serve]'</code> and restart the service." + schema + "</p>"
            "</body></html>\n")


def add_docs(app: FastAPI, openapi_url: str) -> None:
    """``GET /docs``: Swagger UI showing the schema at ``openapi_url`` (as OpenAPI 3.0), its files under ``/docs/assets``."""
    folder = swagger_ui_dir()
    if folder is None:
        page = missing_page(openapi_url)

        @app.get(DOCS_URL, include_in_schema=False)
        async def docs_unavailable() -> HTMLResponse:
            return HTMLResponse(page, headers={"Content-Security-Policy": NO_SCRIPT_CSP, "Cache-Control": "no-cache"})

        return

    html = get_swagger_ui_html(
        openapi_url=SCHEMA_30_URL,
        title=f"{app.title} - API documentation",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
    ).body.decode()
    headers = {"Content-Security-Policy": DOCS_CSP.format(scripts=script_hashes(html)), "Cache-Control": "no-cache"}

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(html, headers=headers)

    @app.get(SCHEMA_30_URL, include_in_schema=False)
    async def docs_schema() -> JSONResponse:
        return JSONResponse(openapi_30(app.openapi()))

    @app.get(ASSETS_URL + "/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        if name not in ASSETS:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return FileResponse(folder / name, media_type=ASSETS[name],
                            headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"})
