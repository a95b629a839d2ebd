"""Exporters: every stage of the pipeline as a plain function that takes an Artifact and returns one.

    from edgecnn.exporters.torch_onnx import export_onnx      # torch -> ONNX (fp32)
    from edgecnn.exporters.simplify import simplify_onnx      # onnxsim
    from edgecnn.exporters.fp16 import convert_fp16           # fp16 compute, fp32 I/O
    from edgecnn.exporters.int8 import quantize_int8          # static PTQ, QDQ (+ bias correction...)
    from edgecnn.exporters.openvino import convert_ir, quantize_nncf
    from edgecnn.exporters.tensorrt import build_engine

Nothing here knows of the runtimes, the harness or the orchestrator that calls the stages in order
(:mod:`edgecnn.pipeline`); the package imports none of its modules, so importing one stage (say, the
int8 presets for the CLI's choices) loads only what that stage needs.
"""
