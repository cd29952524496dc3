"""``Settings`` for a test's own tables: each table setting is its logical id in snake case
(``RunnerConfigsTable`` -> ``runner_configs_table``, read from ``RUNNER_CONFIGS_TABLE``)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from adapters.settings import Settings


def table_settings(tables: Mapping[str, str]) -> dict[str, str]:
    """The ``Settings`` fields naming ``tables`` (logical id -> physical name)."""
    fields = {re.sub(r"(?<!^)(?=[A-Z])", "_", lid).lower(): name for lid, name in tables.items()}
    unknown = set(fields) - set(Settings.model_fields)
    assert not unknown, f"no setting for {sorted(unknown)}"
    return fields


def table_environ(tables: Mapping[str, str]) -> dict[str, str]:
    """The environment variables that point the functions at ``tables``."""
    return {field.upper(): name for field, name in table_settings(tables).items()}
