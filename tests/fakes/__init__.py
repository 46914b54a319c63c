"""API-surface fakes of packages that cannot be installed here (TensorRT, onnxruntime-gpu's
providers, NVML): each mimics the calls rtmbench makes, nothing more, and fails the way the real
one does where rtmbench could get it wrong (a removed flag, a missing provider). They are test
doubles: nothing measured through them is a measurement of the real thing."""
