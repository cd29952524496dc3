"""Lambda SnapStart for Python: what to do before the snapshot and after each restore.

With SnapStart (the template's ``SnapStart`` parameter), Lambda runs INIT once per published
version, snapshots the memory and restores copies of it for cold starts. So:

- before the snapshot, Powertools is imported (``observability.preload``) and ``warm`` builds
  the composition root: the imports it makes lazily, settings, and boto3 clients (whose
  service models then sit in botocore's loader cache);
- after each restore, ``reset`` drops it, so the first invocation builds new clients (new
  connections, the restored sandbox's credentials) cheaply from the warm caches; the ``random``
  module is reseeded (every copy of a snapshot would draw the same jitter), and the next
  invocation reports ``ColdStart`` again.

The hooks come from ``snapshot_restore_py``, which the Lambda Python runtime provides; outside
Lambda it is missing and nothing is registered. Registering reads no environment and creates
no client.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any


def register(warm: Callable[[], Any], reset: Callable[[], Any]) -> bool:
    """Register the hooks; False when the runtime has no SnapStart support (local, tests)."""
    try:
        from snapshot_restore_py import (  # type: ignore[import-not-found]
            register_after_restore,
            register_before_snapshot,
        )
    except ImportError:
        return False

    def before_snapshot() -> None:
        from adapters import observability

        observability.preload()
        warm()

    def after_restore() -> None:
        from adapters import observability

        random.seed()
        observability.mark_cold_start()
        reset()

    register_before_snapshot(before_snapshot)
    register_after_restore(after_restore)
    return True
