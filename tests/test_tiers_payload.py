"""The frames between tiers (docs/tiers.md): a hand-over decodes only when it is exactly what the receiving segment
expects, every other frame is a FrameError naming why, and nothing else is ever raised."""

import contextlib
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eenn_tvm.tiers.payload import (
    ANSWER_BYTES,
    HAND_OVER_HEADER_BYTES,
    Answer,
    Expected,
    FrameError,
    Quantisation,
    Reject,
    decode_answer,
    decode_hand_over,
    encode_answer,
    encode_hand_over,
)

DEPLOYMENT = bytes.fromhex("0123456789abcdef")
REQUEST = bytes(range(16))
SHAPE = (1, 4, 3, 3)
EXPECTED = Expected(DEPLOYMENT, 2, np.dtype("<f4"), SHAPE)
TENSOR = np.arange(36, dtype=np.float32).reshape(SHAPE) / 7


def frame(tensor=TENSOR, deployment=DEPLOYMENT, segment=2, quantisation=None) -> bytes:
    return encode_hand_over(deployment, REQUEST, segment, tensor, quantisation)


def with_field(data: bytes, offset: int, fmt: str, *values) -> bytes:
    """`data` with one header field changed and the CRC made right again: only that field is wrong."""
    changed = bytearray(data)
    struct.pack_into(fmt, changed, offset, *values)
    struct.pack_into("<I", changed, HAND_OVER_HEADER_BYTES - 4, 0)
    crc = zlib.crc32(bytes(changed[HAND_OVER_HEADER_BYTES:]), zlib.crc32(bytes(changed[:HAND_OVER_HEADER_BYTES])))
    struct.pack_into("<I", changed, HAND_OVER_HEADER_BYTES - 4, crc)
    return bytes(changed)


def reason(data: bytes, expected=EXPECTED) -> Reject:
    with pytest.raises(FrameError) as err:
        decode_hand_over(data, expected)
    return err.value.reason


def test_a_hand_over_round_trips_bit_for_bit():
    decoded = decode_hand_over(frame(), EXPECTED)
    assert decoded.request_id == REQUEST and decoded.segment == 2
    assert decoded.tensor.dtype == np.float32 and decoded.tensor.shape == SHAPE
    assert decoded.tensor.tobytes() == TENSOR.tobytes()
    assert len(frame()) == HAND_OVER_HEADER_BYTES + TENSOR.nbytes


def test_a_quantised_hand_over_carries_its_scale_and_zero_point():
    q = Quantisation(0.05, -3)
    tensor = np.arange(-18, 18, dtype=np.int8).reshape(SHAPE)
    expected = Expected(DEPLOYMENT, 2, np.dtype("i1"), SHAPE, q)
    assert decode_hand_over(frame(tensor, quantisation=q), expected).tensor.tobytes() == tensor.tobytes()
    assert reason(frame(tensor, quantisation=Quantisation(0.05, -2)), expected) == Reject.QUANTISATION
    assert reason(frame(tensor), expected) == Reject.QUANTISATION  # not marked quantised


@pytest.mark.parametrize(
    "bad, why",
    [
        (frame()[:10], Reject.TRUNCATED),  # shorter than the header
        (frame()[:-1], Reject.TRUNCATED),  # one payload byte missing
        (frame() + b"\0", Reject.TRAILING),
        (b"XXXX" + frame()[4:], Reject.MAGIC),
        (with_field(frame(), 4, "<B", 2), Reject.VERSION),
        (with_field(frame(), 34, "<H", 1), Reject.RESERVED),  # the reserved field after the segment
        (with_field(frame(), 7, "<B", 0x80), Reject.RESERVED),  # an unknown flag
        (frame()[:-1] + bytes([frame()[-1] ^ 1]), Reject.CHECKSUM),  # one bit flipped on the way
        (frame(deployment=bytes(8)), Reject.DEPLOYMENT),
        (frame(segment=1), Reject.SEGMENT),
        (frame(TENSOR.astype(np.int32)), Reject.DTYPE),
        (frame(TENSOR.reshape(1, 4, 9)), Reject.SHAPE),  # rank
        (frame(np.zeros((1, 4, 3, 4), np.float32)), Reject.SHAPE),
        (with_field(frame(), 5, "<B", 9), Reject.DTYPE),  # a dtype code that does not exist
    ],
)
def test_each_kind_of_bad_hand_over_is_rejected_with_its_reason(bad, why):
    assert reason(bad) == why


def test_a_payload_length_that_is_not_the_tensors_size_is_rejected():
    # One float announced and sent, under the expected rank and shape: consistent in itself, not the tensor.
    one = encode_hand_over(DEPLOYMENT, REQUEST, 2, np.zeros(1, np.float32))
    assert reason(with_field(with_field(one, 6, "<B", 4), 36, "<4I", *SHAPE)) == Reject.LENGTH


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_are_only_ever_a_frame_error(data):
    with pytest.raises(FrameError):
        decode_hand_over(data, EXPECTED)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, HAND_OVER_HEADER_BYTES + TENSOR.nbytes - 1), st.integers(1, 255))
def test_any_one_changed_byte_is_rejected(position, flip):
    damaged = bytearray(frame())
    damaged[position] ^= flip
    reason(bytes(damaged))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, HAND_OVER_HEADER_BYTES + TENSOR.nbytes - 1))
def test_every_truncation_is_rejected(length):
    assert reason(frame()[:length]) == Reject.TRUNCATED


def test_answers_round_trip_and_carry_a_rejection_or_the_degraded_mark():
    answer = Answer(DEPLOYMENT, REQUEST, 7, 3, 0.875, 2)
    assert decode_answer(encode_answer(answer)) == answer and len(encode_answer(answer)) == ANSWER_BYTES
    degraded = Answer(DEPLOYMENT, REQUEST, 4, 1, 0.5, 0, degraded=True)
    assert decode_answer(encode_answer(degraded)).degraded
    refused = Answer(DEPLOYMENT, REQUEST, -1, -1, 0.0, 1, rejected=Reject.CHECKSUM)
    assert decode_answer(encode_answer(refused)).rejected == Reject.CHECKSUM


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=ANSWER_BYTES, max_size=ANSWER_BYTES) | st.binary(max_size=80))
def test_random_answers_are_only_ever_a_frame_error(data):
    with contextlib.suppress(FrameError):
        decode_answer(data)
