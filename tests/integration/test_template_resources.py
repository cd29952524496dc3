"""Tables and queues made from template.yaml on a real moto server over HTTP."""

from __future__ import annotations

import json
from typing import Any

from infra.template import queue_specs, table_specs


def test_every_template_table_is_created(dynamodb: Any, tables: dict[str, str]) -> None:
    assert set(tables) == set(table_specs())
    for logical_id, name in tables.items():
        desc = dynamodb.describe_table(TableName=name)["Table"]
        assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert desc["KeySchema"] == table_specs()[logical_id].key_schema
    ttl = dynamodb.describe_time_to_live(TableName=tables["MessagesTable"])
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"


def test_queues_have_fifo_and_redrive(sqs: Any, queues: dict[str, str]) -> None:
    assert set(queues) == set(queue_specs())
    attrs = sqs.get_queue_attributes(QueueUrl=queues["ActorMessagesQueue"], AttributeNames=["All"])[
        "Attributes"
    ]
    assert attrs["FifoQueue"] == "true"
    redrive = json.loads(attrs["RedrivePolicy"])
    dlq_arn = sqs.get_queue_attributes(
        QueueUrl=queues["ActorMessagesDLQ"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert redrive["deadLetterTargetArn"] == dlq_arn
    assert int(redrive["maxReceiveCount"]) == queue_specs()["ActorMessagesQueue"].max_receive_count
