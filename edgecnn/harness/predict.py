"""edgecnn predict: run a deployed artifact on image files with the preprocessing and labels it carries,
and return the top-K classes with probabilities."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..artifact import Artifact
from ..data import UNREADABLE, Preprocessing, image_size, open_image
from ..errors import ArtifactError, CalibrationDataError, ConfigError, EdgecnnError
from ..fileio import locked
from ..guard import check_limit, clip, safe_text
from ..manifest import Manifest, check_preprocessing
from ..parity import softmax
from ..runtimes import load
from .common import admit_engine, built_here, deployed_artifact, not_judged_reason, run_batched
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
    # set when this machine did not export the artifact: the results that chose it are the sender's word
    note: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def choose_artifact(manifest: Manifest, *, artifact: str | None = None, runtime: str | None = None) -> Artifact:
    """The artifact named, else the one a user deploys on ``runtime`` (:func:`common.deployed_artifact`, the
    same choice ``check`` judges against its full tolerance). An artifact that is not judged on ``runtime``
    (TensorRT's QDQ model on a CPU runtime) is never run, even when named."""
    if artifact is None:
        return deployed_artifact(manifest, runtime or DEFAULT_RUNTIME)
    art = manifest.artifact(artifact)
    if art is None:
        raise ConfigError(f"no artifact '{safe_text(artifact)}' in this export; artifacts: "
                          f"{', '.join(safe_text(a.key) for a in manifest.artifacts)}")
    runtime = runtime or art.runtime or DEFAULT_RUNTIME
    why = not_judged_reason(art, runtime)
    if why:
        raise ConfigError(f"artifact {safe_text(art.key)} is not deployed on {runtime} ({why}): deploy its engine, "
                          "or another artifact")
    return art


def predict_dir(out_dir: str | Path, images: list[str | Path], *, runtime: str | None = None,
                artifact: str | None = None, top: int = 5, threads: int | None = None,
                trust_source: bool = False) -> PredictReport:
    """Top-``top`` classes of each image on one artifact of the export in ``out_dir``.

    The images are counted and their headers read (size within the ``image_pixels`` limit) before any work;
    then they are decoded one at a time and run in chunks of the artifact's batch, so only one decoded
    image is held however many are given. A TensorRT engine this machine did not build is refused unless
    ``trust_source``."""
    paths = [Path(p) for p in images]
    check_limit("images", len(paths), "images to predict", CalibrationDataError)
    with locked(Path(out_dir), shared=True):
        manifest = Manifest.load(out_dir)
        art = choose_artifact(manifest, artifact=artifact, runtime=runtime)
        for path in paths:
            _probe(path)
        manifest.verify()
        admit_engine(manifest, art, trust_source=trust_source)
        # a received graph runs here only once it has run in a worker, within its limits (on a zero input)
        probe(art, np.zeros(manifest.input_shape, np.float32), runtime=runtime, device=None, threads=threads)
        with load(art, runtime=runtime, threads=threads) as rt:
            prep_dict = manifest.preprocessing
            if rt.preprocessing is not None:  # what the artifact says about itself is received text too
                try:
                    check_preprocessing(rt.preprocessing)
                    if rt.preprocessing["channels"] != manifest.input_shape[1]:
                        raise ValueError(f"{rt.preprocessing['channels']} channels for a model of "
                                         f"{manifest.input_shape[1]}")
                except (ValueError, EdgecnnError) as e:
                    raise ArtifactError(f"artifact {clip(art.key, 80)} carries malformed preprocessing "
                                        f"({clip(e, 80)})") from None
                prep_dict = rt.preprocessing
            prep = Preprocessing.from_dict(prep_dict)
            batch = manifest.input_shape[0]
            probs = np.concatenate([
                softmax(run_batched(rt, np.stack([prep(_open(p)) for p in paths[i:i + batch]]).astype(np.float32),
                                    batch).astype(np.float64))
                for i in range(0, len(paths), batch)])
            fits = [(names, where) for names, where in ((rt.labels, "the artifact"), (manifest.labels, "manifest.json"))
                    if isinstance(names, list) and len(names) == probs.shape[1] and all(isinstance(n, str) for n in names)]
            labels, labels_from = fits[0] if fits else (None, "none: output indices")
            report = PredictReport(str(Path(out_dir).resolve()), art.key, rt.name, art.precision, labels_from)
            if not built_here(manifest, art):
                report.note = (f"{safe_text(art.key)} was not exported on this machine (no local record of its "
                               "bytes): the results that chose it are the sender's; `edgecnn check` judges it here")
    k = min(top, probs.shape[1])
    for path, p in zip(images, probs):
        order = np.argsort(-p)[:k]
        report.predictions.append(Prediction(str(path), [
            {"index": int(i), "label": labels[i] if labels else str(int(i)), "probability": float(p[i])}
            for i in order]))
    return report


def _probe(path: Path) -> None:
    """The image is there and its header is readable, with no more pixels than the limit (nothing decoded)."""
    if not path.is_file():
        raise CalibrationDataError(f"image not found: {clip(path)}")
    try:
        image_size(path)
    except UNREADABLE as e:
        raise CalibrationDataError(f"cannot read image {clip(path)} ({type(e).__name__}): not a readable image "
                                   "file") from None


def _open(path: Path) -> Image.Image:
    try:
        return open_image(path)
    except UNREADABLE as e:
        raise CalibrationDataError(f"cannot read image {clip(path)} ({type(e).__name__}): not a readable image "
                                   "file") from None
