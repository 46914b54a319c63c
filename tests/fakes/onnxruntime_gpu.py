"""API-surface FAKE of onnxruntime-gpu's execution providers on top of the real CPU package.

``install(monkeypatch, available=...)`` makes ``onnxruntime.get_available_providers()`` list the
CUDA and TensorRT providers, and ``onnxruntime.InferenceSession`` a session that records the
providers and options it was asked for, then runs the model in the real CPU provider (so
outputs are real); ``get_providers()`` reports the requested provider first, as a working GPU
build does, or the CPU provider only when ``fall_back`` (what ONNX Runtime does silently when
a provider fails to load). I/O binding to "cuda" and ``OrtValue`` on "cuda" are host-side
stand-ins. Nothing run through it says anything about a GPU."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Recorded:
    sessions: list[dict] = field(default_factory=list)


class _FakeOrtValue:
    def __init__(self, array: np.ndarray, device: str) -> None:
        self.array, self.device = array, device

    @classmethod
    def ortvalue_from_numpy(cls, array, device="cpu", device_id=0):
        return cls(np.asarray(array), device)


class _FakeBinding:
    def __init__(self, session) -> None:
        self.session = session
        self.inputs: dict[str, np.ndarray] = {}
        self.outputs: list[tuple[str, str]] = []

    def bind_cpu_input(self, name, array) -> None:
        self.inputs[name] = np.asarray(array)

    def bind_ortvalue_input(self, name, value) -> None:
        self.inputs[name] = value.array

    def bind_output(self, name, device="cpu") -> None:
        self.outputs.append((name, device))

    def copy_outputs_to_cpu(self):
        return self.last


def install(monkeypatch, *, available=("TensorrtExecutionProvider", "CUDAExecutionProvider",
                                       "CPUExecutionProvider"), fall_back: bool = False
            ) -> Recorded:
    import onnxruntime as ort

    recorded = Recorded()
    real_session = ort.InferenceSession

    class FakeGpuSession:
        def __init__(self, path, sess_options=None, providers=None, **kwargs) -> None:
            name, options = providers[0] if isinstance(providers[0], tuple) \
                else (providers[0], {})
            recorded.sessions.append({"path": str(path), "provider": name,
                                      "options": dict(options)})
            self._requested = name
            self._cpu = real_session(str(path), sess_options,
                                     providers=["CPUExecutionProvider"])

        def get_providers(self):
            if fall_back or self._requested == "CPUExecutionProvider":
                return ["CPUExecutionProvider"]
            return [self._requested, "CPUExecutionProvider"]

        def get_inputs(self):
            return self._cpu.get_inputs()

        def get_outputs(self):
            return self._cpu.get_outputs()

        def run(self, names, feed, *args):
            return self._cpu.run(names, feed)

        def io_binding(self):
            return _FakeBinding(self)

        def run_with_iobinding(self, binding) -> None:
            binding.last = self._cpu.run([n for n, _ in binding.outputs], binding.inputs)

    monkeypatch.setattr(ort, "get_available_providers", lambda: list(available))
    monkeypatch.setattr(ort, "InferenceSession", FakeGpuSession)
    monkeypatch.setattr(ort, "OrtValue", _FakeOrtValue)
    return recorded
