"""The GPU's conditions around a timing: clocks, power limit, temperature, throttling (NVML).

A GPU latency depends on the clock the GPU ran at. Before and after the timed phase, NVML
(``nvidia-ml-py``, imported as ``pynvml``; the ``gpu`` extra) is read for the GPU torch uses:
SM and memory clocks (and their maxima), power draw and limit, temperature, and the current
clock event ("throttle") reasons, plus the driver and the CUDA version the driver supports.

A record is flagged ``throttled`` (``metrics.throttled: true``, ``metrics.throttle_reasons``)
when, before or after timing, a reason that lowers clocks under load is active: software power
cap, hardware slowdown, software or hardware thermal slowdown, power brake. Idle, application
clock settings and sync boost are not throttling. The judge marks such a latency ``unreliable``
(not judged, re-measure), as it does a contended CPU run.

Without NVML (package missing, no driver) the conditions say why and ``throttled`` is None.
"""

from __future__ import annotations

from typing import Any

from ..errors import PackageMissing, import_problem

# nvmlClocksEventReason* / nvmlClocksThrottleReason* bit values (nvml.h)
REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
THROTTLING = ("sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown",
              "hw_power_brake_slowdown")


def decode_reasons(mask: int) -> list[str]:
    return [name for bit, name in REASONS.items() if mask & bit] + (
        [f"unknown_{mask & ~sum(REASONS):#x}"] if mask & ~sum(REASONS) else [])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class GpuProbe:
    """NVML for one GPU (torch's device ``index``, matched by UUID where torch tells it)."""

    def __init__(self, index: int = 0) -> None:
        import pynvml

        self.nvml = pynvml
        pynvml.nvmlInit()
        self.handle = self._handle(index)

    def _handle(self, index: int):
        nvml = self.nvml
        try:
            import torch

            uuid = str(torch.cuda.get_device_properties(index).uuid)
            return nvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-")
                                                  else f"GPU-{uuid}")
        except Exception:  # older torch without .uuid, MIG, or no CUDA: NVML's own index
            return nvml.nvmlDeviceGetHandleByIndex(index)

    def _reasons(self) -> int:
        nvml = self.nvml
        getter = (getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
                  or nvml.nvmlDeviceGetCurrentClocksThrottleReasons)
        return int(getter(self.handle))

    def snapshot(self) -> dict[str, Any]:
        nvml, h = self.nvml, self.handle
        out: dict[str, Any] = {}
        readings = {
            "sm_clock_mhz": lambda: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM),
            "mem_clock_mhz": lambda: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_MEM),
            "sm_clock_max_mhz": lambda: nvml.nvmlDeviceGetMaxClockInfo(h, nvml.NVML_CLOCK_SM),
            "mem_clock_max_mhz": lambda: nvml.nvmlDeviceGetMaxClockInfo(h, nvml.NVML_CLOCK_MEM),
            "power_w": lambda: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0,
            "power_limit_w": lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0,
            "temperature_c": lambda: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU),
        }
        for key, read in readings.items():
            try:
                out[key] = read()
            except Exception:  # a reading this GPU/driver does not support
                out[key] = None
        try:
            mask = self._reasons()
        except Exception:  # NotSupported (MIG, vGPU): the latency stands, throttling unknown
            mask = None
        out["clock_event_reasons"] = None if mask is None else decode_reasons(mask)
        out["clock_event_mask"] = mask
        return out

    def system(self) -> dict[str, Any]:
        nvml = self.nvml
        readings = {"name": lambda: _text(nvml.nvmlDeviceGetName(self.handle)),
                    "driver": lambda: _text(nvml.nvmlSystemGetDriverVersion()),
                    "cuda_driver": lambda: _cuda_version(nvml.nvmlSystemGetCudaDriverVersion_v2())}
        info: dict[str, Any] = {}
        for key, read in readings.items():
            try:
                info[key] = read()
            except Exception:  # not supported here: unknown, never the end of the measurement
                info[key] = None
        return info


def _cuda_version(value: Any) -> str:
    v = int(value)
    return f"{v // 1000}.{(v % 1000) // 10}"


def open_probe(index: int = 0) -> tuple[GpuProbe | None, str | None]:
    """A probe, or (None, why not)."""
    try:
        return GpuProbe(index), None
    except ImportError as exc:
        problem = import_problem("pynvml", exc, extra="gpu", what="recording GPU clocks")
        if problem is exc:
            raise
        if not isinstance(problem, PackageMissing):  # installed and broken: the unit fails
            raise problem from exc
        return None, ("nvidia-ml-py (pynvml) is not installed: no clocks or throttle reasons "
                      "recorded (pip install 'rtmbench[gpu]')")
    except Exception as exc:  # NVMLError: no driver, no permission
        return None, f"NVML is not usable here: {type(exc).__name__}: {exc}"


def conditions(before: dict | None, after: dict | None, system: dict | None,
               unavailable: str | None = None) -> dict[str, Any]:
    """What a record stores: ``{"before", "after", "system", "throttled", "throttle_reasons"}``
    (``throttled`` None when NVML could not be read)."""
    if unavailable is not None or before is None or after is None:
        return {"unavailable": unavailable or "NVML gave no reading", "throttled": None,
                "throttle_reasons": None}
    if before["clock_event_reasons"] is None or after["clock_event_reasons"] is None:
        return {"before": before, "after": after, "system": system, "throttled": None,
                "throttle_reasons": None,
                "unavailable": "NVML gives no clock event reasons on this GPU (MIG or vGPU?)"}
    reasons = sorted({r for snap in (before, after) for r in snap["clock_event_reasons"]
                      if r in THROTTLING})
    return {"before": before, "after": after, "system": system, "throttled": bool(reasons),
            "throttle_reasons": reasons}
