"""Run in a fresh process (``python -m edgecnn.harness.memory_probe MODEL.onnx THREADS [MODE]``): the resident
memory an ONNX Runtime session of MODEL takes with edgecnn's own session options, printed as one JSON line.

MODE ``deployed`` (the default): :func:`edgecnn.backends.onnxruntime.session`, exactly as edgecnn's runtime
creates it (memory arena, memory patterns, all graph optimisations, weight prepacking: ONNX Runtime's defaults),
the model read from its file. MODE ``liveness``: the configuration in which ONNX Runtime allocates what the
liveness model counts and nothing more (arena, memory patterns and prepacking off, basic graph optimisation),
which isolates what the deployed settings add.

The baseline is the process after ``import onnxruntime``: a deployment's first session also pays what any session
costs once (environment, kernel registry, thread pool: about 9 MiB on 2 cores), so ``deployed`` counts it; the
``liveness`` mode creates a one-node session before its baseline, leaving the model's own share. From there,
``load_peak``/``loaded``: the peak during and the resident memory after creating the session; ``run_peak``:
the peak over two runs of one image (batch 1; the first run sizes
the memory pattern and the arena, the second reuses them); ``peak``: the largest of all, the figure a
deployment must budget. Resident memory (``VmHWM``, reset through ``/proc/self/clear_refs``) counts only the
pages touched, so an arena's reserved but unused tail is not in it.
"""
from __future__ import annotations

import json
import sys


def main(path: str, threads: int | None, mode: str = "deployed") -> dict:
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from ..backends.onnxruntime import session_options
    from .rss import peak_rss_bytes, reset_peak, rss_bytes

    def options():
        so = session_options(threads)
        if mode == "liveness":
            so.enable_cpu_mem_arena = False
            so.enable_mem_pattern = False
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            so.add_session_config_entry("session.disable_prepacking", "1")
        return so

    def make(src):
        return ort.InferenceSession(src, options(), providers=["CPUExecutionProvider"])

    tiny = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny",
                                               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]))
    if mode == "liveness":  # the model's own share only: what any session costs once is paid before the baseline
        make(tiny.SerializeToString()).run(None, {"x": np.zeros(1, np.float32)})
    before = rss_bytes()
    reset_peak()
    sess = make(path)
    loaded, load_peak = rss_bytes(), peak_rss_bytes()
    inp = sess.get_inputs()[0]
    x = np.zeros([d if isinstance(d, int) else 1 for d in inp.shape], np.float32)
    reset_peak()
    for _ in range(2):
        sess.run(None, {inp.name: x})
    run_peak = peak_rss_bytes()
    return {"mode": mode, "threads": threads, "load_peak_bytes": load_peak - before, "loaded_bytes": loaded - before,
            "run_peak_bytes": run_peak - before, "peak_bytes": max(load_peak, run_peak) - before}


def train(name: str, resolution: int, batches: list[int], optimizer: str) -> dict:
    """A real CPU training step of the zoo model ``name`` at each batch size (after a warm-up step at the first):
    the peak resident growth of each step over the resident memory before it, and the optimizer state PyTorch
    created (bytes of every tensor in ``optimizer.state``)."""
    import torch

    from ..models import get_spec
    from ..models._factory import build_model
    from .rss import peak_rss_bytes, reset_peak, rss_bytes

    torch.manual_seed(0)
    spec = get_spec(name)
    model = build_model(spec, spec.num_classes, {}).train()
    params = list(model.parameters())
    opt = {"sgd": lambda: torch.optim.SGD(params, lr=1e-3),
           "sgd_momentum": lambda: torch.optim.SGD(params, lr=1e-3, momentum=0.9),
           "adam": lambda: torch.optim.Adam(params, lr=1e-3),
           "adamw": lambda: torch.optim.AdamW(params, lr=1e-3)}[optimizer]()
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(b: int) -> None:
        x = torch.randn(b, spec.in_chans, resolution, resolution)
        y = torch.randint(0, spec.num_classes, (b,))
        opt.zero_grad(set_to_none=False)  # the gradients stay allocated between steps, as in a training loop
        loss_fn(model(x), y).backward()
        opt.step()

    step(batches[0])  # gradients and optimizer state exist from here on
    peaks = {}
    for b in batches:
        before = rss_bytes()
        reset_peak()
        step(b)
        peaks[b] = peak_rss_bytes() - before
    state = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if torch.is_tensor(t))
    return {"peak_growth_bytes": peaks, "optimizer_state_bytes": state}


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[0] == "--train":
        print(json.dumps(train(args[1], int(args[2]), [int(b) for b in args[3].split(",")], args[4])))
        raise SystemExit(0)
    print(json.dumps(main(args[0], int(args[1]) or None, *(args[2:3] or ["deployed"]))))
