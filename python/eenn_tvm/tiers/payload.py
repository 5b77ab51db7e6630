"""The bytes between tiers: a hand-over frame (a live tensor for the next tier) and an answer frame.

Both are fixed little-endian headers (docs/tiers.md has the tables); a hand-over carries the raw tensor bytes
after its header. `decode_hand_over` takes a frame only if it is exactly what the receiving segment expects and
raises `FrameError` (with a `Reject` reason that the answer frame carries back) for anything else: nothing is
ever unpickled or evaluated, and no input makes it raise anything but `FrameError`.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

import numpy as np

HAND_OVER_MAGIC = b"EENH"
ANSWER_MAGIC = b"EENA"
FORMAT_VERSION = 1
MAX_RANK = 6
REQUEST_ID_BYTES = 16
DEPLOYMENT_ID_BYTES = 8

# magic, version, dtype code, rank, flags, deployment id, request id, segment, reserved, shape[6],
# scale, zero point, payload bytes, CRC-32 of header (this field zero) and payload.
_HAND_OVER = struct.Struct("<4sBBBB8s16sHH6IfiII")
HAND_OVER_HEADER_BYTES = _HAND_OVER.size  # 76
_CRC_OFFSET = HAND_OVER_HEADER_BYTES - 4

# magic, version, status, reason, flags, deployment id, request id, class, exit, tier, reserved, confidence.
_ANSWER = struct.Struct("<4sBBBB8s16sihBBf")
ANSWER_BYTES = _ANSWER.size  # 44

QUANTISED = 0x01  # hand-over flag: the tensor is integer with a scale and zero point
DEGRADED = 0x01  # answer flag: the device's last exit answered because the next tier did not in time

DTYPES = {1: np.dtype("<f4"), 2: np.dtype("i1"), 3: np.dtype("u1"), 4: np.dtype("<i2"), 5: np.dtype("<i4")}
_CODES = {dtype: code for code, dtype in DTYPES.items()}


class Reject(enum.IntEnum):
    """Why a tier refused a frame; the number travels in the answer frame."""

    TRUNCATED = 1  # shorter than its header, or than the payload its header announces
    MAGIC = 2  # not a hand-over frame
    VERSION = 3  # a format version this tier does not read
    RESERVED = 4  # a reserved field or flag is not zero
    CHECKSUM = 5  # the CRC-32 does not match: the bytes were damaged on the way
    DEPLOYMENT = 6  # made for another deployment (other plan, thresholds or placement)
    SEGMENT = 7  # not for the segment this tier starts with
    DTYPE = 8
    SHAPE = 9  # rank or dimensions
    QUANTISATION = 10  # scale or zero point differ, or quantised where float is expected (or the reverse)
    LENGTH = 11  # the announced payload length is not the tensor's size
    TRAILING = 12  # bytes after the payload
    REQUEST_REUSED = 13  # a request id seen before with different bytes
    FAILED = 14  # the tier could not run its segments on it


_REASONS = {int(r) for r in Reject}


class FrameError(ValueError):
    def __init__(self, reason: Reject, detail: str):
        super().__init__(f"{reason.name.lower()}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Quantisation:
    scale: float
    zero_point: int


@dataclass(frozen=True)
class Expected:
    """What a tier's first segment takes: the frame must match every field."""

    deployment_id: bytes
    segment: int
    dtype: np.dtype
    shape: tuple[int, ...]
    quantisation: Quantisation | None = None

    @property
    def payload_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


@dataclass(frozen=True)
class HandOver:
    request_id: bytes
    segment: int
    tensor: np.ndarray  # read-only, shaped as expected


def encode_hand_over(
    deployment_id: bytes,
    request_id: bytes,
    segment: int,
    tensor: np.ndarray,
    quantisation: Quantisation | None = None,
) -> bytes:
    tensor = np.asarray(tensor)
    dtype = tensor.dtype.newbyteorder("<")
    if dtype not in _CODES:
        raise ValueError(f"no dtype code for {tensor.dtype}")
    if tensor.ndim > MAX_RANK or len(deployment_id) != DEPLOYMENT_ID_BYTES or len(request_id) != REQUEST_ID_BYTES:
        raise ValueError("rank above 6, or a deployment or request id of the wrong length")
    payload = np.ascontiguousarray(tensor, dtype=dtype).tobytes()
    shape = list(tensor.shape) + [0] * (MAX_RANK - tensor.ndim)
    q = quantisation or Quantisation(0.0, 0)
    header = _HAND_OVER.pack(
        HAND_OVER_MAGIC,
        FORMAT_VERSION,
        _CODES[dtype],
        tensor.ndim,
        QUANTISED if quantisation else 0,
        deployment_id,
        request_id,
        segment,
        0,
        *shape,
        q.scale,
        q.zero_point,
        len(payload),
        0,
    )
    crc = zlib.crc32(payload, zlib.crc32(header))
    return header[:_CRC_OFFSET] + struct.pack("<I", crc) + payload


