"""Local worker ranks for ``jwins run --set engine.workers=K``: start them, supervise them, and the rank's own
entry point.

The launcher never rebuilds a command line: the run directory already holds the resolved ``config.json`` (the
caller wrote it), and every rank runs ``python -m jwins.launch RUN_DIR`` (``--resume`` to continue it), reads
that file, and runs it with ``engine.kind = "distributed"`` over gloo on 127.0.0.1. Rank 0 writes the run
directory; the launcher's caller reads the summary from it.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError, JwinsError


def needs_local_launch(config: Any) -> bool:
    """Whether this process should start ``engine.workers`` local ranks itself (it is not one of the ranks
    already). Refuses torchrun ranks asked to run the local engine, which would each run the whole experiment
    and write the same run directory."""
    if "RANK" in os.environ:
        if config.engine.kind == "local" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError(f"this is rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']} (started by "
                              "torchrun) but engine.kind = 'local'; add --set engine.kind=distributed")
        return False
    return config.engine.workers > 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_local_workers(run_dir: str | Path, workers: int, *, timeout: float = 60.0, resume: bool = False,
                         quiet: bool = False, command: Sequence[str] | None = None,
                         env: dict[str, str] | None = None) -> int:
    """Start ``workers`` ranks on this machine, each running ``command`` (default ``python -m jwins.launch``)
    with ``RUN_DIR`` (and ``--resume``, ``--quiet``) and the torch.distributed environment; wait for them.

    Returns 0 when every rank succeeded, 130 when all stopped after a Ctrl-C. If one fails, the others get
    ``timeout`` + 5 s to stop by themselves (they do, with a PeerError) before they are terminated; then a
    JwinsError names the rank that failed first. All ranks' errors reach stderr.
    """
    if workers < 1:
        raise ConfigError(f"engine.workers = {workers} must be >= 1")
    base = dict(os.environ if env is None else env)
    base.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(workers),
                LOCAL_WORLD_SIZE=str(workers), GROUP_RANK="0", ROLE_RANK="0", ROLE_WORLD_SIZE=str(workers),
                JWINS_LOCAL_RENDEZVOUS="1")  # the rendezvous listens on the loopback address only
    if sys.platform.startswith("linux") and "GLOO_SOCKET_IFNAME" not in base:
        base["GLOO_SOCKET_IFNAME"] = "lo"  # and so do gloo's own connections
    if "OMP_NUM_THREADS" not in base:   # K ranks on C cores: C // K threads each, as torchrun would (1)
        base["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    cmd = [*(command or [sys.executable, "-m", "jwins.launch"]), str(run_dir)]
    cmd += ["--resume"] * resume + ["--quiet"] * quiet
    base["JWINS_LAUNCHER_PID"] = str(os.getpid())
    procs: list[subprocess.Popen] = []
    forwarding = _Forward(procs)
    try:
        for r in range(workers):
            # each rank in its own session: a Ctrl-C in the terminal reaches the launcher only, which forwards it
            # once to every rank (so all of them stop after the same round, with a checkpoint)
            procs.append(subprocess.Popen(cmd, env={**base, "RANK": str(r), "LOCAL_RANK": str(r),
                                                    "ROLE_RANK": str(r)}, start_new_session=True))
        return _supervise(procs, timeout)
    finally:
        forwarding.restore()
        _stop(procs, grace=0)


class _Forward:
    """While the ranks run, SIGINT and SIGTERM sent to the launcher go to every rank (they stop after the
    current round with a checkpoint; the third stops them at once)."""

    def __init__(self, procs: list[subprocess.Popen]):
        self.procs = procs
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._forward) for s in (signal.SIGINT, signal.SIGTERM)}

    def _forward(self, signum, frame):
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.send_signal(signum)
                except OSError:
                    pass

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _supervise(procs: list[subprocess.Popen], timeout: float) -> int:
    failed: list[tuple[int, int | str]] = []   # (rank, status) in the order seen
    deadline = None
    while True:
        running = False
        for r, p in enumerate(procs):
            code = p.poll()
            if code is None:
                running = True
            elif code != 0 and all(r != f for f, _ in failed):
                failed.append((r, code))
        if not running:
            break
        if failed and deadline is None:
            deadline = time.monotonic() + timeout + 5
        if deadline is not None and time.monotonic() > deadline:
            for r, p in enumerate(procs):
                if p.poll() is None:
                    failed.append((r, "hung"))
            _stop(procs, grace=0)
            break
        time.sleep(0.05)
    if not failed:
        return 0
    codes = {code for _, code in failed}
    if len(failed) == len(procs) and len(codes) == 1 and codes <= {130, 143}:
        return codes.pop()   # Ctrl-C or SIGTERM: every rank stopped after the same round and rank 0 said how
        # to resume
    listed = ", ".join(f"rank {r} ({_status(c)})" for r, c in failed)
    raise JwinsError(f"{len(failed)} of {len(procs)} local ranks failed, in this order: {listed}; "
                     "each rank's own error is printed above")


def _status(code: int | str) -> str:
    if isinstance(code, str):
        return "still running after the others had stopped; terminated"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _stop(procs: list[subprocess.Popen], grace: float) -> None:
    end = time.monotonic() + grace
    for p in procs:
        if p.poll() is None and grace > 0:
            try:
                p.wait(max(end - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                pass
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def rank_main(argv: Sequence[str] | None = None, *, wrap_transport: Callable[[Any], Any] | None = None) -> int:
    """One local rank: run ``RUN_DIR/config.json`` as this torch.distributed rank. ``wrap_transport`` lets a
    test put a wrapper around the engine's transport (to inject faults); production passes nothing."""
    parser = argparse.ArgumentParser(prog="python -m jwins.launch", description="one local rank of a jwins run")
    parser.add_argument("run_dir")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    _die_with_launcher()
    from . import config as config_mod
    from .engine.distributed import DistributedEngine
    from .experiment import Interrupted, run

    try:
        cfg = config_mod.load(Path(args.run_dir) / "config.json", ["engine.kind=distributed"])
        engine = DistributedEngine(cfg.nodes, timeout=cfg.engine.timeout, device=cfg.engine.device, config=cfg)
        try:
            if wrap_transport is not None:
                engine.transport = wrap_transport(engine)
            quiet = args.quiet or engine.rank != 0
            run(cfg, engine=engine, run_dir=args.run_dir, resume=args.resume, quiet=quiet)
        finally:
            engine.close()
    except Interrupted as e:
        if os.environ.get("RANK", "0") == "0":  # every rank stopped after the same round: rank 0 says so
            print(f"jwins: {e}", file=sys.stderr)
        return e.exit_status
    except JwinsError as e:
        print(f"jwins: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _die_with_launcher() -> None:
    """A rank whose launcher is gone (killed, crashed) gets SIGTERM: it stops after the current round with a
    checkpoint instead of running on as an orphan. Linux's parent-death signal where there is one, else a
    thread that watches the parent."""
    launcher = int(os.environ.get("JWINS_LAUNCHER_PID", "0") or 0)
    if not launcher:
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        def watch() -> None:
            while os.getppid() == launcher:
                time.sleep(1.0)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="jwins-launcher-watch", daemon=True).start()
    if os.getppid() != launcher:  # it died before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    raise SystemExit(rank_main())
