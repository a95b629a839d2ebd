"""Received graphs run in a worker process, with a time and a memory limit, that Ctrl-C and SIGTERM end.

A graph from a received folder can ask for anything its operators allow: an ONNX ``Loop`` with a trip
count of 1e12 keeps ONNX Runtime's C++ busy (no Python signal handler runs until it returns), a
``ConstantOfShape`` of 1e10 asks for 40 GB. So :func:`run_artifact` loads and runs one artifact in a
fresh Python process (this module, ``python -m edgecnn.harness.worker JOBDIR``):

- its address space is capped (``RLIMIT_AS``, the limit ``run_memory_bytes``): an allocation too large
  fails inside the worker, as an error, instead of taking the machine's memory;
- it gets ``run_seconds`` (``$EDGECNN_MAX_RUN_SECONDS``) of wall time, then it is killed and the
  artifact is a failed row naming the limit;
- Ctrl-C or SIGTERM in the caller kills it at once (it runs in its own session, so the terminal's
  Ctrl-C reaches only the caller, which ends it and exits with its one line);
- it loads the artifact from verified bytes (:func:`edgecnn.artifact.verified_bytes`) and never imports
  torch, so it starts in about a second.

It also measures what running the artifact cost in resident memory: the worker's peak growth from after
importing the runtime's library to the end of the run (``peak_rss_mib``, :mod:`edgecnn.harness.rss`).

:func:`run_python` is the one way edgecnn starts such a worker (the memory measurement uses it too).
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import ArtifactError, EdgecnnError, first_line
from ..exporters.graph import chunks
from ..guard import limit, safe_text
from .rss import MIB, peak_rss_bytes, reset_peak, rss_bytes

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
ORIGINAL_BATCH = 16  # the chunk a graph with a free batch dimension is run in
# The runtimes whose received graphs run in a worker. A TensorRT engine is native code that runs only when
# built here or trusted (--trust-source), on a CUDA context a fresh process would take seconds to create.
ISOLATED = ("onnxruntime", "openvino")


def check_batch(rt, batch: int) -> None:
    """:class:`ArtifactError` when the loaded artifact's input has a fixed batch other than ``batch`` (what
    manifest.json says, or asks for): one line before the runtime is fed a shape it rejects."""
    fixed = rt.input_shape[0] if getattr(rt, "input_shape", None) and isinstance(rt.input_shape[0], int) else None
    if fixed is not None and fixed != batch:
        raise ArtifactError(f"the artifact takes batches of {fixed} but manifest.json says {batch}: the manifest does "
                            "not describe this artifact; export again into the folder")


def run_batched(rt, x: np.ndarray, batch: int) -> np.ndarray:
    """Feed ``x`` in chunks of the artifact's batch size, padding the last chunk by repetition. An artifact
    whose own input has another fixed batch than ``batch`` (manifest.json's) is one line, not a runtime error."""
    check_batch(rt, batch)
    return np.concatenate([rt.run(chunk)[:n] for chunk, n in chunks(x, batch)])


def run_python(args: list[str], *, timeout: float, env: dict | None = None, stdout=subprocess.PIPE,
               stderr=subprocess.PIPE) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` with this checkout's edgecnn importable; killed (never left running) when it
    passes ``timeout`` seconds (:class:`subprocess.TimeoutExpired`) or when the caller is interrupted
    (Ctrl-C, SIGTERM: the interruption is raised again once the worker is gone)."""
    env = {**os.environ, **(env or {}),
           "PYTHONPATH": os.pathsep.join(filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, *args], stdout=stdout, stderr=stderr, text=True, env=env,
                            start_new_session=True)  # the terminal's Ctrl-C reaches the caller, who ends it
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:  # TimeoutExpired, KeyboardInterrupt (Ctrl-C, and SIGTERM as the CLI raises it)
        _kill(proc)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and anything it started (its own session)
    except (AttributeError, ProcessLookupError, PermissionError):  # AttributeError: not POSIX
        proc.kill()
    proc.wait()


def run_artifact(art, x: np.ndarray, *, batch: int | None, runtime: str | None, device: str | None,
                 threads: int | None, latency: bool = False, executed: bool = False):
    """``(logits, info, latency)`` of ``art`` run on ``x`` in a worker process (see the module docstring);
    ``executed``: ``info["executed"]`` holds the execution record (:mod:`edgecnn.runtimes.executed`);
    :class:`ArtifactError` with one line when it fails, runs past ``run_seconds`` or runs out of memory.
    ``batch=None``: the artifact's own fixed batch, else chunks of :data:`ORIGINAL_BATCH`."""
    from ..timing import Latency

    seconds = limit("run_seconds")
    name = safe_text(art.key if runtime is None else f"{art.key}@{runtime}")
    with tempfile.TemporaryDirectory(prefix="edgecnn-worker-") as work:
        job = Path(work)
        np.save(job / "x.npy", x)
        with open(job / "job.pkl", "wb") as f:  # written here, read by our own child: never received data
            pickle.dump({"artifact": art, "batch": batch, "runtime": runtime, "device": device, "threads": threads,
                         "latency": latency, "memory": limit("run_memory_bytes"), "executed": executed}, f)
        try:
            proc = run_python(["-m", "edgecnn.harness.worker", work], timeout=seconds)
        except subprocess.TimeoutExpired:
            raise ArtifactError(f"{name} ran past edgecnn's limit of {seconds} s for one artifact and was stopped; "
                                "set EDGECNN_MAX_RUN_SECONDS to allow more") from None
        try:
            result = json.loads((job / "result.json").read_text())
        except (OSError, ValueError):
            tail = (proc.stderr or "").strip().splitlines()
            why = (f"killed by signal {-proc.returncode}" if proc.returncode < 0 else
                   tail[-1][:200] if tail else f"exit status {proc.returncode}")
            raise ArtifactError(f"{name}: its worker process ended without a result ({safe_text(why)}; memory "
                                f"limit {limit('run_memory_bytes') >> 20} MiB, EDGECNN_MAX_RUN_MEMORY_BYTES)") from None
        if result.get("error"):
            raise ArtifactError(result["error"])
        out = np.load(job / "out.npy", allow_pickle=False)
    lat = Latency.from_dict(result["latency"]) if result.get("latency") else None
    return out, {**result["info"], "peak_rss_mib": result.get("peak_rss_mib")}, lat


def probe(art, x: np.ndarray, *, runtime: str | None, device: str | None, threads: int | None) -> float | None:
    """Run ``art`` once on ``x`` in a worker, with its limits, before a caller runs it in its own process
    (bench times it there; predict runs its images there): a graph that fails, hangs or asks for too much
    memory on ``x`` is refused here, in one line, instead of taking the caller with it. Returns the worker's peak
    resident-memory growth in MiB (None where not measured)."""
    if (runtime or art.runtime) not in ISOLATED:
        return None
    return run_artifact(art, x, batch=len(x), runtime=runtime, device=device, threads=threads)[1]["peak_rss_mib"]


def _limit_memory(nbytes: int) -> None:
    try:
        import resource
    except ImportError:  # not POSIX: the time limit still holds
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = nbytes if hard == resource.RLIM_INFINITY else min(nbytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _work(job: Path) -> dict:
    """In the worker: load the artifact from its verified bytes, run it, write its logits."""
    with open(job / "job.pkl", "rb") as f:
        task = pickle.load(f)
    _limit_memory(task["memory"])
    from ..runtimes import load
    from ..timing import measure

    art, batch = task["artifact"], task["batch"]
    x = np.load(job / "x.npy", allow_pickle=False)
    before = _memory_baseline(task["runtime"] or art.runtime)
    with load(art, runtime=task["runtime"], threads=task["threads"], device=task["device"]) as rt:
        if batch is None:
            fixed = rt.input_shape[0] if rt.input_shape and isinstance(rt.input_shape[0], int) else None
            batch = fixed or ORIGINAL_BATCH
        out = run_batched(rt, x, batch)
        lat = None
        if task["latency"]:
            lat = measure(rt.run, x[:batch] if len(x) >= batch else np.repeat(x[:1], batch, 0), warmup=3,
                          iterations=20).to_dict()
        info = asdict(rt.info())
        peak = peak_rss_bytes()  # before the execution record's extra session, which is not the artifact's
        if task.get("executed"):
            from ..runtimes.executed import record

            info["executed"] = record(rt)
    np.save(job / "out.npy", out)
    return {"info": info, "latency": lat,
            "peak_rss_mib": None if peak is None or before is None else round(max(peak - before, 0) / MIB, 1)}


def _memory_baseline(runtime: str | None) -> int | None:
    """Import the runtime's library first (what every process that runs it pays once, not this artifact), then
    start a new resident-memory peak; the resident memory at that point, the baseline of ``peak_rss_mib``."""
    import importlib

    try:
        importlib.import_module({"onnxruntime": "onnxruntime", "openvino": "openvino"}.get(runtime or "", "numpy"))
    except ImportError:  # load() says so in its own words
        pass
    reset_peak()  # where the kernel cannot (not Linux), the lifetime peak from getrusage
    return rss_bytes() if rss_bytes() is not None else peak_rss_bytes()


def main(job_dir: str) -> int:
    job = Path(job_dir)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a signal ends the worker at once: nothing here to clean up
    try:
        result = _work(job)
    except EdgecnnError as e:
        result = {"error": str(e)}
    except MemoryError:
        result = {"error": "out of memory (the worker's memory limit; EDGECNN_MAX_RUN_MEMORY_BYTES raises it)"}
    except Exception as e:  # noqa: BLE001 - one line for the caller, whatever a received graph raised
        result = {"error": f"{type(e).__name__}: {first_line(e)}"}
    (job / "result.json").write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
