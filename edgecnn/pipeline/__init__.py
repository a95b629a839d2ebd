"""The export orchestrator: the layer above exporters, runtimes and the harness, and below the CLI.

    from edgecnn.pipeline import ExportConfig, run_export
    result = run_export(ExportConfig("mobilenet_v2", int8=True))
    result.passed, result.manifest.results["int8"].parity.cosine
"""
from .config import ExportConfig, Plan
from .run import ExportResult, export, run_export

__all__ = ["ExportConfig", "ExportResult", "Plan", "export", "run_export"]
