"""Process-wide settings, read from environment variables ``LIBRARIAN_<FIELD NAME>``.

:func:`load_settings` reports every invalid setting at once as a :class:`ConfigError`, one
line per problem naming the environment variable (``LIBRARIAN_PORT: Input should be a valid
integer``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from librarian_async.errors import ConfigError

__all__ = ["ENV_PREFIX", "Settings", "load_settings"]

ENV_PREFIX = "LIBRARIAN_"

_DATABASE_SCHEMES = {
    "sqlite+aiosqlite://": "sqlite+aiosqlite://",
    "postgresql+asyncpg://": "postgresql+asyncpg://",
    "sqlite://": "sqlite+aiosqlite://",
    "postgresql://": "postgresql+asyncpg://",
}


class Settings(BaseSettings):
    """Process-wide settings; each field is read from ``LIBRARIAN_<FIELD NAME>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    name: str = Field("librarian", min_length=1, description="This librarian's protocol name.")
    home: Path = Field(Path("var"), description="Folder for the default SQLite DB and demos.")
    database_url: str | None = Field(
        None,
        description="sqlite+aiosqlite:// or postgresql+asyncpg:// URL (sqlite:// and "
        "postgresql:// are rewritten to those drivers); default: SQLite file under home.",
    )
    background_config: Path | None = Field(
        None, description="Task configuration JSON file; unset means no background tasks."
    )
    host: str = Field("127.0.0.1", description="Address the HTTP API binds to.")
    port: int = Field(21108, ge=1, le=65535, description="Port the HTTP API binds to.")
    encryption_key: SecretStr | None = Field(
        None, description="Key that encrypts stored peer credentials (needed once peers exist)."
    )
    encryption_key_file: Path | None = Field(
        None, description="File holding the encryption key, instead of encryption_key."
    )
    max_queue_retries: int = Field(
        8, ge=0, description="Failed hand-offs of a queued batch before the batch fails."
    )
    peer_inflight_limit: int = Field(
        4, ge=1, description="Batches handed off but unfinished, per peer, at most."
    )
    http_connect_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for a connection to a peer."
    )
    http_read_timeout: float = Field(60.0, gt=0, description="Seconds to wait for a peer reply.")
    shutdown_grace: float = Field(
        30.0, ge=0, description="Seconds in-flight runs may take to finish after SIGTERM."
    )
    timeout_grace: float = Field(
        10.0,
        ge=0,
        description="Seconds in-flight items may take once a soft timeout is spent, "
        "before they are cancelled.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Logging threshold (any case)."
    )

    @field_validator("database_url")
    @classmethod
    def _use_async_driver(cls, url: str | None) -> str | None:
        if url is None:
            return None
        for prefix, replacement in _DATABASE_SCHEMES.items():
            if url.startswith(prefix):
                return replacement + url.removeprefix(prefix)
        raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")

    @field_validator("background_config")
    @classmethod
    def _must_be_a_file(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"no such file: {path}")
        return path

    @field_validator("encryption_key")
    @classmethod
    def _not_empty(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and not key.get_secret_value().strip():
            raise ValueError("must not be empty")
        return key

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case(cls, level: object) -> object:
        return level.strip().upper() if isinstance(level, str) else level

    @model_validator(mode="after")
    def _one_key_source(self) -> Settings:
        if self.encryption_key is not None and self.encryption_key_file is not None:
            raise ValueError(
                f"{ENV_PREFIX}ENCRYPTION_KEY and {ENV_PREFIX}ENCRYPTION_KEY_FILE are both set;"
                " set only one"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``<home>/librarian.sqlite3`` (absolute path)."""
        if self.database_url is not None:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.home.absolute() / 'librarian.sqlite3'}"

    def load_encryption_key(self) -> bytes | None:
        """Return the encryption key (from the file if one is named), or None if unset."""
        if self.encryption_key is not None:
            return self.encryption_key.get_secret_value().encode()
        if self.encryption_key_file is None:
            return None
        setting = f"{ENV_PREFIX}ENCRYPTION_KEY_FILE"
        try:
            key = self.encryption_key_file.read_bytes().strip()
        except OSError as error:
            raise ConfigError(
                f"{setting}: cannot read {self.encryption_key_file}: {error.strerror}"
            ) from error
        if not key:
            raise ConfigError(f"{setting}: {self.encryption_key_file} is empty")
        return key


def load_settings(**overrides: Any) -> Settings:
    """Read :class:`Settings` from the environment (``overrides`` win); raise ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigError([_settings_problem(detail) for detail in error.errors()]) from error


def _settings_problem(detail: ErrorDetails) -> str:
    message = detail["msg"].removeprefix("Value error, ")
    if not detail["loc"]:
        return message
    return f"{ENV_PREFIX}{str(detail['loc'][0]).upper()}: {message}"
