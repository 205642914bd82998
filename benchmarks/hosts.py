"""Test hosts on one machine: K network namespaces, each with its own address on one bridge and a rate-limited
uplink, for running jwins's multi-machine recipe over links that really are slow.

    sudo python benchmarks/hosts.py --hosts 4 --rate 100 -- jwins run CONFIG ...   # see tests/test_network.py

Layout: a namespace ``<prefix>-sw`` holds a bridge (the switch); each host ``<prefix>-h<i>`` gets a veth pair
whose one end, ``eth0`` with address ``10.<net>.0.<i+1>/24``, lies in the host and whose other end is a port of
the bridge. Each host's egress on ``eth0`` is shaped with ``tc tbf`` at its rate (Mbit/s; none: unshaped). The
machine's own namespace is never touched: only addresses inside these namespaces are used, and everything made
(namespaces, links, the processes started in them) is removed on exit, also after an error or a signal.
Needs root (``ip netns``); :func:`available` says whether this machine can.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def available() -> str | None:
    """None when network namespaces can be made here, else why not (one line)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"jwprobe{os.getpid()}"
    try:
        done = _ip("netns", "add", name, check=False)
    except FileNotFoundError:
        return "the ip command (iproute2) is not installed"
    if done.returncode:
        return f"ip netns add failed: {done.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


class Hosts:
    """``with Hosts(4, rates=[100] * 4) as hosts: hosts.start(0, [...])``: K hosts on one bridge."""

    def __init__(self, count: int, *, rates: list[float | None] | None = None, prefix: str | None = None,
                 net: int = 77):
        self.count = count
        self.rates = list(rates) if rates is not None else [None] * count
        self.prefix = prefix or f"jw{os.getpid() % 100000}"
        self.net = net
        self.procs: list[subprocess.Popen] = []
        self.made: list[str] = []

    def ns(self, i: int) -> str:
        return f"{self.prefix}-h{i}"

    def addr(self, i: int) -> str:
        return f"10.{self.net}.0.{i + 1}"

    def __enter__(self) -> Hosts:
        if threading.current_thread() is threading.main_thread():  # a SIGTERM (timeout, kill) still cleans up
            self._previous = signal.signal(signal.SIGTERM, self._terminated)
        try:
            switch = f"{self.prefix}-sw"
            _ip("netns", "add", switch)
            self.made.append(switch)
            _ip("-n", switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", switch, "link", "set", "br0", "up")
            for i in range(self.count):
                ns = self.ns(i)
                _ip("netns", "add", ns)
                self.made.append(ns)
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("link", "add", f"{self.prefix}v{i}", "netns", ns, "type", "veth", "peer", "name", f"p{i}",
                    "netns", switch)
                _ip("-n", ns, "link", "set", f"{self.prefix}v{i}", "name", "eth0")
                _ip("-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", switch, "link", "set", f"p{i}", "master", "br0")
                _ip("-n", switch, "link", "set", f"p{i}", "up")
                if self.rates[i]:
                    self.shape(i, self.rates[i])
        except BaseException:
            self.close()
            raise
        return self

    def shape(self, i: int, mbit: float) -> None:
        """Limit host i's uplink to ``mbit`` Mbit/s (a token bucket of 32 KB, at most 50 ms of queue)."""
        subprocess.run(["ip", "netns", "exec", self.ns(i), "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf",
                        "rate", f"{mbit}mbit", "burst", "32kb", "latency", "50ms"], check=True,
                       capture_output=True)

    def start(self, i: int, cmd: list[str], *, env: dict[str, str] | None = None, cwd: str | Path | None = None,
              stdout=None, stderr=None) -> subprocess.Popen:
        """Run ``cmd`` on host i (in its own session, so that it and its children can be stopped together)."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(i), *cmd], env=env, cwd=cwd, stdout=stdout,
                                stderr=stderr, start_new_session=True)
        self.procs.append(proc)
        return proc

    def link(self, i: int, up: bool) -> None:
        _ip("-n", self.ns(i), "link", "set", "eth0", "up" if up else "down")

    def tx_bytes(self, i: int) -> int:
        """Bytes host i put on its link (the interface's counter, headers included)."""
        out = _ip("-n", self.ns(i), "-s", "link", "show", "eth0").stdout
        m = re.search(r"TX:\s+bytes.*\n\s+(\d+)", out)
        return int(m.group(1)) if m else 0

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for ns in reversed(self.made):
            for _ in range(3):  # a namespace goes once its last process has
                if _ip("netns", "del", ns, check=False).returncode == 0:
                    break
                time.sleep(0.2)
        self.made.clear()

    def _terminated(self, signum, frame):
        raise SystemExit(128 + signum)

    def __exit__(self, *exc) -> None:
        self.close()
        if getattr(self, "_previous", None) is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
