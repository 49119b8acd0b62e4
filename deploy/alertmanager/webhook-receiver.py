"""A minimal Alertmanager webhook receiver: prints every notification as one JSON line.

    python webhook-receiver.py [--host 127.0.0.1] [--port 5001] [--out alerts.jsonl]

Each line is ``{"path": <request path>, "payload": <Alertmanager's JSON>}`` (the payload's
``alerts`` carry their labels and annotations). Standard library only, so it runs in any
Python container. Replace it with your chat or paging integration.
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO


def make_handler(out: IO[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers.get("content-length") or 0)
            try:
                payload = json.loads(self.rfile.read(size) or b"null")
            except ValueError:
                self.send_response(400)
                self.end_headers()
                return
            out.write(json.dumps({"path": self.path, "payload": payload}) + "\n")
            out.flush()
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # the JSON lines are the log

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--out", default=None, help="append the JSON lines here (default: stdout)")
    args = parser.parse_args(argv)
    out = sys.stdout if args.out is None else open(args.out, "a", encoding="utf-8")  # noqa: SIM115
    server = ThreadingHTTPServer((args.host, args.port), make_handler(out))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
