"""Named thread pools, one per process (a child made by fork makes its own on first use).

A pool inherited through ``fork`` holds no live threads in the child, so each pool is keyed by
process id and made again on first use after a fork (Celery's prefork workers, gunicorn).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_lock = threading.Lock()
_pools: dict[tuple[int, str], ThreadPoolExecutor] = {}


def process_pool(name: str, threads: int) -> ThreadPoolExecutor:
    """This process's pool called ``name`` with ``threads`` workers (made on first use)."""
    pid = os.getpid()
    pool = _pools.get((pid, name))
    if pool is None:
        with _lock:
            pool = _pools.get((pid, name))
            if pool is None:
                for key in [k for k in _pools if k[0] != pid]:
                    del _pools[key]  # inherited through fork: no threads behind them here
                pool = _pools[(pid, name)] = ThreadPoolExecutor(threads, thread_name_prefix=name)
    return pool
