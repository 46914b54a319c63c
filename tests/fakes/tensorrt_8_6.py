"""API-surface FAKE of the ``tensorrt`` 8.6 Python package (see ``_tensorrt_api``): weak
typing only (``BuilderFlag.FP16``), no ``STRONGLY_TYPED``, and an ONNX parser that needs an
``EXPLICIT_BATCH`` network. Not TensorRT: nothing here measures it."""

from ._tensorrt_api import FakeVersion, install

install(globals(), FakeVersion(
    version="8.6.1.6",
    builder_flags=("FP16", "INT8", "DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE",
                   "TF32", "SPARSE_WEIGHTS", "OBEY_PRECISION_CONSTRAINTS",
                   "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO", "FP8"),
    creation_flags=("EXPLICIT_BATCH", "EXPLICIT_PRECISION"),
    parser_needs_explicit_batch=True))
