"""Read the task configuration document (the JSON described in ``background-tasks.rst``).

Each key is a task type, each value a list of entries. :func:`parse_task_config` reports every
problem at once as a :class:`ConfigError`; each line names the file, the task type, the entry
(``entry 0 ("Local cloner")``), the key and what is wrong. Trailing commas are tolerated and
the seed's spelling ``recieve_clone`` is read as ``receive_clone``. Store and librarian names
live in the database, so :func:`check_references` checks them separately.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from librarian_async.config.tasks import TASK_TYPE_ALIASES, TASK_TYPES, TaskEntry
from librarian_async.errors import ConfigError

__all__ = [
    "TaskConfig",
    "check_references",
    "load_task_config",
    "parse_task_config",
    "strip_trailing_commas",
]


@dataclass(frozen=True)
class TaskConfig:
    """All task entries of one configuration file, in file order."""

    entries: list[TaskEntry] = field(default_factory=list)
    source: str = "<task config>"

    def of_type(self, task_type: str) -> list[TaskEntry]:
        """The entries of one task type."""
        return [entry for entry in self.entries if entry.task_type == task_type]

    def labelled(self) -> Iterator[tuple[str, TaskEntry]]:
        """Each entry with its label for messages: ``file: type: entry 0 ("name")``."""
        seen: Counter[str] = Counter()
        for entry in self.entries:
            where = f"{self.source}: {entry.task_type}"
            yield _label(where, seen[entry.task_type], entry.task_name), entry
            seen[entry.task_type] += 1


def load_task_config(path: Path) -> TaskConfig:
    """Read and validate a task configuration file; raise ConfigError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read task configuration: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error.reason})") from error
    return parse_task_config(text, str(path))


def parse_task_config(text: str, source: str) -> TaskConfig:
    """Validate a task configuration document; ``source`` names it in problem lines."""
    problems: list[str] = []
    labelled = _parse_document(_load_json(text, source), source, problems)
    problems += _duplicate_names(labelled)
    if problems:
        raise ConfigError(problems)
    return TaskConfig([entry for _, entry in labelled], source)


class _JsonObject(dict[str, Any]):
    """A JSON object that remembers the keys given more than once."""

    duplicates: list[str]


def _json_object(pairs: list[tuple[str, Any]]) -> _JsonObject:
    result = _JsonObject()
    result.duplicates = []
    for key, value in pairs:
        if key in result:
            result.duplicates.append(key)
        result[key] = value
    return result


def _load_json(text: str, source: str) -> Any:
    try:
        return json.loads(strip_trailing_commas(text), object_pairs_hook=_json_object)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{source}: line {error.lineno}, column {error.colno}: invalid JSON: {error.msg}"
        ) from error


def strip_trailing_commas(text: str) -> str:
    """Blank out commas directly before ``}`` or ``]`` (outside strings); positions are kept."""
    chars = list(text)
    in_string = escaped = False
    comma: int | None = None  # index of the last comma, while only whitespace follows it
    for index, char in enumerate(text):
        if in_string:
            in_string = escaped or char != '"'
            escaped = not escaped and char == "\\"
        elif char == ",":
            comma = index
        elif not char.isspace():
            if char in "}]" and comma is not None:
                chars[comma] = " "
            comma = None
            in_string = char == '"'
    return "".join(chars)


def _parse_document(document: Any, source: str, problems: list[str]) -> list[tuple[str, TaskEntry]]:
    if not isinstance(document, dict):
        problems.append(f"{source}: must be a JSON object mapping task types to lists of entries")
        return []
    problems += [f"{source}: {key}: task type given more than once" for key in _dups(document)]
    if all(spelling in document for spelling in ("receive_clone", "recieve_clone")):
        problems.append(f"{source}: receive_clone and recieve_clone are both given; use one")
    labelled: list[tuple[str, TaskEntry]] = []
    for key, raw_entries in document.items():
        model = _model_for(key)
        if model is None:
            problems.append(f"{source}: {key}: unknown task type{_suggest(key, TASK_TYPES)}")
        elif not isinstance(raw_entries, list):
            problems.append(f"{source}: {key}: must be a list of task entries")
        else:
            labelled += _parse_entries(model, raw_entries, f"{source}: {key}", problems)
    return labelled


