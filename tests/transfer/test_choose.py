"""Choosing a transfer method among those a receiver advertises: really checked, in order."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from librarian_async.transfer import ACCEPTED_PROVIDERS, METHODS, choose_method
from librarian_async.transfer.http import HttpMethod

HTTP = {"url": "http://receiver.example:8080/api/v2/upload"}
RSYNC = {"hostname": "receiver.example"}
LOCAL_HERE = {"hostnames": ["elsewhere.invalid", socket.gethostname()]}
LOCAL_ELSEWHERE = {"hostnames": ["elsewhere.invalid"]}


def chosen(providers: dict[str, Any]) -> tuple[str, Any] | None:
    choice = choose_method(providers)
    return None if choice is None else (choice[0].name, choice[1])


def test_we_know_and_accept_three_methods_in_our_order() -> None:
    assert ACCEPTED_PROVIDERS == ("http", "local", "rsync")
    assert set(METHODS) == set(ACCEPTED_PROVIDERS)
    assert all(METHODS[name].name == name for name in METHODS)


@pytest.mark.parametrize(
    ("providers", "expected"),
    [
        ({"http": HTTP, "local": LOCAL_HERE, "rsync": RSYNC}, ("http", HTTP)),
        ({"rsync": RSYNC, "http": HTTP}, ("rsync", RSYNC)),
        ({"local": LOCAL_HERE, "rsync": RSYNC}, ("local", LOCAL_HERE)),
    ],
)
def test_the_first_valid_method_in_the_advertised_order(
    providers: dict[str, Any], expected: tuple[str, Any]
) -> None:
    assert chosen(providers) == expected


def test_unknown_methods_are_skipped_not_assumed_valid() -> None:
    providers = {"globus": {"endpoint": "x"}, "ftp": {"url": "ftp://x"}, "rsync": RSYNC}
    assert chosen(providers) == ("rsync", RSYNC)
    assert chosen({"globus": {"endpoint": "x"}}) is None


def test_invalid_methods_fall_back_to_the_next() -> None:
    providers = {
        "local": LOCAL_ELSEWHERE,
        "http": {"url": "ftp://receiver.example/upload"},
        "rsync": {"hostname": ""},
        "globus": {},
        "later": {},
    }
    assert chosen(providers) is None
    assert chosen({**providers, "http": HTTP}) == ("http", HTTP)
    assert chosen({"local": LOCAL_ELSEWHERE, "rsync": RSYNC}) == ("rsync", RSYNC)


def test_fields_that_are_not_an_object_are_skipped() -> None:
    assert chosen({"http": "http://receiver.example/upload", "rsync": RSYNC}) == ("rsync", RSYNC)


def test_without_the_rsync_binary_rsync_is_not_chosen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert chosen({"rsync": RSYNC}) is None
    assert chosen({"rsync": RSYNC, "http": HTTP}) == ("http", HTTP)


def test_nothing_advertised_chooses_nothing() -> None:
    assert chosen({}) is None


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("http://receiver.example/api/v2/upload", True),
        ("https://receiver.example:8443/api/v2/upload", True),
        ("HTTP://receiver.example/upload", True),
        ("ftp://receiver.example/upload", False),
        ("http:///upload", False),
        ("/api/v2/upload", False),
        ("", False),
        (None, False),
        (42, False),
    ],
)
def test_http_needs_an_http_url(url: object, valid: bool) -> None:
    assert HttpMethod().valid({"url": url}) is valid
