"""The kit's own rules for ``template.yaml``, beyond what cfn-lint and the SAM transform check.

1. ``queue_visibility``: a queue that triggers a function has a visibility timeout of at least
   6x that function's timeout (AWS's advice for SQS event sources; less and a slow batch is
   redelivered while it still runs).
2. ``handler_importable``: every function's ``Handler`` imports in a fresh interpreter with no
   AWS environment and exposes a callable; importing it creates no AWS client and reads no
   ``Settings`` variable from the environment (both belong in ``deps()``).
3. ``environment``: every variable ``Settings`` reads is set for every function (Globals or
   the function), except runtime facts Lambda sets itself and optional knobs whose default is
   "off" (``None``).
4. ``tables_declared``: every ``*_table`` / ``*_queue_url`` / ``*_dlq_url`` setting points at a
   table / queue the template declares, and the code reads no such setting ``Settings`` lacks.
5. ``no_wildcard_resource``: no inline policy statement grants ``Resource: "*"``.
6. ``metrics_emitted``: every ``RunnerKit`` metric an alarm or the dashboard reads is named in
   the functions' code (an alarm on a metric nobody emits never fires), and the dashboard body
   is valid JSON.
7. ``iam_least_privilege``: each function's role grants, per table and queue, exactly the
   DynamoDB and SQS actions its code calls (``infra.iam`` derives them from the source), and
   SAM adds no policy of its own (``Role`` set, no ``Policies``).
8. ``production``: no fixed physical names (``TableName``, ``QueueName``, ``FunctionName``,
   ``AlarmName``, ``DashboardName``, log group names, schedule ``Name``) that would collide
   with a second stack; every table and queue has ``DeletionPolicy`` and
   ``UpdateReplacePolicy``; every table has point-in-time recovery; every function has its own
   log group (``LoggingConfig``), Errors and Throttles alarms; the SQS event source has
   ``MaximumConcurrency``; the inbox has an age-of-oldest-message alarm.

``python -m infra.template_check`` prints the violations and exits 1 if there are any.
``infra.template_rules`` holds rules 1-4, ``infra.template_production`` rules 5-8.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from infra.template import TEMPLATE_PATH, load_template
from infra.template_production import (
    check_iam_least_privilege,
    check_metrics_emitted,
    check_no_wildcard_resource,
    check_production,
)
from infra.template_rules import (
    Violation,
    check_environment,
    check_handler_importable,
    check_queue_visibility,
    check_tables_declared,
)


def check_template(
    template: Mapping[str, Any] | None = None, *, import_handlers: bool = True
) -> list[Violation]:
    """Every kit rule on ``template`` (default: the repository's ``template.yaml``)."""
    template = template if template is not None else load_template()
    violations = [
        *check_queue_visibility(template),
        *check_environment(template),
        *check_tables_declared(template),
        *check_no_wildcard_resource(template),
        *check_metrics_emitted(template),
        *check_iam_least_privilege(template),
        *check_production(template),
    ]
    if import_handlers:
        violations += check_handler_importable(template)
    return violations


def main() -> int:
    violations = check_template(load_template(TEMPLATE_PATH))
    for violation in violations:
        print(violation)
    print(f"template check: {len(violations)} violation(s)")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
