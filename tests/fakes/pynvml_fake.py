"""API-surface FAKE of ``pynvml`` (nvidia-ml-py): the NVML calls rtmbench reads, with scripted
clocks and clock event reasons. Not NVML: nothing read from it describes a GPU."""

from __future__ import annotations

NVML_CLOCK_SM, NVML_CLOCK_MEM = 1, 2
NVML_TEMPERATURE_GPU = 0

# scripted state; tests set these
reasons: list[int] = [0x1, 0x0]  # one value per read, the last one repeats
sm_clock = 1980
initialised = 0


def nvmlInit() -> None:
    global initialised
    initialised += 1


def nvmlDeviceGetHandleByUUID(uuid):
    return ("uuid", uuid)


def nvmlDeviceGetHandleByIndex(index):
    return ("index", index)


def nvmlDeviceGetClockInfo(handle, clock):
    return sm_clock if clock == NVML_CLOCK_SM else 2619


def nvmlDeviceGetMaxClockInfo(handle, clock):
    return 1980 if clock == NVML_CLOCK_SM else 2619


def nvmlDeviceGetPowerUsage(handle):
    return 312_000  # mW


def nvmlDeviceGetEnforcedPowerLimit(handle):
    return 700_000


def nvmlDeviceGetTemperature(handle, sensor):
    return 61


def nvmlDeviceGetCurrentClocksEventReasons(handle):
    return reasons.pop(0) if len(reasons) > 1 else reasons[0]


def nvmlDeviceGetName(handle):
    return b"NVIDIA FAKE GPU"


def nvmlSystemGetDriverVersion():
    return "580.65.06"


def nvmlSystemGetCudaDriverVersion_v2():
    return 13000
