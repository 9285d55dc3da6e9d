"""Parses an HTTP delivery with the official CloudEvents SDK, binary or structured
mode alike. Reads {"headers": {...}, "body": "..."} on stdin; prints
{"attributes": {...}, "data": ...} or exits 1 with the SDK's error."""

import json
import sys

from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat

request = json.load(sys.stdin)
try:
    message = HTTPMessage(headers=request["headers"], body=request["body"].encode())
    event = from_http(message, JSONFormat())
except Exception as error:  # noqa: BLE001 - any refusal is the answer
    print(f"{type(error).__name__}: {error}")
    sys.exit(1)
data = event.get_data()
if isinstance(data, (bytes, bytearray)):
    data = json.loads(data)
attributes = {k: str(v) for k, v in event.get_attributes().items()}
print(json.dumps({"attributes": attributes, "data": data}))
