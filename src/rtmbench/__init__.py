"""rtmbench: verify RTMDet's published model-zoo table on your hardware and software."""

__version__ = "0.1.0"
