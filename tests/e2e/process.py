"""Real ``stepstone`` processes for end-to-end tests: start, wait until ready, kill."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stepstone(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a CLI command to completion."""
    result = subprocess.run(
        [sys.executable, "-m", "stepstone.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"stepstone {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        )
    return result


def wait_for(
    condition: Callable[[], bool], *, timeout: float = 30, what: str = "condition"
) -> None:
    """Poll ``condition`` until it holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Server:
    """``stepstone serve`` (or ``dev``, per ``command``) in a subprocess."""

    def __init__(
        self,
        db: str,
        log: Path,
        *,
        env: dict[str, str] | None = None,
        command: tuple[str, ...] = ("serve",),
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._log = log.open("a")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stepstone.cli.main",
                *command,
                "--db",
                db,
                "--port",
                str(self.port),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        wait_for(self._healthy, what=f"the server on port {self.port} (log: {log})")

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the server exited with {self.proc.returncode}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        self._log.close()
        return self.proc.returncode
