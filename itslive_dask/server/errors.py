"""HTTP errors of the search server: every bad request is a 4xx with a JSON message."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from itslive_dask.errors import InvalidInputError

__all__ = ["BadRequest", "NotFound", "install_error_handlers"]


class BadRequest(InvalidInputError):
    """A request the server refuses (HTTP 400)."""


class NotFound(Exception):
    """A resource that does not exist (HTTP 404)."""


def _body(code: str, message: str) -> dict:
    # "code"/"description" as stac-fastapi answers, "detail" as FastAPI clients expect
    return {"code": code, "description": message, "detail": message}


def install_error_handlers(app: FastAPI) -> None:
    """Map the package's input errors to 400 and request-validation errors to 400."""

    @app.exception_handler(InvalidInputError)
    async def _invalid(request: Request, exc: InvalidInputError) -> JSONResponse:
        content = _body("BadRequest", str(exc))
        field = getattr(exc, "field", None)
        if field:  # a form field the page shows the message next to
            content["field"] = field
        return JSONResponse(status_code=getattr(exc, "status", 400), content=content)

    @app.exception_handler(NotFound)
    async def _missing(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content=_body("NotFound", str(exc)))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "body"))
            parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
        return JSONResponse(
            status_code=400, content=_body("BadRequest", "; ".join(parts) or "bad request")
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "NotFound" if exc.status_code == 404 else "HTTPError"
        return JSONResponse(status_code=exc.status_code, content=_body(code, str(exc.detail)))
