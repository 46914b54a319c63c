"""The latency protocol, modelled on trtexec, and the environment it ran in.

1. Warm-up by time: run the inference until ``warmup_s`` has passed and at least
   ``min_warmup_iterations`` calls were made (caches, allocator, autotuners settle).
2. Measure: time single inferences, each fully synchronised (a CUDA event pair on the stream on
   GPU, ``perf_counter`` around a blocking call on CPU), until at least ``min_iterations``
   samples were kept AND their sum reaches ``min_duration_s``.
3. Contention, per sample: a sample above ``outlier_factor`` x the running median (seeded
   by the warm-up) means something else took the machine (another process on a core makes
   one forward many times slower). It is not averaged in: it is re-measured, up to
   ``max_remeasure`` times per run; beyond that the run is flagged ``contention`` and the
   outliers are listed.
   Contention, per run: sustained load slows every sample alike, so the CPU time other
   processes used during the timed phase is measured (``/proc/stat`` minus this process) and
   the run is flagged when they kept more than ``busy_other_cores`` cores busy on average.
   Once that is established (``contended_after_s`` of timing and ``contended_min_iterations``
   samples, checked about every ``PROBE_EVERY_S``), timing stops: the run is flagged and never
   judged, and its samples so far are what it reports (``stopped_early``).
4. Statistics over the kept samples: median, mean, min, p90, p99 (linear interpolation between
   order statistics, numpy's default), sample stdev, CV = stdev / mean, and throughput =
   batch x samples / sum(samples).

The clock is injectable (:class:`Timer`), so tests can check every statistic exactly.
"""

from __future__ import annotations

import bisect
import importlib.metadata
import os
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm import tqdm

from .environment import cpu_model
from .requests import Protocol  # the protocol's one definition, re-exported here


class Timer:
    """Times one call of ``fn`` (seconds) and tells wall time; CPU: ``perf_counter``."""

    def now(self) -> float:
        return time.perf_counter()

    def time_call(self, fn: Callable[[], object]) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


class CudaEventTimer(Timer):
    """GPU time between two events recorded on ``stream`` around the call."""

    def __init__(self, stream) -> None:
        import torch

        self.torch, self.stream = torch, stream
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def time_call(self, fn: Callable[[], object]) -> float:
        self.start.record(self.stream)
        fn()
        self.end.record(self.stream)
        self.end.synchronize()
        return self.start.elapsed_time(self.end) / 1000.0


class FakeTimer(Timer):
    """Returns scripted durations: each call takes the next value; wall time advances by it."""

    def __init__(self, durations: Iterator[float] | list[float]) -> None:
        self.durations = iter(durations)
        self.clock = 0.0
        self.calls = 0

    def now(self) -> float:
        return self.clock

    def time_call(self, fn: Callable[[], object]) -> float:
        fn()
        self.calls += 1
        duration = next(self.durations)
        self.clock += duration
        return duration


class LoadProbe:
    """CPU time used by every process (``/proc/stat``) and by this one, in seconds.

    Sustained contention (another process busy on a core for the whole run) raises every
    sample alike, so no single sample stands out; the difference of the two counters over
    the run shows it directly.
    """

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK")

    def snapshot(self) -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # - idle, iowait
        return time.monotonic(), busy / self.tick, time.process_time()

    @staticmethod
    def other_cores(before, after) -> float | None:
        """Average number of cores other processes kept busy between two snapshots."""
        if before is None or after is None or after[0] <= before[0]:
            return None
        others = (after[1] - before[1]) - (after[2] - before[2])
        return max(0.0, others / (after[0] - before[0]))


def other_cores_during(seconds: float, probe: LoadProbe | None = None) -> float | None:
    """How many cores other processes kept busy, on average, over the next ``seconds`` (this
    process idles meanwhile); None where the kernel does not say (no ``/proc/stat``)."""
    probe = probe or LoadProbe()
    before = probe.snapshot()
    time.sleep(seconds)
    return LoadProbe.other_cores(before, probe.snapshot())


@dataclass
class Measurement:
    samples_s: list[float]
    warmup_samples_s: list[float]
    outliers_s: list[float] = field(default_factory=list)
    contention: bool = False
    other_cores: float | None = None  # cores other processes used during the timed phase
    stopped_early: bool = False  # timing ended once sustained contention was established

    def stats(self, batch: int = 1) -> dict:
        return statistics_of(self.samples_s, batch) | {
            "samples_ms": kept_samples_ms(self.samples_s),
            "warmup_iterations": len(self.warmup_samples_s),
            "outliers_remeasured": len(self.outliers_s),
            "outliers_ms": [round(s * 1e3, 4) for s in self.outliers_s],
            "other_processes_cores": (round(self.other_cores, 3)
                                      if self.other_cores is not None else None),
            "contention": self.contention, "stopped_early": self.stopped_early}


