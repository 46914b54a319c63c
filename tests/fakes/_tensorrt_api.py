"""The shared core of the TensorRT API-surface fakes (``tensorrt_8_6``, ``tensorrt_10``,
``tensorrt_11``): the classes rtmbench's TensorRT backend touches, with the rules that differ
between the majors enforced where rtmbench could get them wrong.

An "engine" here runs its ONNX file in ONNX Runtime's CPU provider, reading and writing the
host buffers whose addresses were bound with ``set_tensor_address``: the backend's whole path
(parse, build, serialise, cache, deserialise, bind by name, enqueue, read outputs) runs on a
CPU, so accuracy checks see real outputs. It says nothing about TensorRT's speed or numerics.

What each version module sets (``FakeVersion``):
- ``builder_flags``: names in ``BuilderFlag``. 11.x has no FP16/INT8/...: accessing
  ``BuilderFlag.FP16`` raises AttributeError, as the real 11.x bindings do.
- ``creation_flags``: names in ``NetworkDefinitionCreationFlag`` (8.6: EXPLICIT_BATCH only;
  10: EXPLICIT_BATCH (deprecated, ignored) and STRONGLY_TYPED; 11: STRONGLY_TYPED only,
  accepted and ignored: every network is strongly typed).
"""

from __future__ import annotations

import ctypes
import enum
import json
import warnings
from dataclasses import dataclass, field

import numpy as np

MAGIC = b"FAKE-TENSORRT-ENGINE\n"


@dataclass
class FakeVersion:
    version: str
    builder_flags: tuple[str, ...]
    creation_flags: tuple[str, ...]
    always_strongly_typed: bool = False
    parser_needs_explicit_batch: bool = False
    deprecated_creation_flags: tuple[str, ...] = ()
    # every call the backend made, for assertions
    calls: list = field(default_factory=list)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


def install(namespace: dict, spec: FakeVersion) -> None:
    """Fill a version module's globals with the fake API for ``spec``."""
    namespace["__version__"] = spec.version
    namespace["FAKE"] = spec
    namespace["BuilderFlag"] = enum.IntEnum("BuilderFlag", list(spec.builder_flags), start=0)
    namespace["NetworkDefinitionCreationFlag"] = enum.IntEnum(
        "NetworkDefinitionCreationFlag", list(spec.creation_flags), start=0)
    namespace["MemoryPoolType"] = enum.IntEnum("MemoryPoolType", ["WORKSPACE"], start=0)
    namespace["TensorIOMode"] = TensorIOMode
    namespace["DataType"] = DataType
    namespace["nptype"] = nptype
    namespace["Logger"] = Logger
    namespace["Builder"] = _builder_class(spec, namespace)
    namespace["OnnxParser"] = _parser_class(spec)
    namespace["Runtime"] = _runtime_class(spec)


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1


def nptype(dtype: DataType):
    return {DataType.FLOAT: np.float32, DataType.HALF: np.float16}[DataType(dtype)]


class Logger:
    VERBOSE, INFO, WARNING, ERROR = 4, 3, 2, 1

    def __init__(self, severity: int = 2) -> None:
        self.severity = severity
        self.errors: list[str] = []


class _Network:
    def __init__(self, flags: int, spec: FakeVersion, names: dict) -> None:
        self.flags = flags
        self.flag_names = [n for n, v in names.items() if flags & (1 << v)]
        self.onnx: bytes | None = None
        self.strongly_typed = spec.always_strongly_typed or "STRONGLY_TYPED" in self.flag_names


def _builder_class(spec: FakeVersion, namespace: dict):
    class IBuilderConfig:
        def __init__(self) -> None:
            self.flags: set[str] = set()
            self.pools: dict = {}

        def set_flag(self, flag) -> None:
            name = namespace["BuilderFlag"](flag).name
            spec.calls.append(("set_flag", name))
            self.flags.add(name)

        def get_flag(self, flag) -> bool:
            return namespace["BuilderFlag"](flag).name in self.flags

        def set_memory_pool_limit(self, pool, size: int) -> None:
            self.pools[int(pool)] = size

    class Builder:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def create_network(self, flags: int = 0) -> _Network:
            names = {m.name: int(m) for m in namespace["NetworkDefinitionCreationFlag"]}
            used = [n for n, v in names.items() if flags & (1 << v)]
            unknown = flags & ~sum(1 << v for v in names.values())
            if unknown:
                raise TypeError(f"fake TensorRT {spec.version}: unknown network creation flag "
                                f"bits {unknown:#x}")
            for name in used:
                if name in spec.deprecated_creation_flags:
                    warnings.warn(f"fake TensorRT {spec.version}: {name} is deprecated",
                                  DeprecationWarning, stacklevel=2)
            spec.calls.append(("create_network", tuple(used)))
            return _Network(flags, spec, names)

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def build_serialized_network(self, network: _Network, config: IBuilderConfig):
            spec.calls.append(("build", network.strongly_typed, tuple(sorted(config.flags))))
            if network.onnx is None:
                self.logger.errors.append("network has no layers")
                return None
            onnx_fp16 = _has_fp16(network.onnx)
            if network.strongly_typed and config.flags & {"FP16", "INT8", "BF16", "FP8"}:
                # TensorRT 10: precision flags are not allowed on a strongly typed network
                self.logger.errors.append("kFP16 is not allowed with a strongly typed network")
                return None
            if not network.strongly_typed and onnx_fp16 and "FP16" not in config.flags:
                # NVIDIA/TensorRT#3277: "fp16 precision has been set for a layer or layer
                # output, but fp16 is not configured in the builder"
                self.logger.errors.append("fp16 is not configured in the builder")
                return None
            compute = ("fp16" if (network.strongly_typed and onnx_fp16)
                       or (not network.strongly_typed and "FP16" in config.flags) else "fp32")
            header = {"version": spec.version, "compute": compute,
                      "strongly_typed": network.strongly_typed,
                      "builder_flags": sorted(config.flags)}
            return MAGIC + json.dumps(header).encode() + b"\n" + network.onnx

    return Builder


