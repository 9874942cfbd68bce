#!/usr/bin/env python3
"""A long network link on one machine, for benchmarks where tc netem is not available: accepts TCP
connections on LISTEN and forwards each to TARGET, holding every byte for --delay_us microseconds in
each direction (a fixed one-way latency; throughput is whatever this process can copy).

    Scripts/delay-relay.py --listen 127.0.0.1:41000 --target 127.0.0.1:40000 --delay_us 500

Used with `amoeba bench allreduce --addresses <relay addresses> --bind <real address>`
(docs/BENCHMARKS.md, "latency").
"""
import argparse, collections, socket, threading, time

p = argparse.ArgumentParser()
p.add_argument('--listen', required=True)
p.add_argument('--target', required=True)
p.add_argument('--delay_us', type=float, default=500)
a = p.parse_args()
delay = a.delay_us * 1e-6

def split(text):
    host, port = text.rsplit(':', 1)
    return host, int(port)

def pump(source, sink):
    """Reads from source, releases each piece to sink `delay` seconds after it arrived."""
    queue = collections.deque()
    ready = threading.Condition()
    done = [False]

    def writer():
        while True:
            with ready:
                while not queue and not done[0]:
                    ready.wait()
                if not queue:
                    break
                due, data = queue.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                sink.sendall(data)
            except OSError:
                break
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    while True:
        try:
            data = source.recv(1 << 20)
        except OSError:
            data = b''
        with ready:
            if data:
                queue.append((time.monotonic() + delay, data))
            else:
                done[0] = True
            ready.notify()
        if not data:
            break
    thread.join()

listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(split(a.listen))
listener.listen(16)
def connect(target, seconds=30):
    """The target may start after its peer connects here: retry until it listens."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return socket.create_connection(target)
        except OSError:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

while True:
    client, _ = listener.accept()
    server = connect(split(a.target))
    if server is None:
        client.close()
        continue
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=pump, args=(client, server), daemon=True).start()
    threading.Thread(target=pump, args=(server, client), daemon=True).start()
