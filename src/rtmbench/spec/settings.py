"""Settings from the environment, read in one place (pydantic-settings, prefix ``RTMBENCH_``).

| variable | meaning | default |
|---|---|---|
| ``RTMBENCH_CACHE`` | checkpoints (TensorRT engines in ``tensorrt/``, data sets in \
``datasets/``) | ``~/.cache/rtmbench`` |
| ``RTMBENCH_MIRROR`` | comma-separated checkpoint sources tried before the zoo's urls | none |
| ``RTMBENCH_OFFLINE`` | ``1``: never open a network connection | off |
| ``RTMBENCH_COCO`` | COCO 2017 root (``val2017/``, ``annotations/``) | the fetched one |
| ``RTMBENCH_COCO_MIRROR`` | comma-separated sources of COCO's archives (folders, base \
URLs, ``hf://datasets/OWNER/REPO[@REV][/SUBDIR]``) tried before the official hosts | none |
| ``RTMBENCH_ZOO`` | another zoo YAML | the shipped zoo |
| ``RTMBENCH_CONNECT_TIMEOUT`` | seconds to open a connection | 10 |
| ``RTMBENCH_READ_TIMEOUT`` | seconds without a byte before a server counts as stalled | 30 |
| ``RTMBENCH_RETRIES`` | further attempts per source | 3 |
| ``RTMBENCH_BACKOFF`` | seconds before the first retry, doubled after each | 1 |
| ``RTMBENCH_LOCK_TIMEOUT`` | seconds to wait for another process fetching the same file | 3600 |
| ``RTMBENCH_DOWNLOAD_DEADLINE`` | seconds one source may take for one file (all attempts) | 7200 |
| ``RTMBENCH_MAX_DOWNLOAD_BYTES`` | size cap of a download when the zoo gives no ``size`` | 2 GiB |
| ``RTMBENCH_CA_BUNDLE`` | CA certificates (PEM file or folder) for HTTPS (see below) | system |

CA certificates: ``RTMBENCH_CA_BUNDLE``, else ``REQUESTS_CA_BUNDLE``, else ``CURL_CA_BUNDLE``,
else ``SSL_CERT_FILE``/``SSL_CERT_DIR``, else the system's store.

Read here too, for ``hf://`` sources (huggingface_hub reads most of its variables once, at
import; rtmbench passes these on every call so they are current): ``HF_ENDPOINT`` (an
enterprise or mirror hub), ``HF_HUB_OFFLINE`` (hf:// sources use huggingface_hub's cache only),
``HF_HUB_CACHE`` (that cache). ``HF_TOKEN`` and the proxy variables (``HTTPS_PROXY``,
``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) are read by the HTTP clients themselves.

A value that does not parse is an :class:`~rtmbench.errors.InputError` naming the variable.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..errors import InputError

PREFIX = "RTMBENCH_"


class Settings(BaseSettings):
    # an empty variable counts as unset (`RTMBENCH_OFFLINE= cmd` is how shells unset one)
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True,
                                      env_ignore_empty=True)

    cache: Path = Field(default_factory=lambda: Path.home() / ".cache" / "rtmbench")
    mirror: str = ""
    coco_mirror: str = ""
    offline: bool = False
    coco: Path | None = None
    zoo: Path | None = None
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    retries: int = Field(default=3, ge=0, le=100)
    backoff: float = Field(default=1.0, ge=0)
    lock_timeout: float = Field(default=3600.0, ge=0)
    download_deadline: float = Field(default=7200.0, gt=0, allow_inf_nan=False)
    max_download_bytes: int = Field(default=2 << 30, gt=0)
    ca_bundle: Path | None = Field(default=None, validation_alias=AliasChoices(
        "RTMBENCH_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"))
    hf_endpoint: str | None = Field(default=None, validation_alias="HF_ENDPOINT")
    hf_hub_offline: str = Field(default="", validation_alias="HF_HUB_OFFLINE")
    hf_cache: Path | None = Field(default=None, validation_alias="HF_HUB_CACHE")

    @field_validator("cache", "coco", "zoo", "ca_bundle", "hf_cache", mode="before")
    @classmethod
    def _expand(cls, value: object) -> object:
        if isinstance(value, str):
            return Path(value).expanduser() if value.strip() else None
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _bundle_exists(cls, value: Path | None) -> Path | None:
        # a stale bundle would make every HTTPS and hf:// source unreachable: "not run" for a
        # setting the user must fix, so it is refused here, naming the variable
        if value is not None and not value.exists():
            raise ValueError(f"CA bundle {value} does not exist (set by RTMBENCH_CA_BUNDLE, "
                             "REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE): point it at a PEM file or "
                             "a folder of certificates, or unset it")
        return value

    @field_validator("hf_endpoint", mode="before")
    @classmethod
    def _no_empty_endpoint(cls, value: object) -> object:
        return value.strip().rstrip("/") or None if isinstance(value, str) else value

    @field_validator("cache", mode="after")
    @classmethod
    def _cache_default(cls, value: Path | None) -> Path:
        return value if value is not None else Path.home() / ".cache" / "rtmbench"

    @property
    def mirrors(self) -> list[str]:
        return [m.strip() for m in self.mirror.split(",") if m.strip()]

    @property
    def coco_mirrors(self) -> list[str]:
        return [m.strip() for m in self.coco_mirror.split(",") if m.strip()]

    @property
    def hf_offline(self) -> bool:
        """``HF_HUB_OFFLINE`` as huggingface_hub reads it (1, ON, YES, TRUE; anything else: no)."""
        return self.hf_hub_offline.strip().upper() in {"1", "ON", "YES", "TRUE"}


def load_settings() -> Settings:
    """The settings as the environment says now (read on every call: tests change it)."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            name = field if field.isupper() else PREFIX + field.upper()  # aliases: HF_*, ...
            lines.append(f"{name}={err.get('input')!r}: {err['msg']}")
        raise InputError("unusable environment setting(s): " + "; ".join(lines)
                         + ". Fix or unset them (see `rtmbench --help`).") from None
