"""Drives one echo server for benches/callgrind/run.sh: ROUNDS rounds of a
burst of BURST 64-byte messages on one connection, each round waiting for
the whole burst to come back. Bounded: every socket wait times out."""
import socket
import sys

port, rounds, burst = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port), timeout=60)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
msg = b"x" * (64 * burst)
for _ in range(rounds):
    s.sendall(msg)
    got = 0
    while got < len(msg):
        b = s.recv(len(msg) - got)
        if not b:
            raise SystemExit("server closed the connection")
        got += len(b)
s.close()
