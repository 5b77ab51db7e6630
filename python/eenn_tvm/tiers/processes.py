"""A deployment's tier servers as processes on this machine (`eenn-tvm serve`), for tests, demos and benchmarks:
started and waited for until they listen, stopped with SIGTERM (their counters come back), or killed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from eenn_tvm.errors import EennError

READY_TIMEOUT_S = 120.0  # loading TVM and the module on a busy machine


class ServerProcess:
    def __init__(self, out: str | Path, tier: str, broker_url: str, *login: str):
        self.command = [sys.executable, "-m", "eenn_tvm", "serve", str(out), "--tier", tier, "--broker", broker_url]
        self.command += [*login, "--json"]
        self.tier = tier
        self._process: subprocess.Popen | None = None
        self._stderr: list[str] = []

    def start(self) -> ServerProcess:
        self._process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._stderr = []
        ready = threading.Event()
        threading.Thread(target=self._follow, args=(self._process, ready), daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.wait(0.1):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise EennError(f"`eenn-tvm serve --tier {self.tier}` did not start: {' '.join(self._stderr[-1:])}")
        return self

    def stop(self) -> dict:
        """SIGTERM; the server's counters (its --json document)."""
        self._process.send_signal(signal.SIGTERM)
        out, _ = self._process.communicate(timeout=60)
        return json.loads(out)

    def kill(self) -> None:
        """SIGKILL: what it had taken but not acknowledged, the broker delivers again to the next one."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()

    @property
    def log(self) -> list[str]:
        return list(self._stderr)

    def _follow(self, process: subprocess.Popen, ready: threading.Event) -> None:
        for line in process.stderr:
            self._stderr.append(line.rstrip())
            if " listening on " in line:
                ready.set()
