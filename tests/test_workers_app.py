"""The worker app is made on first use, never at import: importing ``workers.app`` and
``workers.tasks`` reads no settings and connects to nothing, and ``celery -A workers.app``
(Celery's own lookup) still finds the app, its tasks and their settings-dependent options.
(The tasks running on real worker processes: tests/test_workers.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_") and k != "REDIS_URL"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def test_importing_the_worker_modules_reads_no_settings(tmp_path: Path) -> None:
    # Settings that cannot be parsed: reading them at import would raise.
    env = {"SUPPORTBOT_TOP_K": "not-a-number", "SUPPORTBOT_DATA_DIR": str(tmp_path)}
    done = run_python(
        "import workers.app, workers.tasks\n"
        "assert workers.app._app is None, 'an app was made at import'\n"
        "print('ok')\n",
        env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    # The first use of the app is where the settings are read (and fail, saying why).
    failed = run_python("import workers.app\nworkers.app.app\n", env)
    assert failed.returncode != 0 and "top_k" in failed.stderr


def test_celery_finds_the_lazy_app_and_its_tasks(tmp_path: Path) -> None:
    env = {
        "SUPPORTBOT_REDIS_URL": "redis://127.0.0.1:6399/0",  # never connected to here
        "SUPPORTBOT_DATA_DIR": str(tmp_path),
        "SUPPORTBOT_WORKER_QUEUE": "q-lazy",
        "SUPPORTBOT_SYNC_TIME_LIMIT_S": "900",
        "SUPPORTBOT_INGEST_TIME_LIMIT_S": "300",
        "SUPPORTBOT_TASK_MAX_RETRIES": "7",
    }
    code = (
        "import json\n"
        "from celery.app.utils import find_app\n"
        "app = find_app('workers.app')\n"  # what `celery -A workers.app worker` does
        "app.loader.import_default_modules()\n"
        "app.finalize(auto=True)\n"
        "tasks = {n: t for n, t in app.tasks.items() if n.startswith('supportbot.')}\n"
        "print(json.dumps({'queue': app.conf.task_default_queue, 'tasks': {n: [t.time_limit, t.soft_time_limit, "
        "t.max_retries, t.acks_late] for n, t in sorted(tasks.items())}}))\n"
    )
    done = run_python(code, env)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["queue"] == "q-lazy"
    assert found["tasks"] == {
        "supportbot.ingest": [300, 270, 7, True],
        "supportbot.sync_due": [120, 100, 3, True],
        "supportbot.sync_source": [900, 870, 7, True],
    }
