"""Prepares brokers for a test and reads back what hookrelay published, with each
broker's own client library (not hookrelay's code): confluent-kafka, boto3, pika,
nats-py, redis.

Reads one JSON object on stdin: {"op": "setup" | "consume" | "teardown", "kind": ...,
plus the kind's fields} and prints one JSON document on stdout. `consume` waits up to
"timeout" seconds for "count" messages and prints them as a list of
{"body": base64, "headers": [[name, value], ...], "key": str | null, "meta": {...}};
with "cloudevents": true each also has "cloudevent": the attributes the official
CloudEvents SDK parsed from it.
"""

import asyncio
import base64
import json
import sys
import time


def text(value):
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def enough(request, found):
    """`count` messages, or with "distinct", `count` distinct event ids (a kill -9
    mid-publish may have sent some twice)."""
    if not request.get("distinct"):
        return len(found) >= request["count"]
    ids = set()
    for item in found:
        for name, value in item["headers"]:
            if name == "hookrelay-event-id":
                ids.add(value)
    return len(ids) >= request["count"]


def message(body, headers, key, meta):
    return {
        "body": base64.b64encode(body).decode(),
        "headers": [[name, text(value)] for name, value in headers],
        "key": text(key),
        "meta": meta,
    }


# Kafka -----------------------------------------------------------------------------


def kafka_consume(request):
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": request["bootstrap"],
            "group.id": "test-" + str(time.time()),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([request["topic"]])
    found = []
    deadline = time.time() + request["timeout"]
    while not enough(request, found) and time.time() < deadline:
        record = consumer.poll(0.5)
        if record is None or record.error():
            continue
        found.append(
            message(
                record.value() or b"",
                record.headers() or [],
                record.key(),
                {"partition": record.partition(), "offset": record.offset()},
            )
        )
        if request.get("cloudevents"):
            from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka
            from cloudevents.core.formats.json import JSONFormat

            event = from_kafka(
                KafkaMessage(
                    headers={k: v for k, v in (record.headers() or [])},
                    key=record.key(),
                    value=record.value(),
                ),
                JSONFormat(),
            )
            found[-1]["cloudevent"] = {k: text(v) for k, v in event.get_attributes().items()}
    consumer.close()
    return found


# SQS -------------------------------------------------------------------------------


def sqs_client(request):
    import boto3

    return boto3.client(
        "sqs",
        endpoint_url=request["endpoint"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def sqs_setup(request):
    client = sqs_client(request)
    attributes = {}
    if request["queue"].endswith(".fifo"):
        attributes = {"FifoQueue": "true"}
    url = client.create_queue(QueueName=request["queue"], Attributes=attributes)["QueueUrl"]
    return {"queue_url": url}


def sqs_consume(request):
    client = sqs_client(request)
    url = client.get_queue_url(QueueName=request["queue"])["QueueUrl"]
    found = []
    deadline = time.time() + request["timeout"]
    while not enough(request, found) and time.time() < deadline:
        answer = client.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            WaitTimeSeconds=1,
        )
        for received in answer.get("Messages", []):
            attributes = received.get("MessageAttributes", {})
            system = received.get("Attributes", {})
            found.append(
                message(
                    received["Body"].encode(),
                    [(name, value.get("StringValue")) for name, value in attributes.items()],
                    system.get("MessageGroupId"),
                    {
                        "deduplication_id": system.get("MessageDeduplicationId"),
                        "message_id": received["MessageId"],
                    },
                )
            )
            client.delete_message(QueueUrl=url, ReceiptHandle=received["ReceiptHandle"])
    return found


# AMQP ------------------------------------------------------------------------------


def amqp_channel(request):
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(request["uri"]))
    return connection, connection.channel()


