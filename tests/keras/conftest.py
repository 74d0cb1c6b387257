"""Runs each Keras back end once per test session, in its own process (KERAS_BACKEND is fixed at import).

The worker (``_keras_worker.py``) gets every case as NumPy arrays (the fixed cases of ``_keras_cases`` and the
drawn ones of ``_keras_fuzz``) and returns values, gradients, errors and the scenario results; the tests compare
them here with the PyTorch losses. Under pytest-xdist the first test of a back end runs its worker and the other
test processes read its result (a file lock in the session's shared temporary directory), so each back end runs
once.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _keras_cases
import _keras_fuzz

WORKER = HERE / "_keras_worker.py"
WORKER_TIMEOUT_S = 1200
BACKEND_MODULE = {"jax": "jax", "torch": "torch", "tensorflow": "tensorflow"}


def job(backend: str) -> dict:
    cases = _keras_cases.build_cases()
    return {
        "cases": _keras_cases.cases_for(backend, cases),
        "errors": _keras_cases.build_error_cases(),
        "traced": _keras_cases.scenario_cases(cases),
        "serialize": _keras_cases.scenario_cases(cases),
        "fuzz": _keras_fuzz.worker_cases(),
    }


def start_worker(backend: str, workdir: Path):
    """The worker process for ``backend`` (Popen), or {"failed": reason} when it cannot start."""
    for module in ("keras", BACKEND_MODULE[backend]):
        if importlib.util.find_spec(module) is None:
            return {"failed": f"{module} is not installed: the Keras tests need the test extra (make install)"}
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "job.pkl", "wb") as f:
        pickle.dump(job(backend), f)
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        JAX_PLATFORMS="cpu",
        CUDA_VISIBLE_DEVICES="",
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONWARNINGS="ignore",
    )
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(workdir / "job.pkl"), str(workdir / "result.pkl"), str(workdir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_worker(backend: str, proc, workdir: Path) -> dict:
    """The worker's results, or {"failed": reason}."""
    if isinstance(proc, dict):
        return proc
    try:
        _, err = proc.communicate(timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        return {"failed": f"the {backend} worker ran over {WORKER_TIMEOUT_S} s"}
    if proc.returncode != 0:
        return {"failed": f"the {backend} worker exited with {proc.returncode}:\n{err[-6000:]}"}
    with open(workdir / "result.pkl", "rb") as f:
        return pickle.load(f)


def selected_backends(session) -> list[str]:
    """The back ends that this session's Keras tests ask for (TensorFlow only with --tensorflow)."""
    found = []
    for item in session.items:
        spec = getattr(item, "callspec", None)
        if spec is None or "keras_run" not in getattr(item, "fixturenames", ()) or item.get_closest_marker("skip"):
            continue
        backend = spec.params.get("backend")
        if backend is not None and backend not in found:
            found.append(backend)
    return found


@pytest.fixture(scope="session")
def keras_run(request, tmp_path_factory):
    """``keras_run(backend)``: the worker's results for that back end. The first call starts the workers of
    every back end the session tests, side by side, and waits for them; later calls (and, under xdist, the
    other test processes) read the stored results."""
    from filelock import FileLock

    shared = hasattr(request.config, "workerinput")  # an xdist worker: share with the other workers
    root = tmp_path_factory.getbasetemp().parent if shared else tmp_path_factory.getbasetemp()
    cache = {}

    def store(backend: str) -> Path:
        return root / f"keras-{backend}.pkl"

    def get(backend: str) -> dict:
        if backend not in cache:
            with FileLock(str(root / "keras-workers.lock")):
                wanted = [
                    b for b in dict.fromkeys(selected_backends(request.session) + [backend]) if not store(b).exists()
                ]
                procs = {b: start_worker(b, root / f"keras-{b}") for b in wanted}
                for b, proc in procs.items():
                    with open(store(b), "wb") as f:
                        pickle.dump(finish_worker(b, proc, root / f"keras-{b}"), f)
            with open(store(backend), "rb") as f:
                cache[backend] = pickle.load(f)
        result = cache[backend]
        if "failed" in result:
            pytest.fail(result["failed"], pytrace=False)
        return result

    return get
