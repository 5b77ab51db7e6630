"""The kernel library in runtime/eenn_nn.h as a code generator sees it: one class per kernel holding the fields of
its C parameter struct, the C that declares them as `static const` data (flash) and calls the kernel, and the
scratch bytes the call needs (so a memory planner can place them like any tensor).

Layouts are the library's: activations NHWC (batch 1), convolution weights OHWI, depthwise weights HWC (as
[1, kh, kw, channels]), dense weights [out, in].
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from eenn_tvm.quantized.reference import INT8_MAX, INT8_MIN

RUNTIME = Path(__file__).parent / "runtime"
HEADER = "eenn_nn.h"
BLOCK_COLUMNS = 4  # output pixels per im2col block of the int8 convolution (nn_s8_support.h)
FLOAT_TILE = 4  # output pixels per im2col block of the float32 convolution (nn_f32_conv.c)
ADD_TABLE_FROM = 512  # elements from which an int8 add tabulates its inputs' rescaled values (nn_s8_elementwise.c)


_S8 = ("nn_s8_support.c",)
# The C files (in runtime/) each function needs: a firmware compiles only those of the kernels it calls.
FUNCTION_SOURCES = {
    "eenn_conv_f32": ("nn_f32_conv.c",),
    "eenn_dense_f32": ("nn_f32_conv.c",),
    "eenn_depthwise_f32": ("nn_f32_depthwise.c",),
    "eenn_avg_pool_f32": ("nn_f32_pool.c",),
    "eenn_max_pool_f32": ("nn_f32_pool.c",),
    "eenn_add_f32": ("nn_f32_elementwise.c",),
    "eenn_conv_s8": ("nn_s8_conv.c", "nn_s8_matmul.c", *_S8),
    "eenn_dense_s8": ("nn_s8_conv.c", "nn_s8_matmul.c", *_S8),
    "eenn_depthwise_s8": ("nn_s8_depthwise.c", *_S8),
    "eenn_avg_pool_s8": ("nn_s8_pool.c", *_S8),
    "eenn_max_pool_s8": ("nn_s8_pool.c", *_S8),
    "eenn_add_s8": ("nn_s8_elementwise.c", *_S8),
    "eenn_rescale_s8": ("nn_s8_elementwise.c", *_S8),
    "eenn_quantize_s8": ("nn_s8_elementwise.c", *_S8),
    "eenn_dequantize_s8": ("nn_s8_elementwise.c", *_S8),
}


def sources(functions: set[str] | None = None) -> list[Path]:
    """The C files of the library (besides the TVM-kernel runtime, eenn_runtime.c): those `functions` need, or all."""
    if functions is None:
        return sorted(RUNTIME.glob("nn_*.c"))
    return sorted({RUNTIME / name for f in functions for name in FUNCTION_SOURCES[f]})


@dataclass(frozen=True)
class Window:
    """eenn_window_t: a kernel sliding over an NHWC input; bottom and right padding follow from the output size."""

    input_height: int
    input_width: int
    input_channels: int
    output_height: int
    output_width: int
    output_channels: int
    kernel_height: int
    kernel_width: int
    stride_height: int = 1
    stride_width: int = 1
    dilation_height: int = 1
    dilation_width: int = 1
    pad_top: int = 0
    pad_left: int = 0

    @classmethod
    def sliding(cls, input_hwc, kernel, output_channels=None, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1)):
        """The window of a convolution or pool; pads are (top, left, bottom, right) as in the reference."""
        (h, w, c), (kh, kw), (sh, sw), (dh, dw) = input_hwc, kernel, strides, dilations
        top, left, bottom, right = pads
        oh = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
        ow = (w + left + right - dw * (kw - 1) - 1) // sw + 1
        return cls(h, w, c, oh, ow, output_channels or c, kh, kw, sh, sw, dh, dw, top, left)

    @property
    def depth(self) -> int:
        return self.kernel_height * self.kernel_width * self.input_channels

    @property
    def input_size(self) -> int:
        return self.input_height * self.input_width * self.input_channels

    @property
    def output_size(self) -> int:
        return self.output_height * self.output_width * self.output_channels

    def c(self) -> str:
        return _braces(astuple(self))


@dataclass(frozen=True)
class Output:
    """eenn_output_t: out = clamp(y + zero_point, min, max)."""

    zero_point: int
    min: int = INT8_MIN
    max: int = INT8_MAX

    def c(self) -> str:
        return _braces(astuple(self))


@dataclass(frozen=True)
class CArray:
    ctype: str
    items: list[str]

    def declaration(self, name: str) -> str:
        return f"static const {self.ctype} {name}[{len(self.items)}] EENN_ALIGNED(4) = {{{_wrapped(self.items)}}};"


class Kernel:
    """A call of one library function: its struct, the arrays the struct points at, inputs, output, scratch."""

    function: ClassVar[str]
    struct: ClassVar[str]
    takes_scratch: ClassVar[bool] = False

    def arrays(self) -> dict[str, CArray]:
        return {}

    def initializer(self, symbol: str) -> str:
        raise NotImplementedError

    def input_specs(self) -> list[tuple[str, int]]:
        """(dtype, elements) of each input tensor."""
        raise NotImplementedError

    def output_spec(self) -> tuple[str, int]:
        raise NotImplementedError

    def scratch_bytes(self) -> int:
        return 0

    def macs(self) -> int:
        return 0

    def summary(self) -> str:
        """What the call computes, in one line (the driver's comment above it)."""
        return f"{self.function}: {self.input_specs()[0][1]} elements{_clamp_text(self)}"

    def declaration(self, symbol: str, static: bool = True) -> str:
        """The C of the parameters: arrays (static const), then the struct (static const, or const with external
        linkage where another file calls the kernel)."""
        lines = [a.declaration(f"{symbol}_{name}") for name, a in self.arrays().items()]
        storage = "static const" if static else "const"
        return "\n".join([*lines, f"{storage} {self.struct} {symbol} = {self.initializer(symbol)};"])

    def call(self, symbol: str, inputs: list[str], output: str, scratch: str = "NULL") -> str:
        args = [f"&{symbol}", *inputs, output] + ([scratch] if self.takes_scratch else [])
        return f"{self.function}({', '.join(args)});"


@dataclass
class WindowKernel(Kernel):
    """A kernel sliding a window over one NHWC tensor of `dtype`: convolutions and pools."""

    window: Window
    dtype: ClassVar[str]

    def input_specs(self):
        return [(self.dtype, self.window.input_size)]

    def output_spec(self):
        return (self.dtype, self.window.output_size)

    def summary(self) -> str:
        w = self.window
        shapes = (
            f"{w.input_height}x{w.input_width}x{w.input_channels} -> "
            f"{w.output_height}x{w.output_width}x{w.output_channels}"
        )
        window = f"{w.kernel_height}x{w.kernel_width} stride {w.stride_height}x{w.stride_width}"
        return f"{self.function}: {window}, {shapes}{_clamp_text(self)}"


@dataclass
class ElementwiseKernel(Kernel):
    """A kernel over `inputs` tensors of `size` elements of `dtype`."""

    size: int
    dtype: ClassVar[str]
    inputs: ClassVar[int] = 1

    def input_specs(self):
        return [(self.dtype, self.size)] * self.inputs

    def output_spec(self):
        return (self.dtype, self.size)


@dataclass
class DenseKernel(Kernel):
    """A fully connected layer: weights [out, in]."""

    weights: np.ndarray
    bias: np.ndarray | None
    dtype: ClassVar[str]

    def input_specs(self):
        return [(self.dtype, self.weights.shape[1])]

    def output_spec(self):
        return (self.dtype, self.weights.shape[0])

    def macs(self) -> int:
        return int(self.weights.size)

    def summary(self) -> str:
        return f"{self.function}: {self.weights.shape[1]} -> {self.weights.shape[0]} features{_clamp_text(self)}"


@dataclass
class ConvS8(WindowKernel):
    """eenn_conv_s8 / eenn_depthwise_s8. weights OHWI int8 ([1, kh, kw, channels] when depthwise)."""

    input_zero_point: int
    weights: np.ndarray
    bias: np.ndarray | None
    multipliers: np.ndarray
    shifts: np.ndarray
    output: Output
    depthwise: bool = False
    struct: ClassVar[str] = "eenn_conv_s8_t"
    dtype: ClassVar[str] = "int8"
    takes_scratch: ClassVar[bool] = True

    @property
    def function(self) -> str:
        return "eenn_depthwise_s8" if self.depthwise else "eenn_conv_s8"

    def arrays(self) -> dict[str, CArray]:
        return _weights_bias_scales(self.weights, self.bias, self.multipliers, self.shifts)

    def initializer(self, symbol: str) -> str:
        return _braces([self.window.c(), self.input_zero_point, *_pointers(symbol, self.bias), self.output.c()])

    def scratch_bytes(self) -> int:
        if self.depthwise:  # a record of 12 bytes per 4 channels and tap: weights in int16 pairs, tap offset
            return self.window.input_channels // 4 * self.window.kernel_height * self.window.kernel_width * 12
        depth = self.window.depth
        staging = _round4(depth) if self.window.input_channels % 4 else 0
        return BLOCK_COLUMNS * depth * 2 + staging

    def macs(self) -> int:
        return _conv_macs(self.window, self.depthwise)


@dataclass
class DenseS8(DenseKernel):
    input_zero_point: int
    multipliers: np.ndarray
    shifts: np.ndarray
    output: Output
    function: ClassVar[str] = "eenn_dense_s8"
    struct: ClassVar[str] = "eenn_dense_s8_t"
    takes_scratch: ClassVar[bool] = True
    dtype: ClassVar[str] = "int8"

    def arrays(self) -> dict[str, CArray]:
        return _weights_bias_scales(self.weights, self.bias, self.multipliers, self.shifts)

    rows: int = 1
    row_stride: int | None = None  # elements between rows (None: input_features, rows one after the other)
    feature_stride: int = 1  # elements between a row's values (channels: a row per channel of an NHWC map)

    def initializer(self, symbol: str) -> str:
        out_features, in_features = self.weights.shape
        strides = [self.row_stride or in_features, self.feature_stride]
        fields = [in_features, out_features, self.input_zero_point, *_pointers(symbol, self.bias), self.output.c()]
        return _braces([*fields, self.rows, *strides])

    def input_specs(self):
        return [(self.dtype, self.rows * self.weights.shape[1])]

    def output_spec(self):
        return (self.dtype, self.rows * self.weights.shape[0])

    def macs(self) -> int:
        return self.rows * int(self.weights.size)

    def scratch_bytes(self) -> int:
        """As eenn_dense_s8_scratch_bytes: rows gathered (unless in place), then their int16 block."""
        in_features = self.weights.shape[1]
        columns = min(self.rows, BLOCK_COLUMNS)
        in_place = self.feature_stride == 1 and (self.rows == 1 or (self.row_stride or in_features) == in_features)
        return (0 if in_place else _round4(columns * in_features)) + _round4(2 * columns * in_features)


@dataclass
class AvgPoolS8(WindowKernel):
    input_zero_point: int
    scale: tuple[int, int]  # (M, r)
    output: Output
    function: ClassVar[str] = "eenn_avg_pool_s8"
    struct: ClassVar[str] = "eenn_avg_pool_s8_t"
    dtype: ClassVar[str] = "int8"

    weight: int = 1  # every tap's weight: a head's pooling matrix holds one value on each window

    def initializer(self, symbol: str) -> str:
        return _braces([self.window.c(), self.input_zero_point, _braces(self.scale), self.output.c(), self.weight])


@dataclass
class MaxPoolS8(WindowKernel):
    min: int = INT8_MIN
    max: int = INT8_MAX
    function: ClassVar[str] = "eenn_max_pool_s8"
    struct: ClassVar[str] = "eenn_max_pool_s8_t"
    dtype: ClassVar[str] = "int8"

    def initializer(self, symbol: str) -> str:
        return _braces([self.window.c(), self.min, self.max])


@dataclass
class AddS8(ElementwiseKernel):
    a_zero_point: int
    b_zero_point: int
    a_scale: tuple[int, int]
    b_scale: tuple[int, int]
    output_scale: tuple[int, int]
    output: Output
    function: ClassVar[str] = "eenn_add_s8"
    struct: ClassVar[str] = "eenn_add_s8_t"
    takes_scratch: ClassVar[bool] = True
    dtype: ClassVar[str] = "int8"
    inputs: ClassVar[int] = 2

    def initializer(self, symbol: str) -> str:
        scales = [_braces(s) for s in (self.a_scale, self.b_scale, self.output_scale)]
        return _braces([self.size, self.a_zero_point, self.b_zero_point, *scales, self.output.c()])

    def scratch_bytes(self) -> int:
        return 2 * 256 * 4 if self.size >= ADD_TABLE_FROM else 0


@dataclass
class RescaleS8(ElementwiseKernel):
    input_zero_point: int
    scale: tuple[int, int]
    output: Output
    function: ClassVar[str] = "eenn_rescale_s8"
    struct: ClassVar[str] = "eenn_rescale_s8_t"
    dtype: ClassVar[str] = "int8"

    def initializer(self, symbol: str) -> str:
        return _braces([self.size, self.input_zero_point, _braces(self.scale), self.output.c()])


@dataclass
class QuantizeS8(Kernel):
    """float32 -> int8 (quantize) or, with dequantize, int8 -> float32."""

    size: int
    scale: float
    zero_point: int
    dequantize: bool = False
    struct: ClassVar[str] = "eenn_quantize_t"

    @property
    def function(self) -> str:
        return "eenn_dequantize_s8" if self.dequantize else "eenn_quantize_s8"

    def initializer(self, symbol: str) -> str:
        return _braces([self.size, c_float(self.scale), self.zero_point])

    def input_specs(self):
        return [("int8" if self.dequantize else "float32", self.size)]

    def output_spec(self):
        return ("float32" if self.dequantize else "int8", self.size)


@dataclass
class ConvF32(WindowKernel):
    """eenn_conv_f32 / eenn_depthwise_f32, weights laid out as ConvS8's."""

    weights: np.ndarray
    bias: np.ndarray | None
    min: float = -math.inf
    max: float = math.inf
    depthwise: bool = False
    struct: ClassVar[str] = "eenn_conv_f32_t"
    dtype: ClassVar[str] = "float32"

    @property
    def function(self) -> str:
        return "eenn_depthwise_f32" if self.depthwise else "eenn_conv_f32"

    @property
    def takes_scratch(self) -> bool:
        return not self.depthwise

    def arrays(self) -> dict[str, CArray]:
        return _weights_bias(self.weights, self.bias)

    def initializer(self, symbol: str) -> str:
        pointers = _pointers(symbol, self.bias)[:2]
        return _braces([self.window.c(), *pointers, c_float(self.min), c_float(self.max)])

    def scratch_bytes(self) -> int:
        w = self.window
        in_place = (w.kernel_height, w.kernel_width, w.pad_top, w.pad_left) == (1, 1, 0, 0) and (
            (w.output_height - 1) * w.stride_height < w.input_height
            and (w.output_width - 1) * w.stride_width < w.input_width
        )
        return 0 if self.depthwise or in_place else FLOAT_TILE * w.depth * 4

    def macs(self) -> int:
        return _conv_macs(self.window, self.depthwise)


@dataclass
class DenseF32(DenseKernel):
    min: float = -math.inf
    max: float = math.inf
    function: ClassVar[str] = "eenn_dense_f32"
    struct: ClassVar[str] = "eenn_dense_f32_t"
    dtype: ClassVar[str] = "float32"

    def arrays(self) -> dict[str, CArray]:
        return _weights_bias(self.weights, self.bias)

    def initializer(self, symbol: str) -> str:
        out_features, in_features = self.weights.shape
        pointers = _pointers(symbol, self.bias)[:2]
        return _braces([in_features, out_features, *pointers, c_float(self.min), c_float(self.max)])


@dataclass
class PoolF32(WindowKernel):
    average: bool  # else max
    count_padding: bool = False
    min: float = -math.inf
    max: float = math.inf
    struct: ClassVar[str] = "eenn_pool_f32_t"
    dtype: ClassVar[str] = "float32"

    @property
    def function(self) -> str:
        return "eenn_avg_pool_f32" if self.average else "eenn_max_pool_f32"

    def initializer(self, symbol: str) -> str:
        return _braces([self.window.c(), int(self.count_padding), c_float(self.min), c_float(self.max)])


@dataclass
class AddF32(ElementwiseKernel):
    min: float = -math.inf
    max: float = math.inf
    function: ClassVar[str] = "eenn_add_f32"
    struct: ClassVar[str] = "eenn_add_f32_t"
    dtype: ClassVar[str] = "float32"
    inputs: ClassVar[int] = 2

    def initializer(self, symbol: str) -> str:
        return _braces([self.size, c_float(self.min), c_float(self.max)])


def _clamp_text(kernel: Kernel) -> str:
    """A float32 kernel's fused activation, as a comment says it."""
    lo, hi = getattr(kernel, "min", None), getattr(kernel, "max", None)
    if not isinstance(lo, float) or (lo, hi) == (-math.inf, math.inf):
        return ""
    return ", ReLU" if (lo, hi) == (0.0, math.inf) else f", clamped to [{lo:g}, {hi:g}]"


def _conv_macs(window: Window, depthwise: bool) -> int:
    per_output = window.kernel_height * window.kernel_width
    return window.output_size * per_output * (1 if depthwise else window.input_channels)


def _weights_bias_scales(weights, bias, multipliers, shifts) -> dict[str, CArray]:
    arrays = _weights_bias(weights, bias)
    arrays["scales"] = CArray("eenn_scale_t", [_braces(p) for p in zip(np.ravel(multipliers), np.ravel(shifts))])
    return arrays


def _weights_bias(weights, bias) -> dict[str, CArray]:
    arrays = {"weights": c_array(weights)}
    if bias is not None:
        arrays["bias"] = c_array(bias)
    return arrays


def _pointers(symbol: str, bias) -> list[str]:
    """weights, bias (or NULL), scales: the pointer fields every weighted kernel's struct has, in that order."""
    return [f"{symbol}_weights", f"{symbol}_bias" if bias is not None else "NULL", f"{symbol}_scales"]


def c_array(values: np.ndarray) -> CArray:
    """A flat C array of int8, int32 or float32 values."""
    values = np.asarray(values).ravel()
    if values.dtype == np.float32:
        return CArray("float", [c_float(v) for v in values])
    ctype = {np.dtype(np.int8): "int8_t", np.dtype(np.int32): "int32_t"}[values.dtype]
    return CArray(ctype, [str(int(v)) for v in values])


def c_float(v: float) -> str:
    """A float32 as a C literal that reads back as the same value."""
    if math.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    text = f"{float(np.float32(v)):.9g}"
    return text + ("f" if any(ch in text for ch in ".e") else ".0f")


def _braces(items) -> str:
    return "{" + ", ".join(str(int(i)) if isinstance(i, (int, np.integer)) else str(i) for i in items) + "}"


def _wrapped(items: list[str], per_line: int = 16) -> str:
    return ",\n  ".join(", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line))


def _round4(n: int) -> int:
    return -(-n // 4) * 4