def _has_fp16(onnx_bytes: bytes) -> bool:
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    return any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)


def _parser_class(spec: FakeVersion):
    class OnnxParser:
        def __init__(self, network: _Network, logger: Logger) -> None:
            self.network, self.logger = network, logger
            self.errors: list[str] = []

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> str:
            return self.errors[i]

        def parse(self, data: bytes) -> bool:
            import onnx

            if spec.parser_needs_explicit_batch and "EXPLICIT_BATCH" not in \
                    self.network.flag_names:
                self.errors.append("ONNX parser only supports networks with an explicit batch "
                                   "dimension")
                return False
            try:
                onnx.checker.check_model(onnx.load_from_string(bytes(data)))
            except Exception as exc:
                self.errors.append(f"ModelImporter: {exc}")
                return False
            self.network.onnx = bytes(data)
            return True

    return OnnxParser


def _runtime_class(spec: FakeVersion):
    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes):
            if not bytes(data).startswith(MAGIC):
                return None
            body = bytes(data)[len(MAGIC):]
            header, onnx_bytes = body.split(b"\n", 1)
            return FakeEngine(json.loads(header), onnx_bytes)

    return Runtime


class FakeEngine:
    """I/O from the ONNX graph; "execution" is ONNX Runtime CPU on host buffers."""

    def __init__(self, header: dict, onnx_bytes: bytes) -> None:
        import onnx
        import onnxruntime as ort

        self.header = header
        self.compute_precision = header["compute"]  # for tests: what the build would run in
        model = onnx.load_from_string(onnx_bytes)
        self.io: list[tuple[str, TensorIOMode, DataType, tuple[int, ...]]] = []
        for mode, values in ((TensorIOMode.INPUT, model.graph.input),
                             (TensorIOMode.OUTPUT, model.graph.output)):
            for v in values:
                t = v.type.tensor_type
                dtype = DataType.HALF if t.elem_type == onnx.TensorProto.FLOAT16 \
                    else DataType.FLOAT
                self.io.append((v.name, mode, dtype, tuple(d.dim_value for d in t.shape.dim)))
        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])

    @property
    def num_io_tensors(self) -> int:
        return len(self.io)

    def _entry(self, name: str):
        return next(e for e in self.io if e[0] == name)

    def get_tensor_name(self, i: int) -> str:
        return self.io[i][0]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self._entry(name)[1]

    def get_tensor_dtype(self, name: str) -> DataType:
        return self._entry(name)[2]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self._entry(name)[3]

    def create_execution_context(self) -> FakeContext:
        return FakeContext(self)


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.addresses: dict[str, int] = {}
        self.executions = 0

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.engine._entry(name)  # unknown names fail loudly
        self.addresses[name] = address
        return True

    def _view(self, name: str) -> np.ndarray:
        _, _, dtype, shape = self.engine._entry(name)
        np_dtype = np.dtype(nptype(dtype))
        count = int(np.prod(shape))
        raw = (ctypes.c_char * (count * np_dtype.itemsize)).from_address(self.addresses[name])
        return np.frombuffer(raw, dtype=np_dtype).reshape(shape)

    def execute_async_v3(self, stream_handle: int) -> bool:
        missing = [e[0] for e in self.engine.io if e[0] not in self.addresses]
        if missing:
            return False
        inputs = {e[0]: self._view(e[0]).copy() for e in self.engine.io
                  if e[1] == TensorIOMode.INPUT}
        names = [e[0] for e in self.engine.io if e[1] == TensorIOMode.OUTPUT]
        for name, value in zip(names, self.engine.session.run(names, inputs)):
            self._view(name)[...] = value
        self.executions += 1
        return True
