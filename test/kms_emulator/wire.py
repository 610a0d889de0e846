"""What every part of the emulator answers with: a Response, base64 and ISO 8601 helpers."""

import base64
import json
import time

JSON_11 = "application/x-amz-json-1.1"


def b64(data):
    """Standard, padded base64: how AWS JSON protocols carry blobs."""
    return base64.b64encode(data).decode("ascii")


_iso8601_cache = (None, "")


def iso8601(epoch):
    """UTC, to the second; formatted once per second."""
    global _iso8601_cache
    if epoch < 0:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    second = int(epoch)  # what gmtime does with a float: floor
    cached = _iso8601_cache
    if cached[0] != second:
        cached = _iso8601_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                         time.gmtime(second)))
    return cached[1]


class Response:
    """An HTTP answer. error_type names the error it carries (for the log and the counters);
    request_id, when set, goes out as x-amzn-RequestId."""

    def __init__(self, status, body=b"", content_type="application/json", headers=(),
                 error_type=None, request_id=None):
        self.status = status
        self.body = body if isinstance(body, bytes) else body.encode("utf-8")
        self.content_type = content_type
        self.headers = list(headers)
        self.error_type = error_type
        self.request_id = request_id


def json_response(status, obj, content_type="application/json", error_type=None):
    return Response(status, json.dumps(obj), content_type, error_type=error_type)


def text_response(status, text):
    return Response(status, text, "text/plain")
