"""edgecnn predict: run a deployed artifact on image files with the preprocessing and labels it carries,
and return the top-K classes with probabilities."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..artifact import Artifact
from ..data import Preprocessing, open_image
from ..errors import ArtifactError, CalibrationDataError, ConfigError, EdgecnnError
from ..fileio import locked
from ..guard import safe_text
from ..manifest import Manifest, check_preprocessing
from ..parity import softmax
from ..runtimes import RUNTIMES, load
from .common import run_batched
from .worker import probe

DEFAULT_RUNTIME = "onnxruntime"


@dataclass
class Prediction:
    image: str
    top: list[dict]  # [{"index", "label", "probability"}], most probable first


@dataclass
class PredictReport:
    out_dir: str
    artifact: str
    runtime: str
    precision: str
    labels_from: str  # "the artifact" | "manifest.json" | "none: output indices"
    predictions: list[Prediction] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def choose_artifact(manifest: Manifest, *, artifact: str | None = None, runtime: str | None = None) -> Artifact:
    """The artifact named, else the one a user deploys on ``runtime``: a passing, non-advisory int8 that
    is no losing alternative, else the most derived passing fp32 (simplified over exported)."""
    if artifact is not None:
        art = manifest.artifact(artifact)
        if art is None:
            raise ConfigError(f"no artifact '{artifact}' in this export; artifacts: "
                              f"{', '.join(a.key for a in manifest.artifacts)}")
        return art
    runtime = runtime or DEFAULT_RUNTIME
    formats = RUNTIMES.get(runtime).formats
    own = [a for a in manifest.artifacts if a.runtime == runtime] or [a for a in manifest.artifacts
                                                                      if a.format in formats]
    if not own:
        raise ConfigError(f"this export has no artifact {runtime} runs; built: "
                          f"{', '.join(f'{a.key} ({a.format})' for a in manifest.artifacts)}")

    def deployable(a: Artifact) -> bool:
        r = manifest.results.get(a.key)
        return r is None or (r.ok and not r.alternative and r.advisory is None)

    for precision in ("int8", "fp32"):
        picks = [a for a in own if a.precision == precision and deployable(a)]
        if picks:
            return picks[-1]
    return own[-1]


def predict_dir(out_dir: str | Path, images: list[str | Path], *, runtime: str | None = None,
                artifact: str | None = None, top: int = 5, threads: int | None = None) -> PredictReport:
    """Top-``top`` classes of each image on one artifact of the export in ``out_dir``."""
    with locked(Path(out_dir), shared=True):
        manifest = Manifest.load(out_dir)
        art = choose_artifact(manifest, artifact=artifact, runtime=runtime)
        manifest.verify()
        pictures = [_open(p) for p in images]
        # a received graph runs here only once it has run in a worker, within its limits (on a zero input)
        probe(art, np.zeros(manifest.input_shape, np.float32), runtime=runtime, device=None, threads=threads)
        with load(art, runtime=runtime, threads=threads) as rt:
            prep_dict = manifest.preprocessing
            if rt.preprocessing is not None:  # what the artifact says about itself is received text too
                try:
                    check_preprocessing(rt.preprocessing)
                except (ValueError, EdgecnnError) as e:
                    raise ArtifactError(f"artifact {safe_text(art.key)} carries malformed preprocessing "
                                        f"({safe_text(e)[:80]})") from None
                prep_dict = rt.preprocessing
            prep = Preprocessing.from_dict(prep_dict)
            x = np.stack([prep(im) for im in pictures]).astype(np.float32)
            probs = softmax(run_batched(rt, x, manifest.input_shape[0]).astype(np.float64))
            fits = [(names, where) for names, where in ((rt.labels, "the artifact"), (manifest.labels, "manifest.json"))
                    if isinstance(names, list) and len(names) == probs.shape[1] and all(isinstance(n, str) for n in names)]
            labels, labels_from = fits[0] if fits else (None, "none: output indices")
            report = PredictReport(str(Path(out_dir).resolve()), art.key, rt.name, art.precision, labels_from)
    k = min(top, probs.shape[1])
    for path, p in zip(images, probs):
        order = np.argsort(-p)[:k]
        report.predictions.append(Prediction(str(path), [
            {"index": int(i), "label": labels[i] if labels else str(int(i)), "probability": float(p[i])}
            for i in order]))
    return report


def _open(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise CalibrationDataError(f"image not found: {path}")
    try:
        return open_image(path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise CalibrationDataError(f"cannot read image {path} ({type(e).__name__}): not a readable image file") from None