def amqp_setup(request):
    connection, channel = amqp_channel(request)
    if request.get("exchange"):
        channel.exchange_declare(request["exchange"], exchange_type="topic", durable=False, auto_delete=False)
    channel.queue_declare(request["queue"], durable=True)
    if request.get("exchange"):
        channel.queue_bind(request["queue"], request["exchange"], routing_key=request["binding"])
    connection.close()
    return {}


def amqp_teardown(request):
    connection, channel = amqp_channel(request)
    channel.queue_delete(request["queue"])
    if request.get("exchange"):
        channel.exchange_delete(request["exchange"])
    connection.close()
    return {}


def amqp_consume(request):
    connection, channel = amqp_channel(request)
    found = []
    deadline = time.time() + request["timeout"]
    while not enough(request, found) and time.time() < deadline:
        method, properties, body = channel.basic_get(request["queue"], auto_ack=True)
        if method is None:
            time.sleep(0.1)
            continue
        headers = list((properties.headers or {}).items())
        if properties.content_type:
            headers.append(("content-type", properties.content_type))
        found.append(
            message(
                body,
                headers,
                (properties.headers or {}).get("hookrelay-key"),
                {
                    "routing_key": method.routing_key,
                    "message_id": properties.message_id,
                    "delivery_mode": properties.delivery_mode,
                },
            )
        )
    connection.close()
    return found


# NATS JetStream --------------------------------------------------------------------


async def nats_setup(request):
    import nats

    client = await nats.connect(request["server"])
    await client.jetstream().add_stream(
        name=request["stream"],
        subjects=[request["subjects"]],
        max_msg_size=request.get("max_msg_size", -1),
    )
    await client.close()
    return {}


async def nats_teardown(request):
    import nats

    client = await nats.connect(request["server"])
    try:
        await client.jetstream().delete_stream(request["stream"])
    finally:
        await client.close()
    return {}


async def nats_consume(request):
    import nats

    client = await nats.connect(request["server"])
    jetstream = client.jetstream()
    found = []
    deadline = time.time() + request["timeout"]
    sequence = 1
    while not enough(request, found) and time.time() < deadline:
        try:
            stored = await jetstream.get_msg(request["stream"], seq=sequence)
        except Exception:  # noqa: BLE001 - not stored yet
            await asyncio.sleep(0.1)
            continue
        sequence += 1
        headers = list((stored.headers or {}).items())
        found.append(
            message(
                stored.data or b"",
                headers,
                (stored.headers or {}).get("hookrelay-key"),
                {"subject": stored.subject, "sequence": stored.seq},
            )
        )
    await client.close()
    return found


# Redis Streams ---------------------------------------------------------------------


def redis_consume(request):
    import redis

    client = redis.Redis.from_url(request["server"])
    deadline = time.time() + request["timeout"]
    while True:
        found = []
        for entry_id, fields in client.xrange(request["stream"], "-", "+"):
            fields = {text(k): v for k, v in fields.items()}
            body = fields.pop("body", b"")
            key = fields.pop("key", None)
            found.append(message(body, list(fields.items()), key, {"id": text(entry_id)}))
        if enough(request, found) or time.time() >= deadline:
            return found
        time.sleep(0.1)


def redis_teardown(request):
    import redis

    redis.Redis.from_url(request["server"]).delete(request["stream"])
    return {}


OPERATIONS = {
    ("kafka", "consume"): kafka_consume,
    ("sqs", "setup"): sqs_setup,
    ("sqs", "consume"): sqs_consume,
    ("amqp", "setup"): amqp_setup,
    ("amqp", "consume"): amqp_consume,
    ("amqp", "teardown"): amqp_teardown,
    ("nats", "setup"): nats_setup,
    ("nats", "consume"): nats_consume,
    ("nats", "teardown"): nats_teardown,
    ("redis", "consume"): redis_consume,
    ("redis", "teardown"): redis_teardown,
}


def main():
    request = json.load(sys.stdin)
    operation = OPERATIONS.get((request["kind"], request["op"]))
    if operation is None:
        print(json.dumps({}))
        return
    result = operation(request)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
