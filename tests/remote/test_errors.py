"""Error bodies in the three shapes peers use, and bodies that are not JSON at all."""

from __future__ import annotations

import json

import pytest

from librarian_async.remote.errors import refusal

INNER = {"reason": "Store full.", "suggested_remedy": "Wait.", "source_transfer_ids": [4]}


@pytest.mark.parametrize(
    "content",
    [
        json.dumps(INNER),
        json.dumps({"detail": json.dumps(INNER)}),
        json.dumps({"detail": INNER}),
    ],
)
def test_the_three_shapes_give_the_same_refusal(content: str) -> None:
    error = refusal(413, content.encode())
    assert (error.status, error.reason, error.body) == (413, "Store full.", INNER)
    assert "HTTP 413" in str(error) and "Store full." in str(error)


def test_a_plain_detail_string_is_the_reason() -> None:
    error = refusal(401, b'{"detail": "Not authenticated"}')
    assert error.reason == "Not authenticated"
    assert error.body == {"reason": "Not authenticated"}


def test_a_validation_detail_list_is_kept_as_text() -> None:
    error = refusal(422, b'{"detail": [{"loc": ["body", "x"], "msg": "Field required"}]}')
    assert "Field required" in error.reason


def test_a_body_that_is_not_json() -> None:
    error = refusal(502, b"<html>Bad gateway</html>", "Bad Gateway")
    assert error.reason == "<html>Bad gateway</html>"
    assert error.body is None
    assert refusal(503, b"", "Service Unavailable").reason == "Service Unavailable"
