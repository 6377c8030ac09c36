"""The wire models: integer enums, decimal-string id keys, ISO datetimes, tolerant reading,
exact writing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TypeVar

import pytest
from pydantic import BaseModel, ValidationError

from librarian_async.enums import DeletionPolicy, TransferStatus
from librarian_async.remote import schemas as wire

Model = TypeVar("Model", bound=BaseModel)


def round_trip(model: Model) -> Model:
    text = model.model_dump_json()
    return type(model).model_validate_json(text)


def test_checkin_status_has_string_keys_and_integer_statuses() -> None:
    reply = wire.CheckinStatusResponse(
        source_transfer_status={12: TransferStatus.COMPLETED, 13: None},
        destination_transfer_status={},
    )
    assert json.loads(reply.model_dump_json()) == {
        "source_transfer_status": {"12": 3, "13": None},
        "destination_transfer_status": {},
    }
    back = wire.CheckinStatusResponse.model_validate_json(
        '{"source_transfer_status": {"12": 3, "13": null}, "destination_transfer_status": {}}'
    )
    assert back.source_transfer_status == {12: TransferStatus.COMPLETED, 13: None}
    assert isinstance(back.source_transfer_status[12], TransferStatus)
    assert round_trip(reply) == reply


@pytest.mark.parametrize("status", list(TransferStatus))
def test_every_status_travels_as_its_integer(status: TransferStatus) -> None:
    request = wire.CheckinUpdateRequest(
        source_transfer_ids=[1], destination_transfer_ids=[], new_status=status
    )
    assert json.loads(request.model_dump_json())["new_status"] == int(status)
    assert round_trip(request) == request


def test_verified_stats_travel_only_when_there_are_some() -> None:
    """Deployed librarians see the STAGED update they know; ours also get the stats."""
    plain = wire.CheckinUpdateRequest(
        destination_transfer_ids=[7], new_status=TransferStatus.STAGED
    )
    assert plain.model_dump(mode="json", exclude_none=True) == {
        "source_transfer_ids": [],
        "destination_transfer_ids": [7],
        "new_status": int(TransferStatus.STAGED),
    }
    stats = {7: "2049:12:1048576:1:2"}
    request = plain.model_copy(update={"verified_stats": stats})
    sent = request.model_dump(mode="json", exclude_none=True)
    assert sent["verified_stats"] == {"7": stats[7]}
    assert wire.CheckinUpdateRequest.model_validate(sent).verified_stats == stats


def test_an_unknown_status_number_is_refused() -> None:
    with pytest.raises(ValidationError):
        wire.CheckinUpdateRequest.model_validate({"new_status": 6})


def test_search_reply_round_trip_with_datetimes_and_deletion_policy() -> None:
    when = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    reply = wire.SearchFileResponse(
        [
            wire.FileInfo(
                name="obs/a.uvh5",
                create_time=when,
                size=10,
                checksum="md5:::00",
                uploader="u",
                source="s",
                instances=[
                    wire.InstanceInfo(
                        path="/s/a",
                        store_id=1,
                        deletion_policy=DeletionPolicy.ALLOWED,
                        created_time=when,
                        available=True,
                    )
                ],
                remote_instances=[wire.RemoteInstanceInfo(librarian_name="b", copy_time=when)],
            )
        ]
    )
    data = json.loads(reply.model_dump_json())
    assert data[0]["create_time"] == "2024-05-01T12:30:00Z"
    assert data[0]["instances"][0]["deletion_policy"] == 1
    assert round_trip(reply) == reply


def test_naive_datetimes_from_peers_are_utc() -> None:
    info = wire.RemoteInstanceInfo.model_validate(
        {"librarian_name": "b", "copy_time": "2024-05-01T12:30:00"}
    )
    assert info.copy_time == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    offset = wire.RemoteInstanceInfo.model_validate(
        {"librarian_name": "b", "copy_time": "2024-05-01T14:30:00+02:00"}
    )
    assert offset.copy_time == info.copy_time and offset.copy_time.tzinfo == UTC


def test_unknown_fields_from_peers_are_ignored_and_never_written() -> None:
    reply = wire.PingResponse.model_validate(
        {"name": "a", "description": "d", "version": "deployed-2.1"}
    )
    assert reply.model_dump() == {"name": "a", "description": "d"}


def test_accepts_providers_is_optional_and_providers_keep_their_order() -> None:
    item = {
        "upload_size": 1,
        "upload_checksum": "md5:::00",
        "upload_name": "a",
        "destination_location": "a",
        "uploader": "u",
        "source_transfer_id": 1,
    }
    deployed = wire.BatchStageRequest.model_validate(
        {"uploads": [item], "source": "a", "total_size": 1}
    )
    assert deployed.accepts_providers is None
    ours = wire.BatchStageRequest.model_validate(
        {"uploads": [item], "source": "a", "total_size": 1, "accepts_providers": ["http"]}
    )
    assert ours.accepts_providers == ["http"]
    reply = wire.BatchStageResponse(
        available_bytes_on_store=1,
        store_name="s",
        uploads=[],
        async_transfer_providers={"rsync": {"hostname": "h"}, "local": {"hostnames": ["h"]}},
    )
    text = reply.model_dump_json()
    assert text.index('"rsync"') < text.index('"local"')
    assert list(round_trip(reply).async_transfer_providers) == ["rsync", "local"]


def test_refusal_bodies_are_top_level() -> None:
    body = wire.BatchStageRefusal(
        reason="r", suggested_remedy="s", source_transfer_ids=[1], destination_transfer_ids=[2]
    )
    assert body.model_dump() == {
        "reason": "r",
        "suggested_remedy": "s",
        "source_transfer_ids": [1],
        "destination_transfer_ids": [2],
    }
    assert wire.StageRefusal(reason="r", source_transfer_id=3).destination_transfer_id == -1
