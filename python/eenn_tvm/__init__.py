"""eenn-tvm: turn a trained ONNX network into an early-exit network and deploy it with Apache TVM."""

from eenn_tvm.errors import EennError

__version__ = "0.1.0"

__all__ = ["EennError", "__version__"]
