"""Verifies a delivery the way an application would, with the official libraries.

Reads a JSON object {"secret": ..., "headers": {...}, "body": ...} on stdin and
prints one line per library: "<library> ok" or "<library> failed: <reason>".
Exits 0 only if every library accepted the delivery.
"""

import json
import sys

import standardwebhooks
import svix.webhooks

request = json.load(sys.stdin)
secret, headers, body = request["secret"], request["headers"], request["body"]

failed = False
for name, webhook in (
    ("svix", svix.webhooks.Webhook(secret)),
    ("standardwebhooks", standardwebhooks.Webhook(secret)),
):
    try:
        webhook.verify(body, headers)
        print(f"{name} ok")
    except Exception as error:  # noqa: BLE001 - any refusal is the answer
        failed = True
        print(f"{name} failed: {type(error).__name__}: {error}")
sys.exit(1 if failed else 0)
