#!/usr/bin/env python3
"""etcd members' client ports behind a proxy that loses answers after commit.

scripts/chaos-cluster puts it in front of each etcd member (clients reach the members
through it only: a client that lost an answer moves to the next member, which must be
able to lose one too): every request is forwarded to its member whole and the answer
read whole (so a write is committed), then, while
the file DROP exists and for a fraction of the writes (/v3/kv/txn, /v3/kv/put,
/v3/kv/deleterange), the client's connection is closed instead of the answer being
relayed: the client sees a send error for a write etcd did take. A watch
(/v3/watch, a streaming answer) is relayed as it comes, never cut. One request a
connection (the answer is relayed with `Connection: close`).

Usage: proxy.py LISTEN_ADDR[,LISTEN_ADDR…] DROP_FILE FRACTION LOG PORT:UPSTREAM_PORT…
(each PORT on each LISTEN_ADDR forwards to 127.0.0.1:UPSTREAM_PORT). Each cut is one
line "drop PORT PATH" in LOG; each relayed write, "pass PORT PATH".
With PROXY_TLS=CA,SERVER_CERT,SERVER_KEY,CLIENT_CERT,CLIENT_KEY (etcd with client
certificates, the cluster's default): clients get TLS with etcd's server certificate and
must present a certificate of CA, and the proxy reaches the member over TLS with its own
client certificate (one of CA's, without a common name); etcd's users travel in the
requests' Authorization header, untouched.
"""
import os
import random
import socket
import ssl
import struct
import sys
import threading

LOCK = threading.Lock()
TLS = os.environ.get("PROXY_TLS")
SERVER_CTX = UPSTREAM_CTX = None
if TLS:
    _ca, _cert, _key, _ccert, _ckey = TLS.split(",")
    SERVER_CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    SERVER_CTX.load_cert_chain(_cert, _key)
    SERVER_CTX.load_verify_locations(_ca)
    SERVER_CTX.verify_mode = ssl.CERT_REQUIRED
    UPSTREAM_CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    UPSTREAM_CTX.load_verify_locations(_ca)
    UPSTREAM_CTX.load_cert_chain(_ccert, _ckey)
WRITES = ("/v3/kv/txn", "/v3/kv/put", "/v3/kv/deleterange")


def read_head(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def pipe(src, dst):
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            dst.sendall(b)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Proxy:
    def __init__(self, port, upstream, drop_file, fraction, log):
        self.port = port
        self.upstream = upstream
        self.drop_file = drop_file
        self.fraction = fraction
        self.log = log
        self.lock = LOCK

    def note(self, line):
        with self.lock:
            self.log.write(line + "\n")

    def serve(self, client):
        up = None
        try:
            if SERVER_CTX is not None:
                client.settimeout(30)
                client = SERVER_CTX.wrap_socket(client, server_side=True)
                client.settimeout(None)
            head, rest = read_head(client)
            if head is None:
                return
            lines = head.split(b"\r\n")
            method, path = lines[0].split(b" ")[:2]
            path = path.decode(errors="replace")
            headers = []
            length = 0
            for line in lines[1:]:
                name = line.split(b":", 1)[0].strip().lower()
                if name == b"content-length":
                    length = int(line.split(b":", 1)[1])
                if name in (b"connection", b"keep-alive"):
                    continue
                headers.append(line)
            while len(rest) < length:
                b = client.recv(65536)
                if not b:
                    return
                rest += b
            up = socket.create_connection(("127.0.0.1", self.upstream), timeout=30)
            if UPSTREAM_CTX is not None:
                up = UPSTREAM_CTX.wrap_socket(up, server_hostname="127.0.0.1")
            up.settimeout(None)
            if path.startswith("/v3/watch"):
                up.sendall(b"\r\n".join([lines[0]] + headers) + b"\r\n\r\n" + rest)
                t = threading.Thread(target=pipe, args=(client, up), daemon=True)
                t.start()
                pipe(up, client)
                return
            headers.append(b"Connection: close")
            up.sendall(b"\r\n".join([lines[0]] + headers) + b"\r\n\r\n" + rest)
            answer = b""
            while True:
                b = up.recv(65536)
                if not b:
                    break
                answer += b
            write = path.startswith(WRITES)
            if write and os.path.exists(self.drop_file) and random.random() < self.fraction:
                self.note(f"drop {self.port} {path}")
                # RST, not FIN: the client's read fails at once.
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if write:
                self.note(f"pass {self.port} {path}")
            client.sendall(answer)
        except OSError:
            pass
        finally:
            for s in (client, up):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass


def listen(addr, proxy):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, proxy.port))
    s.listen(256)
    while True:
        c, _ = s.accept()
        threading.Thread(target=proxy.serve, args=(c,), daemon=True).start()


def main():
    addrs, drop_file, fraction, log = sys.argv[1:5]
    logf = open(log, "a", buffering=1)
    threads = []
    for pair in sys.argv[5:]:
        port, upstream = (int(x) for x in pair.split(":"))
        proxy = Proxy(port, upstream, drop_file, float(fraction), logf)
        threads += [threading.Thread(target=listen, args=(a, proxy), daemon=True)
                    for a in addrs.split(",")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
