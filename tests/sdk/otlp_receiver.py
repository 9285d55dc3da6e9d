"""An OTLP/HTTP trace receiver for the tests: decodes each export request with the
official `opentelemetry-proto` package (not hookrelay's code) and keeps the spans.

    python otlp_receiver.py [--delay SECONDS] [--grpc]

Prints its port on the first line of stdout (with --grpc, then the gRPC port on the
same line, where it serves OTLP's TraceService as well), then serves:
  POST /v1/traces   an ExportTraceServiceRequest (application/x-protobuf); with
                    --delay, answers only after that many seconds (a slow collector)
  GET  /spans       every span received so far, as a JSON list of
                    {trace_id, span_id, parent_span_id, name, kind, service,
                     attributes: {key: value}, links: [{trace_id, span_id}],
                     status: {code, message}, start, end}
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

DELAY = 0.0
SPANS = []
LOCK = threading.Lock()


def value_of(any_value):
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    value = getattr(any_value, kind)
    if kind == "array_value":
        return [value_of(v) for v in value.values]
    if kind == "bytes_value":
        return value.hex()
    return value


def attributes(items):
    return {item.key: value_of(item.value) for item in items}


def decoded(request):
    spans = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    {
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": Span.SpanKind.Name(span.kind),
                        "service": resource.get("service.name"),
                        "attributes": attributes(span.attributes),
                        "links": [
                            {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex()}
                            for link in span.links
                        ],
                        "status": {
                            "code": Status.StatusCode.Name(span.status.code),
                            "message": span.status.message,
                        },
                        "events": [event.name for event in span.events],
                        "start": span.start_time_unix_nano,
                        "end": span.end_time_unix_nano,
                    }
                )
    return spans


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body, content_type):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        payload = self.rfile.read(length)
        if self.path != "/v1/traces":
            return self.answer(404, b"", "text/plain")
        if DELAY:
            time.sleep(DELAY)
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(payload)
        except Exception as error:  # a malformed export is the test's failure
            return self.answer(400, str(error).encode(), "text/plain")
        with LOCK:
            SPANS.extend(decoded(request))
        self.answer(
            200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf"
        )

    def do_GET(self):
        if self.path != "/spans":
            return self.answer(404, b"", "text/plain")
        with LOCK:
            body = json.dumps(SPANS).encode()
        self.answer(200, body, "application/json")


def serve_grpc():
    """OTLP over gRPC (grpcio with the package's own service stubs); returns the port."""
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            with LOCK:
                SPANS.extend(decoded(request))
            return ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def main():
    global DELAY
    if "--delay" in sys.argv:
        DELAY = float(sys.argv[sys.argv.index("--delay") + 1])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if "--grpc" in sys.argv:
        _grpc_server, grpc_port = serve_grpc()
        print(server.server_address[1], grpc_port, flush=True)
    else:
        print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
