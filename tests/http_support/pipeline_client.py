"""A pipelining HTTP/1.1 client for tests/http_example.rs (python3, stdlib only).

usage: pipeline_client.py HOST PORT MODE [N]

MODE:
  onewrite   N requests (default 100) in one write, then read N responses
  fragments  the same request stream in 1-7 byte pieces (TCP_NODELAY, short
             pauses, so the server sees requests split at every offset)
  halfclose  one write, then shutdown(SHUT_WR): N responses, then a clean EOF

The requests mix GET /plaintext, GET /json, GET of unknown paths (404) and
POSTs with a body (405, body consumed) whose bytes look like requests: a
server that failed to skip a body would answer them. Every response is
checked (status, headers, body, order); prints "ok N" or fails (exit 1).
"""

import random
import socket
import sys
import time

host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 100

reqs, expect = [], []
for i in range(n):
    if i % 10 == 3:
        reqs.append(b"GET /missing/%d HTTP/1.1\r\nHost: t\r\n\r\n" % i)
        expect.append((404, b"Not Found\n", b"text/plain"))
    elif i % 10 == 6:
        body = b"GET /json HTTP/1.1\r\n\r\n" * (1 + i % 5) + b"x" * i
        reqs.append(
            b"POST /plaintext HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )
        expect.append((405, b"Method Not Allowed\n", b"text/plain"))
    elif i % 2:
        reqs.append(b"GET /json HTTP/1.1\r\nHost: t\r\n\r\n")
        expect.append((200, b'{"message":"Hello, World!"}', b"application/json"))
    else:
        reqs.append(b"GET /plaintext HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n")
        expect.append((200, b"Hello, World!", b"text/plain"))
stream = b"".join(reqs)

s = socket.create_connection((host, port), timeout=20)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
if mode == "fragments":
    rnd = random.Random(7)
    i = 0
    while i < len(stream):
        k = rnd.randint(1, 7)
        s.sendall(stream[i : i + k])
        i += k
        if rnd.random() < 0.3:
            time.sleep(0.001)
else:
    s.sendall(stream)
if mode == "halfclose":
    s.shutdown(socket.SHUT_WR)

buf = b""


def fill():
    global buf
    d = s.recv(65536)
    if not d:
        raise SystemExit("EOF after %d responses" % got)
    buf += d


def response():
    global buf
    while b"\r\n\r\n" not in buf:
        fill()
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    if not lines[0].startswith(b"HTTP/1.1 "):
        raise SystemExit("bad status line %r" % lines[0])
    hdrs = {}
    for l in lines[1:]:
        k, v = l.split(b":", 1)
        hdrs[k.strip().lower()] = v.strip()
    length = int(hdrs[b"content-length"])
    while len(buf) < length:
        fill()
    body, buf = buf[:length], buf[length:]
    return status, hdrs, body


got = 0
for i, (status, body, ctype) in enumerate(expect):
    st, hdrs, b = response()
    if (st, b) != (status, body) or hdrs.get(b"content-type") != ctype:
        raise SystemExit("response %d: got %r %r %r, expected %r %r %r" % (i, st, hdrs, b, status, body, ctype))
    for h in (b"date", b"server"):
        if h not in hdrs:
            raise SystemExit("response %d lacks %r" % (i, h))
    got += 1

if mode == "halfclose":
    # The server closes after the last answer: a clean EOF, nothing more.
    while True:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    if buf:
        raise SystemExit("extra bytes after the last response: %r" % buf[:200])
print("ok %d" % got)