def decode_hand_over(frame: bytes, expected: Expected) -> HandOver:
    """The frame's tensor, or FrameError naming the first thing that is not as `expected`."""
    if len(frame) < HAND_OVER_HEADER_BYTES:
        raise FrameError(Reject.TRUNCATED, f"{len(frame)} bytes, shorter than the {HAND_OVER_HEADER_BYTES}-byte header")
    fields = _HAND_OVER.unpack_from(frame)
    magic, version, code, rank, flags, deployment, request, segment, reserved = fields[:9]
    shape_field, (scale, zero_point, length, crc) = fields[9 : 9 + MAX_RANK], fields[9 + MAX_RANK :]
    if magic != HAND_OVER_MAGIC:
        raise FrameError(Reject.MAGIC, f"starts with {magic!r}, not {HAND_OVER_MAGIC!r}")
    if version != FORMAT_VERSION:
        raise FrameError(Reject.VERSION, f"format version {version}; this tier reads {FORMAT_VERSION}")
    body = len(frame) - HAND_OVER_HEADER_BYTES
    if body < length:
        raise FrameError(Reject.TRUNCATED, f"{body} payload bytes of the {length} announced")
    if body > length:
        raise FrameError(Reject.TRAILING, f"{body - length} bytes after the {length}-byte payload")
    actual = zlib.crc32(memoryview(frame)[HAND_OVER_HEADER_BYTES:], zlib.crc32(bytes(frame[:_CRC_OFFSET]) + bytes(4)))
    if actual != crc:
        raise FrameError(Reject.CHECKSUM, f"CRC-32 {actual:08x}, the header says {crc:08x}")
    if reserved or flags & ~QUANTISED or rank > MAX_RANK or any(shape_field[rank:]):
        raise FrameError(Reject.RESERVED, "a reserved field, flag or unused dimension is not zero")
    if deployment != expected.deployment_id:
        raise FrameError(
            Reject.DEPLOYMENT, f"for deployment {deployment.hex()}, this is {expected.deployment_id.hex()}"
        )
    if segment != expected.segment:
        raise FrameError(Reject.SEGMENT, f"for segment_{segment}, this tier starts at segment_{expected.segment}")
    dtype = DTYPES.get(code)
    if dtype != expected.dtype:
        raise FrameError(Reject.DTYPE, f"dtype code {code} ({dtype}), expected {expected.dtype}")
    shape = tuple(shape_field[:rank])
    if shape != expected.shape:
        raise FrameError(Reject.SHAPE, f"shape {list(shape)}, expected {list(expected.shape)}")
    quantisation = Quantisation(scale, zero_point) if flags & QUANTISED else None
    if quantisation != _as_sent(expected.quantisation):
        raise FrameError(Reject.QUANTISATION, f"quantisation {quantisation}, expected {expected.quantisation}")
    if length != expected.payload_bytes:
        raise FrameError(Reject.LENGTH, f"a {length}-byte payload for a {expected.payload_bytes}-byte tensor")
    tensor = np.frombuffer(frame, dtype, offset=HAND_OVER_HEADER_BYTES).reshape(shape)
    return HandOver(request, segment, tensor)


def _as_sent(q: Quantisation | None) -> Quantisation | None:
    """The scale as the header holds it (float32)."""
    return q and Quantisation(float(np.float32(q.scale)), q.zero_point)


def peek_request_id(frame: bytes) -> bytes | None:
    """The request id of a frame that failed to decode, if its header gets that far (for the error reply)."""
    if len(frame) < HAND_OVER_HEADER_BYTES or frame[:4] != HAND_OVER_MAGIC:
        return None
    return bytes(frame[16:32])


@dataclass(frozen=True)
class Answer:
    deployment_id: bytes
    request_id: bytes
    class_index: int  # -1 when rejected
    exit_index: int  # -1 when rejected
    confidence: float
    tier: int  # index in the plan's deployment tiers of the tier that answered
    degraded: bool = False
    rejected: Reject | None = None


def encode_answer(answer: Answer) -> bytes:
    return _ANSWER.pack(
        ANSWER_MAGIC,
        FORMAT_VERSION,
        0 if answer.rejected is None else 1,
        0 if answer.rejected is None else int(answer.rejected),
        DEGRADED if answer.degraded else 0,
        answer.deployment_id,
        answer.request_id,
        answer.class_index,
        answer.exit_index,
        answer.tier,
        0,
        answer.confidence,
    )


def decode_answer(frame: bytes) -> Answer:
    if len(frame) != ANSWER_BYTES:
        raise FrameError(Reject.LENGTH, f"an answer is {ANSWER_BYTES} bytes, got {len(frame)}")
    magic, version, status, reason, flags, deployment, request, klass, exit_index, tier, reserved, confidence = (
        _ANSWER.unpack(frame)
    )
    if magic != ANSWER_MAGIC:
        raise FrameError(Reject.MAGIC, f"starts with {magic!r}, not {ANSWER_MAGIC!r}")
    if version != FORMAT_VERSION:
        raise FrameError(Reject.VERSION, f"answer format version {version}; this reads {FORMAT_VERSION}")
    if status not in (0, 1) or reserved or flags & ~DEGRADED or (status == 1) != (reason in _REASONS):
        raise FrameError(Reject.RESERVED, "an unknown status, reason or flag")
    return Answer(
        deployment,
        request,
        klass,
        exit_index,
        confidence,
        tier,
        bool(flags & DEGRADED),
        Reject(reason) if status == 1 else None,
    )
