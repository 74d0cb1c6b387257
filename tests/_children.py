"""Child processes for the tests: a Python that imports this checkout's phidice, and gloo ranks on the loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a gloo or torchrun rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(gloo: bool = False, **extra: str) -> dict:
    """The environment of a child Python that imports this checkout's phidice.

    ``gloo``: one OpenMP thread per process and the loopback as gloo's interface (several ranks on 2 CPUs).
    """
    env = dict(os.environ, **extra)
    if (SRC / "phidice").is_dir():
        env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    if gloo:
        env["OMP_NUM_THREADS"] = "1"
        if sys.platform.startswith("linux"):
            env["GLOO_SOCKET_IFNAME"] = "lo"
    return env


def run_python(args, cwd=None, stdin=None, env=None, timeout=600) -> list[str]:
    """stdout lines of ``python *args`` in ``cwd``; a failure shows the child's stdout and stderr."""
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=child_env() if env is None else env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"{' '.join(map(str, args))[:300]}: exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-3000:]}\n"
        f"--- stderr ---\n{proc.stderr[-6000:]}"
    )
    return proc.stdout.splitlines()


def run_ranks(worker, world: int, outdir, timeout: int) -> None:
    """``python worker RANK WORLD PORT OUTDIR`` for every rank at once; each must exit 0 (its log shown if not)."""
    env = child_env(gloo=True, PYTHONWARNINGS="ignore")
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), str(r), str(world), str(port), str(outdir)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(world)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for r, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"rank {r} failed (exit {p.returncode}):\n{log}"
