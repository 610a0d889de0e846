#!/usr/bin/python3
"""Loopback stand-ins for what the KMS emulator cannot act out, for the TAP tests.

    pgck_stub_server.py --port-file FILE respond
        An HTTP server that answers every request (any method, any path but /_stub/...) with
        what was last configured through POST /_stub/set {"status", "type"?, "message"?,
        "location"?, "body"?}: by default a KMS-style JSON error
        {"__type": type, "message": message} with x-amzn-RequestId "stub-<n>" (n counts the
        requests), or "body" verbatim, and a Location header when "location" is given.
        GET /_stub/count answers {"requests": n}.  Signatures are not checked: it only plays
        error answers and redirects the emulator has no fault for.
    pgck_stub_server.py --port-file FILE blackhole
        A listening socket whose accept queue is full and never drained: the kernel drops
        further SYNs, so a connect hangs until the client's connect timeout.

Loopback only; SIGTERM stops it.
"""

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def write_port_file(path, port):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w", encoding="ascii") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.config = {"status": 500, "type": "KMSInternalException", "message": "stub"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def reply(self, status, body, content_type, headers=()):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if self.path == "/_stub/set":
            with state.lock:
                state.config = json.loads(body or b"{}")
                state.requests = 0
            self.reply(200, "{}", "application/json")
            return
        if self.path == "/_stub/count":
            with state.lock:
                n = state.requests
            self.reply(200, json.dumps({"requests": n}), "application/json")
            return
        with state.lock:
            state.requests += 1
            n = state.requests
            config = dict(state.config)
        headers = [("x-amzn-RequestId", "stub-%d" % n)]
        if config.get("location"):
            headers.append(("Location", config["location"]))
        if "body" in config:
            out = config["body"]
        else:
            out = json.dumps({"__type": config.get("type", ""),
                              "message": config.get("message", "stub answer")})
            if config.get("type"):
                headers.append(("X-Amzn-ErrorType", config["type"]))
        self.reply(int(config.get("status", 500)), out, "application/x-amz-json-1.1", headers)

    do_GET = do_PUT = do_POST


def serve_respond(port_file):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.state = State()
    threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
    write_port_file(port_file, server.server_address[1])
    return server


def serve_blackhole(port_file):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    # fill the accept queue (backlog 0 holds one connection; a few more for margin)
    for _ in range(3):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except (BlockingIOError, InterruptedError):
            pass
        fillers.append(c)
    time.sleep(0.2)
    write_port_file(port_file, port)
    return listener, fillers


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("mode", choices=["respond", "blackhole"])
    args = parser.parse_args()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    keep = serve_respond(args.port_file) if args.mode == "respond" \
        else serve_blackhole(args.port_file)
    while not stop.wait(0.5):
        pass
    try:
        os.unlink(args.port_file)
    except OSError:
        pass
    del keep
    return 0


if __name__ == "__main__":
    sys.exit(main())
