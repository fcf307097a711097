#!/usr/bin/env python3
"""exact_client: sends an exact number of HTTP/1.1 requests on one keep-alive
connection, `depth` at a time, and checks every response.

benchmarks/run.py uses it for the deterministic counts (callgrind instructions
and strace system calls per request): a load generator such as h2load or wrk
cannot stop after an exact number of requests at an exact point, this can.
Each batch of `depth` requests leaves in one send() and the next batch is sent
only when every response of the previous one has arrived, so a server sees the
same batches whatever its speed (valgrind and strace slow it down a lot).

    python3 benchmarks/exact_client.py --port 8080 --requests 10000 --depth 16
"""
import argparse
import socket
import sys
import time


class ExactClient:
    """One keep-alive connection to 127.0.0.1:port."""

    def __init__(self, port, host="127.0.0.1", timeout=120.0, path="/"):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.request = (
            f"GET {path} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "User-Agent: cluster-bench\r\n"
            "Accept: */*\r\n"
            "\r\n"
        ).encode()
        self.sock = None
        self.buf = bytearray()
        self.responses = 0

    def connect(self):
        self.close()
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def alive(self):
        """True when the connection is open and the server has not closed it."""
        if self.sock is None:
            return False
        self.sock.setblocking(False)
        try:
            data = self.sock.recv(1, socket.MSG_PEEK)
            return len(data) > 0  # unexpected bytes: treat as alive, run() will complain
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            self.sock.settimeout(self.timeout)

    def ensure_alive(self):
        """Reconnects (and sends one request) if the server closed the idle
        connection, so that a measured window never includes a connect."""
        if not self.alive():
            self.connect()
            self.run(1, 1)

    def _read_response(self):
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buf[:end]).decode("latin-1")
                lines = head.split("\r\n")
                parts = lines[0].split(" ", 2)
                if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
                    raise RuntimeError(f"bad status line: {lines[0]!r}")
                status = int(parts[1])
                length = None
                close = False
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value.strip())
                    elif name == "connection" and value.strip().lower() == "close":
                        close = True
                    elif name == "transfer-encoding":
                        raise RuntimeError("chunked responses are not expected from a hello server")
                if length is None:
                    raise RuntimeError("response without Content-Length")
                total = end + 4 + length
                if len(self.buf) >= total:
                    del self.buf[:total]
                    if status != 200:
                        raise RuntimeError(f"status {status}")
                    if close:
                        raise RuntimeError("server closed the keep-alive connection")
                    return
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed by the server")
            self.buf += chunk

    def run(self, requests, depth=1):
        """Sends `requests` requests (a multiple of depth), `depth` per send()."""
        if requests % depth:
            raise ValueError("requests must be a multiple of depth")
        if self.sock is None:
            self.connect()
        batch = self.request * depth
        for _ in range(requests // depth):
            self.sock.sendall(batch)
            for _ in range(depth):
                self._read_response()
            self.responses += depth


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--depth", type=int, default=1)
    args = ap.parse_args()
    client = ExactClient(args.port)
    start = time.perf_counter()
    client.run(args.requests - args.requests % args.depth, args.depth)
    elapsed = time.perf_counter() - start
    print(f"{client.responses} responses in {elapsed:.3f} s")
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
