"""``torch.compile`` (inductor) on the BN-folded, channels_last network: the path a PyTorch user
takes when TensorRT is not installed.

What runs:
- the network as :class:`~.torch_backend.TorchBackend` prepares it (BN folded, channels_last,
  fp16 or fp32 on CUDA, fp32 on CPU), compiled with ``torch.compile(dynamic=False,
  fullgraph=True)`` under inductor's ``freezing`` (weights become constants: folded, and on CPU
  pre-packed for oneDNN, conv + pointwise fused), in inference mode;
- ``mode``: inductor's ``default``, ``reduce-overhead`` (CUDA graphs through cudagraph trees)
  or ``max-autotune`` (Triton/cuBLAS/cuDNN candidates benchmarked per kernel, plus CUDA graphs;
  compiles for minutes). ``auto`` (the default) is ``reduce-overhead`` on CUDA, where
  per-kernel launch cost would otherwise dominate a small network at batch 1 and the eager
  path it is compared with replays a CUDA graph too, and ``default`` on CPU (CUDA graphs do
  not exist there);
- compilation happens in :meth:`CompileBackend.prepare`: the first call traces and compiles
  (``details["compile_s"]``, wall seconds, synchronised), the next calls record the CUDA graph
  (``details["first_calls_s"]``); the timed loop then runs under
  ``torch.compiler.set_stance("fail_on_recompile")``, so a recompilation can never be timed
  (it raises, and the unit fails).

Correctness: after compiling, the compiled outputs on the example input are compared with the
same network run eagerly (same device, dtype, BN folding). Every output's max abs error must
stay within ``atol + rtol * max|eager output|`` (:data:`TOLERANCE`, per precision; fp32 on CUDA
uses the TF32 bound when cuDNN may use TF32, as both paths then may); beyond it, or on a NaN,
:class:`BackendError`. The errors and bounds are in ``details["check"]``.

Errors: no C++ compiler (CPU), no Triton or no Triton-capable GPU (CUDA), Python headers
missing: :class:`BackendUnavailable` ("not run") with the reason. Any other failure to compile
or run our model: :class:`BackendError` ("failed").
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import time

import torch
from torch import Tensor, nn

from ...errors import PackageMissing, import_problem
from ..timing import CudaEventTimer, Timer
from .base import (
    Backend,
    BackendError,
    BackendUnavailable,
    PrepareOptions,
    Runner,
    cuda_unavailable_reason,
    import_package,
)
from .torch_backend import LAYOUTS, TorchBackend, flat_outputs, flatten

MODES = ("auto", "default", "reduce-overhead", "max-autotune")
# (atol, rtol x max|eager output|) of compiled vs eager, per precision.
TOLERANCE = {"fp32": (1e-4, 1e-3), "fp32-tf32": (1e-3, 1e-2), "fp16": (1e-2, 2e-2)}
WARMUP_CALLS = 3  # after the compiling call: cudagraph trees warm up, then record


def resolve_mode(mode: str, device: str) -> str:
    if mode not in MODES:
        raise ValueError(f"compile mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode != "auto":
        return mode
    return "reduce-overhead" if device == "cuda" else "default"


def _cpp_compiler_reason() -> str | None:
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError as exc:
        if getattr(exc, "name", None) in ("torch._inductor.cpp_builder", "torch._inductor"):
            return None  # another torch layout: let the compile itself tell
        raise _import_failure("torch._inductor.cpp_builder", exc) from exc
    try:
        get_cpp_compiler()
    except Exception as exc:  # noqa: BLE001 - InvalidCxxCompiler, or a broken compiler
        return (f"inductor's CPU backend needs a C++ compiler and found none that works "
                f"({exc}); install g++ or set CXX")
    return None


def _import_failure(module: str, exc: ImportError) -> BaseException:
    """A missing package (PackageMissing), a broken one (PackageBroken), or ``exc`` (ours)."""
    return import_problem(module, exc, what="torch.compile")


def _triton_reason() -> str | None:
    if importlib.util.find_spec("triton") is None:
        return "inductor on CUDA generates Triton kernels and the triton package is not installed"
    if reason := import_package("triton")[1]:  # installed and broken: raises
        return reason
    try:
        from torch.utils._triton import has_triton
    except ImportError:
        return None
    if not has_triton():
        return ("triton is installed but torch finds no Triton-capable GPU backend (GPU too old "
                "for Triton, or triton does not match this torch)")
    return None


# Messages of compile failures that are the machine's, not the model's: anchored patterns, never
# bare words (inductor's own internal errors say "... is not found in name_to_buf mapping" or
# carry a compiler's "fatal error" about generated code: those are failures, not a missing tool).
_ENVIRONMENT_PATTERNS = tuple(re.compile(p) for p in (
    r"Compiler: \S+ is not found",                    # inductor's InvalidCxxCompiler message
    r"No working C\+\+ compiler",
    r"fatal error: Python\.h: No such file",          # Python headers not installed
    r"Cannot find a working triton",
    r"cannot find -l\w+",                             # a system library the linker lacks
))
_ENVIRONMENT_TYPES = {"InvalidCxxCompiler", "TritonMissing", "GPUTooOldForTriton",
                      "TritonUnavailableError"}


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and its explicit causes: ``raise ... from`` and dynamo's
    ``BackendCompilerFailed.inner_exception`` (raised ``from None``: the backend's own error);
    never the implicit context: an exception that was merely being handled when this one was
    raised (a fallback after a failed ``import triton``) did not cause it."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 8 and seen not in chain:
        chain.append(seen)
        inner = getattr(seen, "inner_exception", None)
        seen = seen.__cause__ or (inner if isinstance(inner, BaseException) else None)
    return chain


def _classify(exc: BaseException, what: str) -> Exception:
    """A compile failure as BackendUnavailable (environment) or BackendError (our model).

    Environmental: an exception type that means a missing tool (no C++ compiler, no Triton,
    a GPU too old for Triton), a ``No module named 'triton'`` ImportError, or one of the
    anchored messages above. Anything else, inductor's internal errors included, is a failure.
    """
    chain = _causes(exc)
    text = " | ".join(f"{type(e).__name__}: {e}" for e in chain)
    environmental = (
        any(type(e).__name__ in _ENVIRONMENT_TYPES for e in chain)
        or any(isinstance(e, ImportError) and getattr(e, "name", None) == "triton"
               for e in chain)
        or any(p.search(f"{e}") for e in chain for p in _ENVIRONMENT_PATTERNS))
    short = text if len(text) < 1500 else text[:1500] + " ..."
    if environmental:
        return BackendUnavailable(f"torch.compile cannot build here ({what}): {short}")
    return BackendError(f"torch.compile failed on the model ({what}): {short}")


def compare(eager: list[Tensor], compiled: list[Tensor], atol: float, rtol: float) -> dict:
    """Max abs error and bound per output; ``ok`` is False on any excess or non-finite value."""
    errors, bounds = [], []
    for want, got in zip(eager, compiled, strict=True):
        want, got = want.detach().float().cpu(), got.detach().float().cpu()
        errors.append(float((want - got).abs().max()) if want.numel() else 0.0)
        bounds.append(atol + rtol * (float(want.abs().max()) if want.numel() else 0.0))
    ok = all(e <= b for e, b in zip(errors, bounds)) and all(
        torch.isfinite(torch.tensor(errors + bounds)).tolist())
    return {"max_abs_error": errors, "bound": bounds, "atol": atol, "rtol": rtol, "ok": ok,
            "worst_ratio": max((e / b for e, b in zip(errors, bounds) if b > 0), default=0.0),
            "against": "the same BN-folded network run eagerly (same device and dtype)"}


class CompileBackend(Backend):
    name = "torch-compile"

    def __init__(self, mode: str = "auto", layout: str = "channels_last", fold_bn: bool = True,
                 freezing: bool = True, check: bool = True) -> None:
        resolve_mode(mode, "cpu")  # validates
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {list(LAYOUTS)}, not {layout!r}")
        self.mode, self.layout, self.fold_bn = mode, layout, fold_bn
        self.freezing, self.check = freezing, check

    def autotuned(self, device: str, precision: str) -> bool:
        # max-autotune benchmarks candidate kernels; on CUDA inductor also tunes its Triton
        # kernels' launch configurations by timing them. The CPU's default mode does neither.
        return device == "cuda" or resolve_mode(self.mode, device) == "max-autotune"

    def unavailable(self, device: str, precision: str) -> str | None:
        if not hasattr(torch, "compile"):
            return f"torch {torch.__version__} has no torch.compile"
        try:
            import torch._dynamo as dynamo

            if hasattr(dynamo, "is_dynamo_supported") and not dynamo.is_dynamo_supported():
                return "torch.compile (dynamo) does not support this Python/platform"
        except ImportError as exc:
            problem = _import_failure("torch._dynamo", exc)
            if isinstance(problem, PackageMissing):
                return str(problem)
            raise problem from exc
        if device == "cuda":
            return cuda_unavailable_reason() or _triton_reason()
        if precision == "fp16":
            return ("torch-compile on CPU is measured in fp32 only: its CPU fp16 convolutions "
                    "are not a deployment path")
        return _cpp_compiler_reason()

    def _tolerance(self, device: str, precision: str) -> tuple[str, tuple[float, float]]:
        if precision == "fp32" and device == "cuda" and torch.backends.cudnn.allow_tf32:
            return "fp32-tf32", TOLERANCE["fp32-tf32"]
        return precision, TOLERANCE[precision]

    def prepare(self, model: nn.Module, example: Tensor, device: str, precision: str,
                options: PrepareOptions | None = None) -> Runner:
        if reason := self.unavailable(device, precision):
            raise BackendUnavailable(reason)
        include_transfer = (options or PrepareOptions()).include_transfer
        mode = resolve_mode(self.mode, device)
        dtype = torch.float16 if precision == "fp16" else torch.float32
        memory_format = LAYOUTS[self.layout]
        eager = TorchBackend(layout=self.layout, fold_bn=self.fold_bn)._network(model, device,
                                                                                 dtype)
        if device == "cuda":
            torch.backends.cudnn.benchmark = True
        x = example.to(device, dtype).contiguous(memory_format=memory_format)
        host_in = example.to(dtype).contiguous(memory_format=memory_format)
        if device == "cuda":
            host_in = host_in.pin_memory()
        cudagraphs = device == "cuda" and mode in ("reduce-overhead", "max-autotune")
        if cudagraphs and hasattr(torch._dynamo, "mark_static_address"):
            torch._dynamo.mark_static_address(x)  # replay reads x in place: no input copy
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

        with torch.inference_mode():
            reference = [t.clone() for t in flatten(eager(x))]
        compiled = torch.compile(eager, mode=None if mode == "default" else mode,
                                 dynamic=False, fullgraph=True)
        mark_step = getattr(torch.compiler, "cudagraph_mark_step_begin", lambda: None)

        def call():
            if cudagraphs:
                mark_step()  # each call is a new inference step for cudagraph trees
            return compiled(x)

        config = {"freezing": self.freezing}
        first_calls: list[float] = []
        try:
            patch = torch._inductor.config.patch(config)
        except (AttributeError, RuntimeError):
            patch = contextlib.nullcontext()
        try:
            with patch, torch.inference_mode():
                for _ in range(1 + WARMUP_CALLS):
                    sync()
                    start = time.perf_counter()
                    out = call()
                    sync()
                    first_calls.append(time.perf_counter() - start)
                got = [t.clone() for t in flatten(out)]
                del out
        except (BackendError, BackendUnavailable):
            raise
        except Exception as exc:  # noqa: BLE001 - classified: environment or our model
            raise _classify(exc, f"mode {mode}, {device}/{precision}") from exc
        tolerance_name, (atol, rtol) = self._tolerance(device, precision)
        check = compare(reference, got, atol, rtol) if self.check else {"skipped": True}
        check["tolerance"] = tolerance_name
        if self.check and not check["ok"]:
            raise BackendError(f"torch.compile (mode {mode}) disagrees with eager on "
                               f"{device}/{precision} beyond atol {atol} + rtol {rtol} x "
                               f"max|output|: max abs errors {check['max_abs_error']} vs bounds "
                               f"{check['bound']}")
        del reference, got
        stance = getattr(torch.compiler, "set_stance", None)
        no_recompile = ((lambda: stance("fail_on_recompile")) if stance
                        else contextlib.nullcontext)

        def run() -> None:
            if include_transfer:
                x.copy_(host_in, non_blocking=True)
            with no_recompile(), torch.inference_mode():
                call()

        def infer(new: Tensor) -> list[Tensor]:
            """The compiled graph's outputs for ``new`` (same shape as the example: no
            recompile), host FP32 in the exported graph's order, for the accuracy check."""
            x.copy_(new.to(device, dtype).contiguous(memory_format=memory_format))
            with no_recompile(), torch.inference_mode():
                out = flat_outputs(call())
            sync()
            return out

        details = {"layout": self.layout, "bn_folded": self.fold_bn, "dtype": str(dtype),
                   "mode": f"torch.compile mode={mode}", "compile_mode": mode,
                   "requested_mode": self.mode, "freezing": self.freezing, "dynamic": False,
                   "fullgraph": True, "cuda_graphs": cudagraphs,
                   "compile_s": round(first_calls[0], 3),
                   "first_calls_s": [round(t, 4) for t in first_calls[1:]],
                   "check": check, "include_transfer": include_transfer,
                   "threads": torch.get_num_threads(), "torch": torch.__version__}
        if device == "cuda":
            details["gpu"] = torch.cuda.get_device_name(0)
            details["cudnn_tf32"] = torch.backends.cudnn.allow_tf32 and dtype == torch.float32
            return Runner(run, CudaEventTimer(torch.cuda.current_stream()), details,
                          torch.cuda.synchronize, infer=infer)
        return Runner(run, Timer(), details, infer=infer)
