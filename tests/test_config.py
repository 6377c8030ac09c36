"""Settings from the environment and the task configuration (the seed's JSON)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import pytest

from librarian_async.config import (
    TASK_TYPES,
    CreateLocalCloneConfig,
    ReceiveCloneConfig,
    RollingDeletionConfig,
    SendCloneConfig,
    TaskConfig,
    check_references,
    load_settings,
    load_task_config,
    parse_task_config,
    strip_trailing_commas,
)
from librarian_async.enums import AuthLevel, DeletionPolicy, TransferStatus, parse_enum
from librarian_async.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))

CLONER = {
    "task_name": "Local cloner",
    "every": "01:00:00",
    "age_in_days": 7,
    "clone_from": "store",
    "clone_to": ["clone"],
}


def problems_of(document: object | str) -> list[str]:
    """The problem lines of an invalid configuration (a dict is dumped as JSON first)."""
    text = document if isinstance(document, str) else json.dumps(document)
    with pytest.raises(ConfigError) as raised:
        parse_task_config(text, "tasks.json")
    return raised.value.problems


def parse(document: Mapping[str, object]) -> TaskConfig:
    return parse_task_config(json.dumps(document), "tasks.json")


# --- the examples ---------------------------------------------------------------------------


def test_the_examples_directory_holds_the_seed_examples() -> None:
    names = {path.name for path in EXAMPLE_FILES}
    assert {
        "sneakernet-minimal.json",
        "sneakernet-source.json",
        "inter-librarian-source.json",
        "inter-librarian-destination.json",
        "all-tasks.json",
    } <= names


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda path: path.name)
def test_every_example_loads(path: Path) -> None:
    config = load_task_config(path)
    assert config.entries
    assert all(entry.task_type in TASK_TYPES for entry in config.entries)
    assert config.source == str(path)


def test_first_seed_example_as_written() -> None:
    text = (EXAMPLES / "sneakernet-minimal.json").read_text()
    assert '"files_per_run": 256,\n' in text and '"recieve_clone"' in text  # kept verbatim
    cloner, receiver = load_task_config(EXAMPLES / "sneakernet-minimal.json").entries
    assert isinstance(cloner, CreateLocalCloneConfig)
    assert cloner.files_per_run == 256
    assert cloner.clone_to == ["clone"]
    assert cloner.clone_from == "store"
    assert cloner.every == timedelta(hours=1)
    assert cloner.soft_timeout == timedelta(minutes=30)
    assert cloner.disable_store_on_full is False
    assert isinstance(receiver, ReceiveCloneConfig)
    assert receiver.task_type == "receive_clone"
    assert receiver.files_per_run == 256
    assert receiver.deletion_policy is DeletionPolicy.DISALLOWED


def test_sneakernet_source_example() -> None:
    (cloner,) = load_task_config(EXAMPLES / "sneakernet-source.json").entries
    assert isinstance(cloner, CreateLocalCloneConfig)
    assert cloner.disable_store_on_full is True
    assert cloner.age_in_days == 7


def test_inter_librarian_source_example() -> None:
    config = load_task_config(EXAMPLES / "inter-librarian-source.json")
    assert [entry.task_type for entry in config.entries] == [
        "send_clone",
        "consume_queue",
        "check_consumed_queue",
    ]
    sender = config.entries[0]
    assert isinstance(sender, SendCloneConfig)
    assert sender.destination_librarian == "destination"
    assert sender.store_preference == "store"
    assert sender.send_batch_size == 128
    assert sender.warn_disabled_interval == timedelta(days=1)


def test_inter_librarian_destination_example() -> None:
    (receiver,) = load_task_config(EXAMPLES / "inter-librarian-destination.json").entries
    assert isinstance(receiver, ReceiveCloneConfig)
    assert receiver.files_per_run == 1024
    assert receiver.deletion_policy is DeletionPolicy.DISALLOWED


def test_all_tasks_example_shows_every_type_with_every_key() -> None:
    path = EXAMPLES / "all-tasks.json"
    raw = json.loads(path.read_text())
    assert set(raw) == set(TASK_TYPES)
    for task_type, entries in raw.items():
        for entry in entries:
            assert set(entry) == set(TASK_TYPES[task_type].model_fields), task_type
    config = load_task_config(path)
    assert len(config.entries) == len(TASK_TYPES)
    deletion = config.of_type("rolling_deletion")[0]
    assert isinstance(deletion, RollingDeletionConfig)
    assert deletion.age_in_days == 30.5
    assert deletion.every == timedelta(days=2)


# --- accepted input -------------------------------------------------------------------------


def test_empty_document_has_no_entries() -> None:
    assert parse_task_config("{}", "empty.json").entries == []


def test_defaults_and_normalisation() -> None:
    config = parse({"create_local_clone": [{**CLONER, "clone_to": "clone"}]})
    (cloner,) = config.entries
    assert isinstance(cloner, CreateLocalCloneConfig)
    assert cloner.clone_to == ["clone"]
    assert cloner.files_per_run == 1024
    assert cloner.soft_timeout is None
    assert cloner.concurrency == 2 * (os.cpu_count() or 1)  # I/O-bound: fsync waits


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("DISALLOWED", DeletionPolicy.DISALLOWED),
        ("allowed", DeletionPolicy.ALLOWED),
        ("Allowed", DeletionPolicy.ALLOWED),
        (0, DeletionPolicy.DISALLOWED),
        (1, DeletionPolicy.ALLOWED),
    ],
)
def test_deletion_policy_by_name_or_number(policy: object, expected: DeletionPolicy) -> None:
    entry = {"task_name": "R", "every": "1h", "deletion_policy": policy}
    (receiver,) = parse({"receive_clone": [entry]}).entries
    assert isinstance(receiver, ReceiveCloneConfig)
    assert receiver.deletion_policy is expected


def test_soft_timeout_null_means_no_limit() -> None:
    document = {"consume_queue": [{"task_name": "Q", "every": 60, "soft_timeout": None}]}
    (entry,) = parse(document).entries
    assert entry.soft_timeout is None
    assert entry.every == timedelta(minutes=1)


def test_entries_keep_file_order() -> None:
    text = '{"consume_queue": [{"task_name": "b", "every": "1h"}, {"task_name": "a", "every": 5}],'
    text += ' "corruption_fixer": [{"task_name": "c", "every": "2d",},],}'
    config = parse_task_config(text, "order.json")
    assert [entry.task_name for entry in config.entries] == ["b", "a", "c"]
    labels = [label for label, _ in config.labelled()]
    assert labels[1] == 'order.json: consume_queue: entry 1 ("a")'


def test_trailing_commas_are_blanked_outside_strings_only() -> None:
    text = '{"a": ["x,]", "y,}",\n  ],\n}'
    stripped = strip_trailing_commas(text)
    assert stripped == '{"a": ["x,]", "y,}" \n  ] \n}'
    assert json.loads(stripped) == {"a": ["x,]", "y,}"]}
    assert strip_trailing_commas('["a\\",]", 1,]') == '["a\\",]", 1 ]'


# --- problems -------------------------------------------------------------------------------


def test_misspelt_key_suggests_the_right_one() -> None:
    entry = {**CLONER, "files_per_rnu": 256}
    (line,) = problems_of({"create_local_clone": [entry]})
    assert line.startswith('tasks.json: create_local_clone: entry 0 ("Local cloner"): ')
    assert 'files_per_rnu: unknown key; did you mean "files_per_run"?' in line


def test_negative_duration() -> None:
    (line,) = problems_of({"create_local_clone": [{**CLONER, "every": "-01:00:00"}]})
    assert 'entry 0 ("Local cloner"): every: must be greater than zero' in line


def test_zero_duration() -> None:
    (line,) = problems_of({"consume_queue": [{"task_name": "Q", "every": 0}]})
    assert 'consume_queue: entry 0 ("Q"): every: must be greater than zero' in line


def test_unreadable_duration() -> None:
    (line,) = problems_of({"consume_queue": [{"task_name": "Q", "every": "1 hour"}]})
    assert 'entry 0 ("Q"): every: invalid duration' in line


def test_string_where_a_number_belongs() -> None:
    (line,) = problems_of({"create_local_clone": [{**CLONER, "files_per_run": "256"}]})
    assert 'entry 0 ("Local cloner"): files_per_run: Input should be a valid integer' in line
    assert '(got "256")' in line


def test_bool_is_not_an_int() -> None:
    (line,) = problems_of({"create_local_clone": [{**CLONER, "age_in_days": True}]})
    assert 'entry 0 ("Local cloner"): age_in_days: Input should be a valid integer' in line


def test_negative_age_and_zero_count() -> None:
    lines = problems_of({"create_local_clone": [{**CLONER, "age_in_days": -1, "files_per_run": 0}]})
    assert len(lines) == 2
    assert "age_in_days: Input should be greater than or equal to 0" in lines[0]
    assert "files_per_run: Input should be greater than or equal to 1" in lines[1]


def test_missing_required_keys_without_a_name() -> None:
    lines = problems_of({"check_integrity": [{"every": "1h"}]})
    assert lines == [
        "tasks.json: check_integrity: entry 0: task_name: required key is missing",
        "tasks.json: check_integrity: entry 0: store_name: required key is missing",
        "tasks.json: check_integrity: entry 0: age_in_days: required key is missing",
    ]


def test_unknown_task_type() -> None:
    (line,) = problems_of({"send_clones": []})
    assert line == 'tasks.json: send_clones: unknown task type; did you mean "send_clone"?'


def test_both_receive_spellings_are_an_error() -> None:
    entry = {"task_name": "R", "every": "1h"}
    lines = problems_of({"receive_clone": [entry], "recieve_clone": [{**entry, "task_name": "S"}]})
    assert lines == ["tasks.json: receive_clone and recieve_clone are both given; use one"]


def test_duplicate_task_name_across_types() -> None:
    lines = problems_of(
        {
            "consume_queue": [{"task_name": "Worker", "every": "1h"}],
            "check_consumed_queue": [{"task_name": "Worker", "every": "1h"}],
        }
    )
    assert lines == [
        'tasks.json: check_consumed_queue: entry 0 ("Worker"): task_name: already used by '
        'tasks.json: consume_queue: entry 0 ("Worker"); task names must be unique'
    ]


def test_repeated_key_is_an_error() -> None:
    text = '{"consume_queue": [{"task_name": "Q", "every": "1h", "every": "2h"}]}'
    (line,) = problems_of(text)
    assert line == 'tasks.json: consume_queue: entry 0 ("Q"): every: given more than once'


def test_malformed_json_names_line_and_column() -> None:
    (line,) = problems_of('{\n  "consume_queue": [\n    {"task_name": "Q" "every": "1h"}\n  ]\n}')
    assert line.startswith("tasks.json: line 3, column 23: invalid JSON")


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([], "tasks.json: must be a JSON object"),
        ({"consume_queue": {"task_name": "Q"}}, "consume_queue: must be a list of task entries"),
        ({"consume_queue": ["Q"]}, "consume_queue: entry 0: must be a JSON object"),
    ],
)
def test_wrong_shapes(document: object, expected: str) -> None:
    (line,) = problems_of(document)
    assert expected in line


def test_three_problems_give_three_lines_at_once() -> None:
    document = {
        "create_local_clone": [{**CLONER, "files_per_run": "256", "every": "-1h"}],
        "consume_queues": [],
    }
    lines = problems_of(document)
    assert len(lines) == 3
    assert sum('entry 0 ("Local cloner")' in line for line in lines) == 2
    assert all(line.startswith("tasks.json: ") for line in lines)


def test_a_float_where_an_integer_age_belongs() -> None:
    (line,) = problems_of({"create_local_clone": [{**CLONER, "age_in_days": 7.5}]})
    assert "age_in_days: Input should be a valid integer" in line


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read task configuration"):
        load_task_config(tmp_path / "absent.json")


# --- references to the database's names -----------------------------------------------------


def test_check_references() -> None:
    config = parse(
        {
            "create_local_clone": [{**CLONER, "clone_from": "stor", "clone_to": ["clone", "x"]}],
            "send_clone": [
                {
                    "task_name": "Sender",
                    "every": "1h",
                    "age_in_days": 1,
                    "destination_librarian": "far",
                    "store_preference": "store",
                }
            ],
        }
    )
    problems = check_references(config, {"store", "clone"}, {"faraway"})
    assert problems == [
        'tasks.json: create_local_clone: entry 0 ("Local cloner"): clone_from: unknown store '
        '"stor"; did you mean "store"?',
        'tasks.json: create_local_clone: entry 0 ("Local cloner"): clone_to: unknown store "x"; '
        "expected one of: clone, store",
        'tasks.json: send_clone: entry 0 ("Sender"): destination_librarian: unknown librarian '
        '"far"; did you mean "faraway"?',
    ]
    assert check_references(config, {"store", "stor", "clone", "x"}, {"far"}) == []


def test_check_references_with_nothing_defined() -> None:
    config = load_task_config(EXAMPLES / "inter-librarian-source.json")
    problems = check_references(config, set(), set())
    assert len(problems) == 2
    assert problems[0].endswith('store_preference: unknown store "store"; no stores exist')


# --- enums ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["DISALLOWED", "disallowed", "Disallowed", " disallowed "])
def test_enum_by_name_in_any_case(name: str) -> None:
    assert parse_enum(DeletionPolicy, name) is DeletionPolicy.DISALLOWED


@pytest.mark.parametrize(
    ("enum_type", "value", "expected"),
    [
        (DeletionPolicy, 0, DeletionPolicy.DISALLOWED),
        (DeletionPolicy, 1, DeletionPolicy.ALLOWED),
        (DeletionPolicy, "1", DeletionPolicy.ALLOWED),
        (TransferStatus, "staged", TransferStatus.STAGED),
        (AuthLevel, 100, AuthLevel.ADMIN),
        (AuthLevel, "readappend", AuthLevel.READAPPEND),
    ],
)
def test_enum_by_value(enum_type: type, value: object, expected: object) -> None:
    assert parse_enum(enum_type, value) is expected


@pytest.mark.parametrize("value", [2, True, "sometimes", None, 0.0])
def test_enum_rejects_other_values(value: object) -> None:
    with pytest.raises(ValueError, match=r"expected DISALLOWED \(0\), ALLOWED \(1\)"):
        parse_enum(DeletionPolicy, value)


# --- settings -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No LIBRARIAN_* variable of the calling shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("LIBRARIAN_"):
            monkeypatch.delenv(name)


def test_settings_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBRARIAN_HOME", str(tmp_path))
    settings = load_settings()
    assert settings.name == "librarian"
    assert settings.port == 21108
    assert settings.host == "127.0.0.1"
    assert settings.background_config is None
    assert settings.max_queue_retries == 8
    assert settings.shutdown_grace == 30.0
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path}/librarian.sqlite3"
    assert settings.load_encryption_key() is None


def test_settings_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tasks = tmp_path / "tasks.json"
    tasks.write_text("{}")
    monkeypatch.setenv("LIBRARIAN_NAME", "site-a")
    monkeypatch.setenv("LIBRARIAN_PORT", "8080")
    monkeypatch.setenv("LIBRARIAN_BACKGROUND_CONFIG", str(tasks))
    monkeypatch.setenv("LIBRARIAN_DATABASE_URL", "postgresql://user@db/librarian")
    monkeypatch.setenv("LIBRARIAN_LOG_LEVEL", "debug")
    monkeypatch.setenv("LIBRARIAN_HTTP_READ_TIMEOUT", "2.5")
    settings = load_settings()
    assert (settings.name, settings.port, settings.background_config) == ("site-a", 8080, tasks)
    assert settings.resolved_database_url == "postgresql+asyncpg://user@db/librarian"
    assert settings.log_level == "DEBUG"
    assert settings.http_read_timeout == 2.5


def test_sqlite_url_gets_the_async_driver() -> None:
    settings = load_settings(database_url="sqlite:///x.sqlite3")
    assert settings.resolved_database_url == "sqlite+aiosqlite:///x.sqlite3"


def test_settings_errors_name_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBRARIAN_PORT", "eighty")
    monkeypatch.setenv("LIBRARIAN_DATABASE_URL", "mysql://db/librarian")
    monkeypatch.setenv("LIBRARIAN_BACKGROUND_CONFIG", "/no/such/tasks.json")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert sorted(raised.value.problems) == [
        "LIBRARIAN_BACKGROUND_CONFIG: no such file: /no/such/tasks.json",
        "LIBRARIAN_DATABASE_URL: must start with sqlite+aiosqlite:// or postgresql+asyncpg://",
        "LIBRARIAN_PORT: Input should be a valid integer, unable to parse string as an integer",
    ]


def test_encryption_key_from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"secret-key\n")
    monkeypatch.setenv("LIBRARIAN_ENCRYPTION_KEY_FILE", str(key_file))
    assert load_settings().load_encryption_key() == b"secret-key"


def test_encryption_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBRARIAN_ENCRYPTION_KEY", "inline")
    settings = load_settings()
    assert settings.load_encryption_key() == b"inline"
    assert "inline" not in repr(settings)


def test_unreadable_key_file_names_the_setting(tmp_path: Path) -> None:
    settings = load_settings(encryption_key_file=tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"^LIBRARIAN_ENCRYPTION_KEY_FILE: cannot read"):
        settings.load_encryption_key()


def test_both_key_settings_are_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBRARIAN_ENCRYPTION_KEY", "inline")
    monkeypatch.setenv("LIBRARIAN_ENCRYPTION_KEY_FILE", str(tmp_path / "key"))
    with pytest.raises(ConfigError, match="both set"):
        load_settings()
