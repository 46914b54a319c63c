"""API-surface FAKE of the ``tensorrt`` 11.x Python package (see ``_tensorrt_api``): strongly
typed networks only. ``BuilderFlag`` has none of the removed weak-typing flags (FP16, BF16, INT8,
FP8, INT4, FP4, OBEY/PREFER_PRECISION_CONSTRAINTS, DIRECT_IO), so asking for one raises
AttributeError as the real 11.x bindings do ("Removed Python APIs and Replacements", NVIDIA's
TensorRT 10.x -> 11.x migration guide); ``NetworkDefinitionCreationFlag`` has no
EXPLICIT_BATCH; STRONGLY_TYPED is accepted and ignored. Not TensorRT."""

from ._tensorrt_api import FakeVersion, install

install(globals(), FakeVersion(
    version="11.4.0.22",
    builder_flags=("DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32",
                   "SPARSE_WEIGHTS"),
    creation_flags=("STRONGLY_TYPED", "PREFER_AOT_PYTHON_PLUGINS", "PREFER_JIT_PYTHON_PLUGINS"),
    always_strongly_typed=True))
