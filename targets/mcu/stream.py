"""The firmware of a live deployment in QEMU, its UART0 on a socket: inputs go in, one record per input comes out,
with the hand-over tensor when no exit fired on the device (board/stream_main.c; layout in docs/tiers.md).

The board runs at its own pace: a writer thread feeds every input (the socket's buffer and the UART's flow
control hold it back), and `records()` reads what the board sends until it has answered all of them.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eenn_tvm.errors import EennError
from eenn_tvm.targets.mcu.manifest import FirmwareManifest
from eenn_tvm.targets.mcu.qemu import qemu_binary, record_dtype

STREAM_VERSION = 1
MAGIC_HELLO, MAGIC_INPUT, MAGIC_RESULT = b"EENB", b"EENI", b"EENR"
STOP_INDEX = 0xFFFFFFFF
_HELLO = struct.Struct("<4s5I")  # magic, version, input elements, classes, live bytes, milli-instructions per tick
_INPUT = struct.Struct("<4sI")  # magic, index; then the input's float32 elements
_RESULT = struct.Struct("<4sI")  # magic, index; then a record (qemu.record_dtype), the hand-over's length and bytes
_LENGTH = struct.Struct("<I")
BOOT_TIMEOUT_S = 30.0
RECORD_TIMEOUT_S = 120.0  # the longest the board may take for one input before it counts as stuck


@dataclass
class BoardRecord:
    index: int
    status: int  # EENN_OK 0, EENN_CONTINUE 1, or an error
    class_index: int  # with EENN_CONTINUE: the device's last exit, the degraded answer
    exit_index: int
    confidence: float
    instructions: int
    scores: np.ndarray
    live: bytes  # the hand-over tensor (EENN_CONTINUE), else empty


class BoardStream:
    """`with BoardStream(folder, manifest) as board: board.feed(x); for record in board.records(): ...`"""

    def __init__(self, folder: Path, manifest: FirmwareManifest):
        if manifest.stream_elf is None:
            raise EennError(f"{folder}: the firmware has no stream program: build it again with `eenn-tvm compile`")
        self.elf = manifest.artifact(folder, "stream_elf").resolve()
        self.manifest = manifest
        self._record = record_dtype(manifest.classes)
        self._work = tempfile.TemporaryDirectory(prefix="eenn-board-")
        self._qemu: subprocess.Popen | None = None
        self._uart: socket.socket | None = None
        self._reader = None
        self._fed = 0
        self.milli_instructions_per_tick = 0

    def __enter__(self) -> BoardStream:
        path = str(Path(self._work.name) / "uart0")
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(BOOT_TIMEOUT_S)
        self._qemu = subprocess.Popen(
            [
                *(qemu_binary(), "-M", self.manifest.machine, "-display", "none", "-monitor", "none"),
                *("-chardev", f"socket,id=uart0,path={path}", "-serial", "chardev:uart0"),
                *("-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(self.elf)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            self._uart, _ = listener.accept()
        except TimeoutError:
            self.__exit__()
            raise EennError(f"QEMU did not open {self.manifest.machine}'s UART within {BOOT_TIMEOUT_S:.0f} s") from None
        finally:
            listener.close()
        self._uart.settimeout(RECORD_TIMEOUT_S)
        self._reader = self._uart.makefile("rb")
        self._hello()
        return self

    def __exit__(self, *_exc) -> None:
        if self._uart is not None:
            self._uart.close()
        if self._qemu is not None:
            try:
                self._qemu.wait(5)
            except subprocess.TimeoutExpired:
                self._qemu.kill()
                self._qemu.wait()
        self._work.cleanup()

    def feed(self, inputs: np.ndarray) -> None:
        """Send every input, then the stop mark, from a thread of its own."""
        self._fed = len(inputs)
        threading.Thread(target=self._send, args=(np.ascontiguousarray(inputs, "<f4"),), daemon=True).start()

    def records(self) -> Iterator[BoardRecord]:
        for expected in range(self._fed):
            magic, index = _RESULT.unpack(self._read(_RESULT.size))
            if magic != MAGIC_RESULT or index != expected:
                raise EennError(f"the board's stream is out of step at input {expected} (got {magic!r}, {index})")
            r = np.frombuffer(self._read(self._record.itemsize), self._record)[0]
            (live_bytes,) = _LENGTH.unpack(self._read(_LENGTH.size))
            ticks = int(r["ticks_low"]) | (int(r["ticks_high"]) << 32)
            yield BoardRecord(
                index,
                int(r["status"]),
                int(r["class_index"]),
                int(r["exit_index"]),
                float(r["confidence"]),
                ticks * self.milli_instructions_per_tick // 1000,
                r["scores"].copy(),
                self._read(live_bytes),
            )

    def _send(self, inputs: np.ndarray) -> None:
        try:
            for index, x in enumerate(inputs):
                self._uart.sendall(_INPUT.pack(MAGIC_INPUT, index) + x.tobytes())
            self._uart.sendall(_INPUT.pack(MAGIC_INPUT, STOP_INDEX))
        except OSError:
            pass  # the board is gone: records() says so

    def _hello(self) -> None:
        magic, version, elements, classes, live_bytes, milli = _HELLO.unpack(self._read(_HELLO.size))
        m = self.manifest
        expected = (MAGIC_HELLO, STREAM_VERSION, int(np.prod(m.input_shape)), m.classes)
        if (magic, version, elements, classes) != expected or live_bytes != (m.hand_over.bytes if m.hand_over else 0):
            raise EennError(f"{self.elf}: the board's hello does not match firmware.json: build the firmware again")
        self.milli_instructions_per_tick = milli

    def _read(self, size: int) -> bytes:
        try:
            data = self._reader.read(size)
        except TimeoutError:
            data = b""
        if len(data) != size:
            output = self._qemu.stdout.read1().decode(errors="replace").strip() if self._qemu.poll() is not None else ""
            raise EennError(f"the board stopped sending ({output or 'no answer within the time allowed'})")
        return data
