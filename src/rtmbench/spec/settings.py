"""Settings from the environment, read in one place (pydantic-settings, prefix ``RTMBENCH_``).

| variable | meaning | default |
|---|---|---|
| ``RTMBENCH_CACHE`` | checkpoints (TensorRT engines in ``tensorrt/``) | ``~/.cache/rtmbench`` |
| ``RTMBENCH_MIRROR`` | comma-separated sources tried before the zoo's urls | none |
| ``RTMBENCH_OFFLINE`` | ``1``: never open a network connection | off |
| ``RTMBENCH_COCO`` | COCO 2017 root (``val2017/``, ``annotations/``) | none |
| ``RTMBENCH_ZOO`` | another zoo YAML | the shipped zoo |
| ``RTMBENCH_CONNECT_TIMEOUT`` | seconds to open a connection | 10 |
| ``RTMBENCH_READ_TIMEOUT`` | seconds without a byte before a server counts as stalled | 30 |
| ``RTMBENCH_RETRIES`` | further attempts per source | 3 |
| ``RTMBENCH_BACKOFF`` | seconds before the first retry, doubled after each | 1 |
| ``RTMBENCH_LOCK_TIMEOUT`` | seconds to wait for another process fetching the same file | 3600 |

A value that does not parse is an :class:`~rtmbench.errors.InputError` naming the variable.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..errors import InputError

PREFIX = "RTMBENCH_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)

    cache: Path = Field(default_factory=lambda: Path.home() / ".cache" / "rtmbench")
    mirror: str = ""
    offline: bool = False
    coco: Path | None = None
    zoo: Path | None = None
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    retries: int = Field(default=3, ge=0, le=100)
    backoff: float = Field(default=1.0, ge=0)
    lock_timeout: float = Field(default=3600.0, ge=0)

    @field_validator("cache", "coco", "zoo", mode="before")
    @classmethod
    def _expand(cls, value: object) -> object:
        if isinstance(value, str):
            return Path(value).expanduser() if value.strip() else None
        return value

    @field_validator("cache", mode="after")
    @classmethod
    def _cache_default(cls, value: Path | None) -> Path:
        return value if value is not None else Path.home() / ".cache" / "rtmbench"

    @property
    def mirrors(self) -> list[str]:
        return [m.strip() for m in self.mirror.split(",") if m.strip()]


def load_settings() -> Settings:
    """The settings as the environment says now (read on every call: tests change it)."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = PREFIX + str(err["loc"][0]).upper() if err["loc"] else PREFIX + "?"
            lines.append(f"{name}={err.get('input')!r}: {err['msg']}")
        raise InputError("unusable environment setting(s): " + "; ".join(lines)
                         + ". Fix or unset them (see `rtmbench --help`).") from None