MAX_STORED_SAMPLES = 2000
PROBE_EVERY_S = 0.5  # how often the timing loop reads the load, once contended_after_s passed


def kept_samples_ms(samples_s: list[float], limit: int = MAX_STORED_SAMPLES) -> list[float]:
    """The per-iteration times (ms, 0.1 µs resolution) a record keeps for the gate's rank
    test: all of them, or ``limit`` evenly spaced in time order when there are more."""
    ms = np.asarray(samples_s, dtype=np.float64) * 1e3
    if len(ms) > limit:
        ms = ms[np.linspace(0, len(ms) - 1, limit).round().astype(int)]
    return [round(float(v), 4) for v in ms]


def statistics_of(samples_s: list[float], batch: int = 1) -> dict:
    """The reported statistics, in milliseconds, of per-inference times in seconds."""
    ms = np.asarray(samples_s, dtype=np.float64) * 1e3
    mean = float(ms.mean())
    stdev = float(statistics.stdev(ms.tolist())) if len(ms) > 1 else 0.0
    return {"median_ms": float(np.median(ms)), "mean_ms": mean, "min_ms": float(ms.min()),
            "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
            "stdev_ms": stdev, "cv": stdev / mean if mean > 0 else 0.0,
            "throughput_ips": batch * len(ms) / (float(ms.sum()) / 1e3),
            "samples": int(len(ms))}


def measure(run: Callable[[], object], protocol: Protocol, timer: Timer | None = None,
            progress: bool = False, label: str = "latency",
            load_probe: LoadProbe | None | bool = True) -> Measurement:
    """Warm up by time, then take samples per the protocol (see the module docstring).

    ``load_probe``: True = the system's (``/proc/stat``), False/None = none, or a probe object.
    """
    timer = timer or Timer()
    probe = LoadProbe() if load_probe is True else (load_probe or None)
    warmup: list[float] = []
    start = timer.now()
    while (timer.now() - start < protocol.warmup_s
           or len(warmup) < protocol.min_warmup_iterations):
        warmup.append(timer.time_call(run))
    ordered = sorted(warmup[len(warmup) // 2:])  # the first warm-up calls are not typical
    kept: list[float] = []
    outliers: list[float] = []
    contention = False
    before = probe.snapshot() if probe else None
    stopped_early = False
    next_probe = timer.now()
    if protocol.contended_after_s is not None:
        next_probe += protocol.contended_after_s
    bar = tqdm(total=protocol.min_iterations, desc=label, unit="it", disable=not progress,
               leave=False)
    try:
        while (len(kept) < protocol.min_iterations or sum(kept) < protocol.min_duration_s) \
                and len(kept) < protocol.max_iterations:
            if (probe and protocol.contended_after_s is not None and timer.now() >= next_probe
                    and len(kept) >= protocol.contended_min_iterations):
                next_probe = timer.now() + PROBE_EVERY_S
                so_far = LoadProbe.other_cores(before, probe.snapshot())
                if so_far is not None and so_far > protocol.busy_other_cores:
                    stopped_early = contention = True
                    break
            sample = timer.time_call(run)
            running_median = ordered[len(ordered) // 2]
            if sample > protocol.outlier_factor * running_median:
                outliers.append(sample)
                if len(outliers) <= protocol.max_remeasure:
                    continue  # re-measure: this one is not averaged in
                contention = True  # too many: keep it so the statistics show the truth
            kept.append(sample)
            bisect.insort(ordered, sample)
            bar.update(1)
    finally:
        bar.close()
    other = LoadProbe.other_cores(before, probe.snapshot()) if probe else None
    if other is not None and other > protocol.busy_other_cores:
        contention = True
    return Measurement(kept, warmup, outliers, contention, other, stopped_early)


# --------------------------------------------------------------------------- environment
def _package_version(name: str) -> str | None:
    for candidate in (name, name.replace("-", "_")):
        try:
            return importlib.metadata.version(candidate)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _nvidia_driver() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True)
        return out.stdout.strip().splitlines()[0] or None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def collect_environment() -> dict:
    """Hardware and software a latency depends on; absent things are ``None``."""
    import torch

    cuda = torch.cuda.is_available()
    ort_version = _package_version("onnxruntime") or _package_version("onnxruntime-gpu")
    return {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_driver": _nvidia_driver() if cuda else None,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "tensorrt": _package_version("tensorrt"),
        "onnxruntime": ort_version,
        "openvino": _package_version("openvino"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "os": platform.platform(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


__all__ = ["Timer", "CudaEventTimer", "FakeTimer", "LoadProbe", "Protocol", "Measurement",
           "measure", "other_cores_during",
           "statistics_of", "collect_environment", "asdict"]
