"""What travels inside every artifact: the class names and the preprocessing, so any consumer (ours or
not) knows how to feed the model and read its output.

ONNX: ``metadata_props`` ``edgecnn.labels`` (a JSON list) and ``edgecnn.preprocessing`` (JSON: mean,
std, resize, crop, interpolation, channel order, layout...), readable with plain ``onnx``:

    {p.key: p.value for p in onnx.load("model.onnx").metadata_props}

OpenVINO IR: the same strings in ``rt_info`` under ``edgecnn/labels`` and ``edgecnn/preprocessing``
(:func:`edgecnn.exporters.openvino.save_ir` writes them).
"""
from __future__ import annotations

import json
from typing import Sequence

from ..artifact import LABELS_KEY, PREPROCESSING_KEY, Artifact, rehash
from ..fileio import atomic_path


def model_metadata(labels: Sequence[str] | None, preprocessing: dict) -> dict[str, str]:
    """The metadata entries for an export (no labels entry when the labels are unknown)."""
    meta = {PREPROCESSING_KEY: json.dumps(preprocessing, sort_keys=True)}
    if labels is not None:
        meta[LABELS_KEY] = json.dumps(list(labels), ensure_ascii=False)
    return meta


def embed_onnx(art: Artifact, metadata: dict[str, str]) -> Artifact:
    """Write ``metadata`` into the ONNX file's ``metadata_props`` (other entries kept, ours replaced)."""
    import onnx

    model = onnx.load(str(art.path))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    for key, value in kept + sorted(metadata.items()):
        model.metadata_props.add(key=key, value=value)
    with atomic_path(art.path) as tmp:
        onnx.save(model, str(tmp))
    return rehash(art)

