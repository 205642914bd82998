"""What plain TCP gets out of the namespace hosts' shaped links, without jwins: every host sends the same payload
to every other host at once (one TCP connection per pair, as gloo has), and prints how long the slowest host
took to receive everything against the payload-only ideal (3 peers x payload / rate) that the network time
model uses.

    sudo python benchmarks/tcp_all_to_all.py                  # 4 hosts, 10 and 100 Mbit/s, 1.25 MB per pair
    sudo python benchmarks/tcp_all_to_all.py --rates 10 --bytes 125000

The gap to the ideal is the network's own: Ethernet, IP and TCP headers (counted by tbf) and TCP's behaviour
on a token bucket shared by three flows. benchmarks/network.py sets jwins's measured rounds beside the model.
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PORT = 29700


def peer(me: int, count: int, nbytes: int, start: float, net: int) -> None:
    """Host ``me``: accept ``count - 1`` senders, send ``nbytes`` to every other host from ``start`` on."""
    addr = (lambda i: f"10.{net}.0.{i + 1}")
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr(me), PORT))
    srv.listen(count)

    drained: list[threading.Thread] = []

    def drain(conn: socket.socket) -> None:
        while conn.recv(1 << 20):
            pass
        conn.close()

    def serve() -> None:
        for _ in range(count - 1):
            conn, _ = srv.accept()
            t = threading.Thread(target=drain, args=(conn,))
            t.start()
            drained.append(t)

    server = threading.Thread(target=serve)
    server.start()
    time.sleep(max(0.0, start - time.time()))

    def send(p: int) -> None:
        with socket.create_connection((addr(p), PORT)) as s:
            s.sendall(b"x" * nbytes)

    threads = [threading.Thread(target=send, args=(p,)) for p in range(count) if p != me]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    server.join()
    for t in drained:
        t.join()
    # received everything from every peer: the round's exchange is over for this host
    print(f"{time.time() - start:.3f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="10,100")
    ap.add_argument("--bytes", type=int, default=1_250_000, help="payload per pair of hosts")
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--peer", nargs=4, type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.peer:
        me, count, start, net = args.peer
        peer(int(me), int(count), args.bytes, start, int(net))
        return
    sys.path.insert(0, str(HERE))
    import hosts

    print("Mbit/s  payload per pair MB  ideal s  slowest host s  slowest / ideal")  # slowest to receive all
    for rate in [float(r) for r in args.rates.split(",")]:
        with hosts.Hosts(args.hosts, rates=[rate] * args.hosts, net=78) as h:
            start = time.time() + 2.0
            procs = [h.start(i, [sys.executable, __file__, "--bytes", str(args.bytes), "--peer", str(i),
                                 str(args.hosts), str(start), "78"], stdout=subprocess.PIPE)
                     for i in range(args.hosts)]
            took = [float(p.communicate(timeout=300)[0].decode().split()[-1]) for p in procs]
        ideal = (args.hosts - 1) * args.bytes * 8 / (rate * 1e6)
        print(f"{rate:6g}  {args.bytes / 1e6:19.3f}  {ideal:7.2f}  {max(took):14.2f}  {max(took) / ideal:15.2f}")


if __name__ == "__main__":
    main()