def _model_for(task_type: str) -> type[TaskEntry] | None:
    return TASK_TYPES.get(TASK_TYPE_ALIASES.get(task_type, task_type))


def _parse_entries(
    model: type[TaskEntry], raw_entries: list[Any], where: str, problems: list[str]
) -> list[tuple[str, TaskEntry]]:
    labelled = []
    for index, raw in enumerate(raw_entries):
        label = _label(where, index, raw.get("task_name") if isinstance(raw, dict) else None)
        if not isinstance(raw, dict):
            problems.append(f"{label}: must be a JSON object")
            continue
        problems += [f"{label}: {key}: given more than once" for key in _dups(raw)]
        try:
            labelled.append((label, model.model_validate(raw)))
        except ValidationError as error:
            problems += [f"{label}: {_entry_problem(model, d)}" for d in error.errors()]
    return labelled


def _label(where: str, index: int, task_name: object) -> str:
    """``where: entry 0 ("Local cloner")``, or without the name when it is not a string."""
    if isinstance(task_name, str) and task_name:
        return f'{where}: entry {index} ("{task_name}")'
    return f"{where}: entry {index}"


def _dups(document: dict[str, Any]) -> list[str]:
    return getattr(document, "duplicates", [])


def _entry_problem(model: type[TaskEntry], detail: ErrorDetails) -> str:
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in detail["loc"])
    key = key.removeprefix(".")
    if detail["type"] == "extra_forbidden":
        return f"{key}: unknown key{_suggest(key, model.model_fields)}"
    if detail["type"] == "missing":
        return f"{key}: required key is missing"
    message = detail["msg"].removeprefix("Value error, ")
    if detail["type"] != "value_error":
        message += f" (got {_shorten(json.dumps(detail['input']))})"
    return f"{key}: {message}" if key else message


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _suggest(word: str, choices: Iterable[str]) -> str:
    names = list(choices)
    close = difflib.get_close_matches(word, names, n=1)
    return f'; did you mean "{close[0]}"?' if close else f"; expected one of: {', '.join(names)}"


def _duplicate_names(labelled: list[tuple[str, TaskEntry]]) -> list[str]:
    first_use: dict[str, str] = {}
    problems = []
    for label, entry in labelled:
        if entry.task_name in first_use:
            problems.append(
                f"{label}: task_name: already used by {first_use[entry.task_name]}; "
                "task names must be unique"
            )
        first_use.setdefault(entry.task_name, label)
    return problems


# --------------------------------------------------------------------------------------------
# References to stores and librarians (names known only to the database)
# --------------------------------------------------------------------------------------------

_STORE_KEYS = ("store_name", "clone_from", "clone_to", "store_preference")
_LIBRARIAN_KEYS = ("destination_librarian",)


def check_references(
    config: TaskConfig, store_names: set[str], librarian_names: set[str]
) -> list[str]:
    """Problem lines for store and librarian names that ``config`` uses but that do not exist."""
    problems: list[str] = []
    for label, entry in config.labelled():
        problems += _unknown_names(label, entry, _STORE_KEYS, "store", store_names)
        problems += _unknown_names(label, entry, _LIBRARIAN_KEYS, "librarian", librarian_names)
    return problems


def _unknown_names(
    label: str, entry: TaskEntry, keys: tuple[str, ...], kind: str, known: set[str]
) -> list[str]:
    problems = []
    for key in keys:
        value = getattr(entry, key, None)
        for name in value if isinstance(value, list) else [value]:
            if name is not None and name not in known:
                hint = _suggest(name, sorted(known)) if known else f"; no {kind}s exist"
                problems.append(f'{label}: {key}: unknown {kind} "{name}"{hint}')
    return problems
