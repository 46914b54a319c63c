"""A machine's fingerprint: what a latency depends on besides the code being measured.

Two runs are "the same machine" for latency only when their fingerprints are equal; a history
of runs (``rtmbench gate --history``) only ever pools runs of one fingerprint, and a baseline
from another fingerprint is not compared on latency. Like MLPerf's system description and
Bencher's testbed, it names the hardware and the software that executes the timed network:

- ``cpu``: the CPU model; ``cores``: the cores this process may use (its affinity, so a cpuset
  or ``taskset`` that changes them makes another machine: the timed loops run on them);
  ``threads``: torch's intra-op threads (``OMP_NUM_THREADS`` changes CPU latency as much);
  ``arch``: the machine architecture;
- ``gpu``, ``gpu_driver``, ``cuda`` (the CUDA torch was built with) and ``cudnn``: on a GPU
  machine only (on a CPU machine they time nothing, and a driver update there must not start
  a new history);
- ``python``: major.minor (eager PyTorch dispatches each operator from Python);
- the full versions of the packages that execute the timed network: torch, onnxruntime,
  onnxruntime-gpu, tensorrt, openvino (a patch release can change kernels: a new oneDNN or
  MLAS is a new machine for latency).

Left out on purpose: rtmbench's own version and git commit (the code under test: a history
spans commits), packages that time nothing (numpy, opencv, pycocotools, mmengine, onnx), the
Python patch version, the OS kernel (CI images update it under the runner; a change that
matters shows as a step in the history), the host name, the date and the load.

New runs store it in every record's ``provenance.fingerprint`` (``id`` and ``fields``); older
records get it computed from their provenance when read (``hardware``, ``packages`` and a
latency record's ``environment``), with the same function.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

TIMING_PACKAGES = ("torch", "onnxruntime", "onnxruntime-gpu", "tensorrt", "openvino")
FIELDS = ("cpu", "cores", "threads", "arch", "gpu", "gpu_driver", "cuda", "cudnn", "python",
          *(f"package:{p}" for p in TIMING_PACKAGES))

Value = str | int | None


@dataclass(frozen=True)
class Fingerprint:
    """The fields that make a machine, and a short id of them."""

    fields: tuple[tuple[str, Value], ...]

    @classmethod
    def of(cls, fields: dict[str, Value]) -> Fingerprint:
        return cls(tuple((k, fields.get(k)) for k in FIELDS))

    def as_dict(self) -> dict[str, Value]:
        return dict(self.fields)

    @property
    def id(self) -> str:
        return fingerprint_id(self.as_dict())

    @property
    def label(self) -> str:
        """``Intel(R) Xeon(R) Processor, 2 cores; torch 2.14.1, onnxruntime 1.32.0``."""
        f = self.as_dict()
        hardware = f"{f['cpu'] or 'unknown CPU'}, {f['cores'] or '?'} cores"
        if f["threads"] is not None and f["threads"] != f["cores"]:
            hardware += f" ({f['threads']} threads)"
        if f["gpu"]:
            hardware = f"{f['gpu']} (driver {f['gpu_driver'] or '?'}, CUDA {f['cuda'] or '?'})" \
                       f", {hardware}"
        software = ", ".join(f"{p} {f[f'package:{p}']}" for p in TIMING_PACKAGES
                             if f[f"package:{p}"])
        return f"{hardware}; {software or 'no timing packages recorded'}"

    def differences(self, other: Fingerprint) -> list[str]:
        """``torch 2.14.1 → 2.15.0``: every field that differs, for people."""
        a, b = self.as_dict(), other.as_dict()
        return [f"{k.removeprefix('package:')} {a[k] if a[k] is not None else '—'} → "
                f"{b[k] if b[k] is not None else '—'}" for k in FIELDS if a[k] != b[k]]


def fingerprint_id(fields: dict[str, Value]) -> str:
    canonical = json.dumps({k: fields.get(k) for k in FIELDS}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def fingerprint_fields(provenance: dict[str, Any]) -> dict[str, Value]:
    """The fingerprint's fields from a record's provenance (any schema version)."""
    hw = provenance.get("hardware") if isinstance(provenance.get("hardware"), dict) else {}
    env = provenance.get("environment") if isinstance(provenance.get("environment"),
                                                      dict) else {}
    gpu_cond = provenance.get("gpu_conditions") if isinstance(
        provenance.get("gpu_conditions"), dict) else {}
    packages = provenance.get("packages") if isinstance(provenance.get("packages"),
                                                        dict) else {}
    gpu = _text(hw.get("gpu")) or _text(env.get("gpu"))
    python = _text(packages.get("python")) or _text(env.get("python"))
    fields: dict[str, Value] = {
        "cpu": _text(hw.get("cpu")) or _text(env.get("cpu")),
        "cores": _int(hw.get("cores")) or _int(env.get("cpu_cores_usable")),
        "threads": _int(env.get("torch_threads")),
        "arch": _text(hw.get("machine")),
        "gpu": gpu,
        "gpu_driver": (_text(env.get("gpu_driver")) or _text(gpu_cond.get("driver")))
        if gpu else None,
        "cuda": _text(env.get("cuda")) if gpu else None,
        "cudnn": _text(env.get("cudnn")) if gpu else None,
        "python": ".".join(python.split(".")[:2]) if python else None,
    }
    for name in TIMING_PACKAGES:
        fields[f"package:{name}"] = _text(packages.get(name))
    return fields


def stored_fingerprint(provenance: dict[str, Any]) -> Fingerprint | None:
    """The fingerprint a record stores (validated by the record), or None."""
    stored = provenance.get("fingerprint")
    if isinstance(stored, dict) and isinstance(stored.get("fields"), dict):
        return Fingerprint.of(stored["fields"])
    return None


def fingerprint_of(provenance: dict[str, Any]) -> Fingerprint:
    """A record's fingerprint: the one it stores, else computed from its provenance."""
    return stored_fingerprint(provenance) or Fingerprint.of(fingerprint_fields(provenance))


def stored_form(provenance: dict[str, Any]) -> dict[str, Any]:
    """What a new record stores under ``provenance.fingerprint``."""
    fields = fingerprint_fields(provenance)
    return {"id": fingerprint_id(fields), "fields": fields}


def check_stored(value: Any) -> str | None:
    """Why a stored ``provenance.fingerprint`` is unusable, or None."""
    if not isinstance(value, dict) or set(value) != {"id", "fields"}:
        return "must be an object with exactly 'id' and 'fields'"
    fields = value["fields"]
    if not isinstance(fields, dict) or set(fields) - set(FIELDS):
        return f"fields must be an object with keys among {', '.join(FIELDS)}"
    if any(v is not None and not isinstance(v, (str, int)) or isinstance(v, bool)
           for v in fields.values()):
        return "every field is a string, an integer or null"
    if value["id"] != fingerprint_id(fields):
        return (f"id {value['id']!r} is not the id of its fields ({fingerprint_id(fields)}): "
                f"the fields were edited, or the id")
    return None
