"""The WSGI bridge's test app: each path exercises one part of PEP 3333.

Every app here is wrapped in wsgiref.validate.validator, which checks the
environ the bridge builds and the way it drives start_response and iterables.
"""

import hashlib
import json
import os
import sys
import time
from wsgiref.validate import validator

CALLS = {"n": 0}
# Where close() leaves a mark (the tests read it).
MARKS = os.environ.get("WSGI_TEST_MARKS", "/tmp")


def text(start_response, body, status="200 OK", ctype="text/plain"):
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


class Marked:
    """An iterable of `n` chunks of `size` bytes whose close() writes a mark file."""

    def __init__(self, name, n, size):
        self.name, self.n, self.size = name, n, size

    def __iter__(self):
        block = b"x" * self.size
        for _ in range(self.n):
            yield block

    def close(self):
        with open(os.path.join(MARKS, self.name), "w") as f:
            f.write("closed")


def raw(environ, start_response):
    CALLS["n"] += 1
    path = environ["PATH_INFO"]
    inp = environ["wsgi.input"]
    if path == "/environ":
        keep = {k: v for k, v in environ.items() if isinstance(v, (str, bool, tuple))}
        keep["wsgi.input.methods"] = [m for m in ("read", "readline", "readlines", "__iter__") if hasattr(inp, m)]
        return text(start_response, json.dumps(keep).encode(), ctype="application/json")
    if path == "/upload":
        # read(n) streamed: never the whole body in memory.
        h, total = hashlib.sha256(), 0
        while True:
            block = inp.read(65536)
            if not block:
                break
            h.update(block)
            total += len(block)
        return text(start_response, ("%d %s" % (total, h.hexdigest())).encode())
    if path == "/lines":
        first = inp.readline()
        second = inp.readline(3)
        rest = list(inp)
        return text(start_response, json.dumps([first.decode(), second.decode(), [r.decode() for r in rest]]).encode())
    if path == "/readlines":
        return text(start_response, json.dumps([l.decode() for l in inp.readlines()]).encode())
    if path == "/stream":
        n = int(environ["QUERY_STRING"] or "1")
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Marked("stream-%s" % environ.get("HTTP_X_MARK", "none"), n, 1 << 20)
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"then ", b"returned"]
    if path == "/exc_info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise RuntimeError("changed my mind")
        except RuntimeError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"sorry"]
    if path == "/twice":
        start_response("200 OK", [("Content-Type", "text/plain")])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"unreachable"]
    if path == "/late-error":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            yield b"first"
            raise RuntimeError("failed mid-body")

        return gen()
    if path == "/boom":
        raise ValueError("kaboom from the test app")
    if path == "/exit":
        raise SystemExit(3)
    if path == "/interrupt":
        raise KeyboardInterrupt
    if path == "/errors":
        environ["wsgi.errors"].write("a line for the host log\n")
        environ["wsgi.errors"].flush()
        return text(start_response, b"logged")
    if path == "/file":
        f = open(__file__, "rb")
        start_response("200 OK", [("Content-Type", "text/x-python")])
        return environ["wsgi.file_wrapper"](f, 4096)
    if path == "/imports":
        import _json, _ssl, _sqlite3, sqlite3, ssl
        db = sqlite3.connect(":memory:")
        one = db.execute("select 1 + 1").fetchone()[0]
        return text(start_response, json.dumps({"sqlite": one, "ssl": ssl.OPENSSL_VERSION[:7], "json": json.loads("[1]")}).encode())
    if path == "/sleep":
        time.sleep(float(environ["QUERY_STRING"] or "0.05"))
        return text(start_response, b"slept")
    if path == "/page":
        CALLS["n"] += 0
        return text(start_response, ("page, call %d" % CALLS["n"]).encode(), ctype="text/html")
    return text(start_response, b"not found", status="404 Not Found")


app = validator(raw)


def factory():
    """For `app = pep3333:factory()`."""
    return app
