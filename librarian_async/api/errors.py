"""Error bodies of the API: every non-2xx answer is ``{reason, suggested_remedy, ...}``.

Handlers raise :class:`ProtocolError`. :class:`ProtocolRoute` turns it, request validation
errors (FastAPI's 422, which the protocol calls 400) and HTTP exceptions into that body at
the route itself, so the protocol routes answer correctly even when mounted in a host app
that installs no handlers of ours. :func:`install_error_handlers` does the same for what
happens outside the routes (an unknown path, a wrong method).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from librarian_async.remote.schemas import ErrorBody

TRY_AGAIN = "Please try again later."
FIX_REQUEST = "Fix the request; see the reason."
MAX_LISTED_PROBLEMS = 5


class ProtocolError(Exception):
    """An answer other than success: HTTP ``status`` with a top-level ``ErrorBody``."""

    def __init__(
        self, status: int, body: ErrorBody, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(body.reason)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    @classmethod
    def of(cls, status: int, reason: str, remedy: str = TRY_AGAIN) -> ProtocolError:
        return cls(status, ErrorBody(reason=reason, suggested_remedy=remedy))

    def response(self) -> JSONResponse:
        content = self.body.model_dump(mode="json")
        return JSONResponse(content, status_code=self.status, headers=self.headers)


def bad_request(reason: str) -> ProtocolError:
    return ProtocolError.of(400, reason, FIX_REQUEST)


def invalid_request_response(error: RequestValidationError) -> JSONResponse:
    """422 from FastAPI becomes 400 with a reason naming the offending fields."""
    problems = [_problem(detail) for detail in error.errors()]
    reason = "invalid request: " + "; ".join(problems[:MAX_LISTED_PROBLEMS])
    if len(problems) > MAX_LISTED_PROBLEMS:
        reason += f"; and {len(problems) - MAX_LISTED_PROBLEMS} more"
    return bad_request(reason).response()


def _problem(detail: Mapping[str, Any]) -> str:
    if detail.get("type") == "json_invalid":
        return "the body is not valid JSON"
    location = [str(part) for part in detail.get("loc", ()) if part != "body"]
    field = ".".join(location) or "body"
    return f"{field}: {detail.get('msg', 'invalid')}"


def http_error_response(error: StarletteHTTPException) -> JSONResponse:
    reason = error.detail if isinstance(error.detail, str) else str(error.detail)
    remedy = "Check the credentials." if error.status_code == 401 else FIX_REQUEST
    body = ErrorBody(reason=reason, suggested_remedy=remedy)
    return ProtocolError(error.status_code, body, error.headers).response()


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class ProtocolRoute(APIRoute):
    """A route whose failures all answer with the protocol's error body."""

    def get_route_handler(self) -> Handler:
        handle = super().get_route_handler()

        async def handle_with_protocol_errors(request: Request) -> Response:
            try:
                return await handle(request)
            except ProtocolError as error:
                return error.response()
            except RequestValidationError as error:
                return invalid_request_response(error)
            except StarletteHTTPException as error:
                return http_error_response(error)

        return handle_with_protocol_errors


def install_error_handlers(app: FastAPI) -> None:
    """The same bodies for errors raised outside the protocol routes."""

    async def on_protocol_error(_: Request, error: Exception) -> Response:
        assert isinstance(error, ProtocolError)
        return error.response()

    async def on_invalid_request(_: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        return invalid_request_response(error)

    async def on_http_error(_: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        return http_error_response(error)

    app.add_exception_handler(ProtocolError, on_protocol_error)
    app.add_exception_handler(RequestValidationError, on_invalid_request)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
