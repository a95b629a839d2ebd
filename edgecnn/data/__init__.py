"""Real images in, model-ready arrays out.

Preprocessing is the classic ImageNet evaluation transform, driven by the model (its published
checkpoint's preprocessing, else the architecture's plain one: :func:`edgecnn.models.preprocessing`):
resize the shorter side to ``resolution / crop_pct``, centre-crop ``resolution``, scale to
[0, 1], normalise with the spec's mean/std, NCHW float32. Calibration uses random crops of
real photos (a fixed seed), so int8 ranges see the statistics of real images, not noise; a
calibration ImageFolder (your own data, class sub-folders) with enough images is used as it is, one
evaluation-transform crop per image.

Labels: an ImageFolder's classes are its sub-folder names, sorted (as torchvision's ImageFolder);
``imagenet_classes.txt`` holds the 1000 ImageNet-1k class names in the standard index order
(WordNet ids sorted), taken from timm 1.0.31 (``timm/data/_info/imagenet_synsets.txt`` mapped through
``imagenet_synset_to_lemma.txt``, Apache-2.0).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import CalibrationDataError, ConfigError
from ..guard import check_limit, check_memory, limit, safe_text
from ..manifest import resize_for

BUNDLED_DIR = Path(__file__).resolve().parent / "images"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
# Held out: int8 fidelity is judged on photos the calibration never saw.
CALIBRATION_PHOTOS = ("astronaut", "rocket", "china", "flower")
EVALUATION_PHOTOS = ("chelsea", "coffee", "grace_hopper")
CLASS_LISTS = {"imagenet-1k": Path(__file__).resolve().parent / "imagenet_classes.txt"}


@dataclass(frozen=True)
class Preprocessing:
    resolution: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float = 0.875
    channels: int = 3

    def __post_init__(self) -> None:
        check_limit("resolution", self.resize, "resize (resolution / crop_pct)")  # the image is resized to it first

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        """Inverse of :meth:`to_dict` (a manifest's ``preprocessing``)."""
        return cls(d["resolution"], tuple(d["mean"]), tuple(d["std"]), d["crop_pct"], d["channels"])

    @classmethod
    def from_sizes(cls, *, crop: int, resize: int | None, mean: Sequence[float], std: Sequence[float],
                   channels: int) -> "Preprocessing":
        """Resize the shorter side to ``resize`` (default: ``crop``), centre-crop ``crop``."""
        resize = crop if resize is None else resize
        if resize < crop:
            raise ConfigError(f"--resize {resize} is smaller than the crop {crop}: the crop would not fit")
        if len(mean) != channels or len(std) != channels:
            raise ConfigError(f"mean and std need one value per input channel ({channels}), "
                              f"got {len(mean)} and {len(std)}")
        if any(v <= 0 for v in std):
            raise ConfigError(f"std values must be positive, got {tuple(std)}")
        return cls(crop, tuple(float(v) for v in mean), tuple(float(v) for v in std), crop / resize, channels)

    @property
    def resize(self) -> int:
        """The shorter side after resizing, before the centre crop."""
        return resize_for(self.resolution, self.crop_pct)

    def to_dict(self) -> dict:
        """Everything a consumer needs to feed the model (also embedded in every artifact's metadata)."""
        return {"resolution": self.resolution, "mean": list(self.mean), "std": list(self.std),
                "crop_pct": self.crop_pct, "channels": self.channels, "resize": self.resize,
                "crop": self.resolution, "interpolation": "bilinear", "resize_mode": "shorter side",
                "crop_mode": "centre", "scale": "1/255", "channel_order": "RGB" if self.channels == 3 else "L",
                "layout": "NCHW", "dtype": "float32"}

    def _normalise(self, img: Image.Image) -> np.ndarray:
        if self.channels not in (1, 3):  # what to_model_mode makes of any image: grayscale or RGB
            raise ConfigError(f"edgecnn makes images into 1 (grayscale) or 3 (RGB) channels; this model takes "
                              f"{self.channels}, which cannot be made from an image")
        arr = np.asarray(img, dtype=np.float32) / 255.0
        if arr.ndim == 2:
            arr = arr[:, :, None]
        arr = (arr - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def __call__(self, img: Image.Image) -> np.ndarray:
        """One PIL image -> (C, H, W) float32, the evaluation transform."""
        img = to_model_mode(img, self.channels)
        r, short = self.resolution, self.resize
        w, h = img.size
        scale = short / min(w, h)
        img = img.resize((max(r, round(w * scale)), max(r, round(h * scale))), Image.Resampling.BILINEAR)
        w, h = img.size
        left, top = (w - r) // 2, (h - r) // 2
        return self._normalise(img.crop((left, top, left + r, top + r)))

    def random_crops(self, img: Image.Image, n: int, rng: np.random.Generator) -> list[np.ndarray]:
        """``n`` random crops covering 25-100% of the image (aspect 3/4..4/3), resized to the input size."""
        img = to_model_mode(img, self.channels)
        w, h = img.size
        out = []
        for _ in range(n):
            area = w * h * rng.uniform(0.25, 1.0)
            aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            cw = int(min(w, round(np.sqrt(area * aspect))))
            ch = int(min(h, round(np.sqrt(area / aspect))))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            crop = img.crop((x, y, x + cw, y + ch)).resize((self.resolution,) * 2, Image.Resampling.BILINEAR)
            out.append(self._normalise(crop))
        return out


def to_model_mode(img: Image.Image, channels: int) -> Image.Image:
    """Grayscale, palette, RGBA and 16-bit images -> 8-bit RGB (or L for 1-channel models).

    16-bit values map by the bit depth (65535 -> 255), not by the image's own maximum: a dark
    16-bit photo stays as dark as its 8-bit twin. Float images have no fixed range: min-max.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        full = 65535.0 if arr.max() <= 65535 else arr.max()  # mode I holds 16-bit PNG/PGM data
        img = Image.fromarray(np.clip(np.rint(np.maximum(arr, 0) * (255.0 / full)), 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = arr.min(), arr.max()
        img = Image.fromarray(((arr - lo) / ((hi - lo) or 1.0) * 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("L" if channels == 1 else "RGB")


def find_images(folder: str | Path) -> list[Path]:
    """Image files in a flat folder or an ImageFolder tree (class sub-folders), sorted."""
    folder = Path(folder)
    if not folder.exists():
        raise CalibrationDataError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise CalibrationDataError(f"not a folder: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CalibrationDataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def imagefolder_classes(folder: str | Path) -> list[str] | None:
    """The class names when ``folder`` is an ImageFolder (every image inside a class sub-folder, none at
    the top), sorted as torchvision's ImageFolder sorts them; None for a flat or mixed folder."""
    folder = Path(folder)
    if not folder.is_dir() or any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
        return None
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")
                     and any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in d.rglob("*")))
    return classes or None


def labelled_batch(prep: Preprocessing, folder: str | Path) -> tuple[np.ndarray, np.ndarray, list[str], list[Path]]:
    """Every image of an ImageFolder, once, through the evaluation transform: ``(x, y, classes, paths)``,
    ``y`` the index of each image's class in ``classes`` (unreadable images are skipped with a warning)."""
    classes = imagefolder_classes(folder)
    if classes is None:
        raise CalibrationDataError(f"{folder} is not an ImageFolder (images in class sub-folders, none at the top)")
    xs, ys, paths, bad = [], [], [], []
    per_class = [find_images(Path(folder) / name) for name in classes]
    _check_batch(prep, sum(map(len, per_class)), f"labelled images in {safe_text(folder)}")
    for i, files in enumerate(per_class):
        for path in files:
            try:
                xs.append(prep(open_image(path)))
            except UNREADABLE as e:
                bad.append(f"{path.name} ({type(e).__name__})")
                continue
            ys.append(i)
            paths.append(path)
    if not xs:
        raise CalibrationDataError(f"none of the images in {folder} could be read: {', '.join(bad[:5])}")
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s): {', '.join(bad[:5])}", stacklevel=2)
    return np.stack(xs).astype(np.float32), np.asarray(ys, np.int64), classes, paths


def read_labels(path: str | Path) -> list[str]:
    """Class names, one per line (a JSON list also works); surrounding blank lines are ignored."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"labels file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read labels file {path} ({type(e).__name__}): expected UTF-8 text, "
                          "one class name per line") from None
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError:
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{path} starts like a JSON list but is not a list of strings")
    else:
        names = [line.strip() for line in text.strip().splitlines()]
        empty = [i + 1 for i, n in enumerate(names) if not n]
        if empty:
            raise ConfigError(f"labels file {path}: line {empty[0]} is empty (one class name per line)")
    if not names:
        raise ConfigError(f"labels file {path} is empty (one class name per line)")
    return names


def match_classes(folder_classes: Sequence[str], labels: Sequence[str], *, where: str) -> list[int]:
    """The index in ``labels`` (the model's outputs) of each ImageFolder class. A folder name matches a
    label exactly, else ignoring case, '_' / '-' for spaces, and for a label such as 'tabby, tabby cat'
    any one of its comma-separated names (when that name is not shared). A class with no match is a
    one-line error: accuracy against the wrong labels would be a wrong number, silently."""
    def norm(text: str) -> str:
        return " ".join(text.lower().replace("_", " ").replace("-", " ").split())

    exact = {name: i for i, name in reversed(list(enumerate(labels)))}
    loose: dict[str, set[int]] = {}
    for i, label in enumerate(labels):
        for alias in {norm(label), *(norm(a) for a in label.split(",") if a.strip())}:
            loose.setdefault(alias, set()).add(i)
    found, missing = [], []
    for name in folder_classes:
        hits = {exact[name]} if name in exact else loose.get(norm(name), set())
        if len(hits) == 1:
            found.append(next(iter(hits)))
        else:
            missing.append(name)
    if missing:
        sample = ", ".join(f"'{n}'" for n in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ConfigError(f"the class folders of {where} do not match the model's {len(labels)} labels: {sample} "
                          f"{'is' if len(missing) == 1 else 'are'} not among them (labels start: "
                          f"{', '.join(repr(label) for label in labels[:3])}); rename the folders or pass --labels")
    return found


def class_names(label_set: str) -> list[str] | None:
    """The names of a shipped label set (``"imagenet-1k"``), or None for one not shipped."""
    path = CLASS_LISTS.get(label_set)
    return path.read_text(encoding="utf-8").splitlines() if path is not None else None


UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError)


def open_image(path: str | Path) -> Image.Image:
    """One image, decoded, when it has at most the ``image_pixels`` limit of pixels (checked from its header,
    before decoding: a decompression bomb is one line, not gigabytes); unreadable ones raise as PIL does."""
    return _opened(path, decode=True)


def image_size(path: str | Path) -> tuple[int, int]:
    """An image's width and height from its header alone (nothing decoded), within the ``image_pixels``
    limit as :func:`open_image` checks it; unreadable ones raise as PIL does."""
    return _opened(path, decode=False)


def _opened(path: str | Path, *, decode: bool):
    cap = limit("image_pixels")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:  # reads the header only
                w, h = im.size
                if w * h > cap:
                    raise Image.DecompressionBombError(f"{w}x{h}")
                if not decode:
                    return w, h
                im.load()
                return im.copy()
        except Image.DecompressionBombError:
            raise CalibrationDataError(f"image {safe_text(Path(path).name)} has more pixels than edgecnn's limit of "
                                       f"{cap} (a decompression bomb?); set EDGECNN_MAX_IMAGE_PIXELS to raise it") from None


def load_images(paths: Iterable[str | Path]) -> list[Image.Image]:
    """Open and fully decode images; unreadable or truncated ones are skipped with a warning."""
    images, bad = [], []
    for p in paths:
        try:
            images.append(open_image(p))
        except UNREADABLE as e:
            bad.append(f"{Path(p).name} ({type(e).__name__})")
    if not images:
        raise CalibrationDataError("none of the images could be read" + (f": {', '.join(bad[:5])}" if bad else ""))
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s): {', '.join(bad[:5])}", stacklevel=2)
    return images


def _decoded(files: Sequence[Path], bad: list[str]) -> Iterator[tuple[int, Image.Image]]:
    """Each readable file's image, one at a time (only one is held decoded), with its index; unreadable
    ones are noted in ``bad`` and left out."""
    for i, p in enumerate(files):
        try:
            im = open_image(p)
        except UNREADABLE as e:
            bad.append(f"{Path(p).name} ({type(e).__name__})")
            continue
        yield i, im


def _warn_bad(bad: list[str], got: int) -> None:
    if not got:
        raise CalibrationDataError("none of the images could be read" + (f": {', '.join(bad[:5])}" if bad else ""))
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s): {', '.join(bad[:5])}", stacklevel=3)


def _check_batch(prep: "Preprocessing", n: int, what: str) -> None:
    """``n`` inputs within the image-count limit and the memory this machine has, before decoding any."""
    check_limit("images", n, what, CalibrationDataError)
    check_memory(n * prep.channels * prep.resolution ** 2 * 4, f"{n} {what} at {prep.resolution}x{prep.resolution}")


def bundled_images(names: Sequence[str] | None = None) -> list[Image.Image]:
    names = names or CALIBRATION_PHOTOS + EVALUATION_PHOTOS
    return load_images(BUNDLED_DIR / f"{n}.jpg" for n in names)


def calibration_batch(prep: Preprocessing, n: int, *, folder: str | Path | None = None, seed: int = 0) -> np.ndarray:
    """``n`` inputs for calibration: random crops spread evenly over the photos (decoded one at a time)."""
    if n < 1:
        raise CalibrationDataError(f"calibration size must be at least 1, got {n}")
    _check_batch(prep, n, "calibration inputs")
    if folder is None:
        return _crops(prep, bundled_images(CALIBRATION_PHOTOS), n, seed)
    files = find_images(folder)
    if len(files) >= n and imagefolder_classes(folder) is not None:
        # A dataset (class sub-folders) with enough images: n of them, spread over it, as the model sees them.
        picks = [files[i] for i in np.linspace(0, len(files) - 1, n).round().astype(int)]
        bad: list[str] = []
        xs = [prep(im) for _, im in _decoded(picks, bad)]
        _warn_bad(bad, len(xs))
        return np.stack(xs).astype(np.float32)
    return _crops(prep, files, n, seed)


def evaluation_batch(prep: Preprocessing, n: int, *, folder: str | Path | None = None, seed: int = 1) -> np.ndarray:
    """``n`` held-out inputs: the centre crop of each photo first, then random crops (decoded one at a time)."""
    _check_batch(prep, n, "evaluation inputs")
    if folder is None:
        images: Sequence = bundled_images(EVALUATION_PHOTOS)
        centre = [prep(im) for im in images[:n]]
    else:
        files = find_images(folder)
        bad: list[str] = []
        centre = []
        for _, im in _decoded(files, bad):
            centre.append(prep(im))
            if len(centre) == n:
                break
        _warn_bad(bad, len(centre))
        images = files
    rest = _crops(prep, images, n - len(centre), seed) if n > len(centre) else np.empty((0,) + centre[0].shape, np.float32)
    return np.concatenate([np.stack(centre), rest]).astype(np.float32)


def _crops(prep: Preprocessing, images: Sequence[Image.Image | Path], n: int, seed: int) -> np.ndarray:
    """``n`` random crops spread evenly over ``images`` (decoded images, or files decoded one at a time);
    the share of a file that cannot be read goes to the readable ones."""
    rng = np.random.default_rng(seed)
    if images and not isinstance(images[0], Image.Image):
        bad: list[str] = []
        images = [p for p in images if _readable(p, bad)]  # each decoded and dropped: one held at a time
        _warn_bad(bad, len(images))
    per = [n // len(images) + (i < n % len(images)) for i in range(len(images))]
    crops: list[np.ndarray] = []
    bad = []
    for im, k in zip(images, per):
        if not k:
            continue
        if not isinstance(im, Image.Image):
            try:
                im = open_image(im)
            except UNREADABLE as e:
                bad.append(f"{Path(im).name} ({type(e).__name__})")
                continue
        crops += prep.random_crops(im, k, rng)
    _warn_bad(bad, len(crops))
    return np.stack(crops).astype(np.float32)


def _readable(path: Path, bad: list[str]) -> bool:
    """Whether ``path`` decodes (decoded and dropped at once: only one image is held)."""
    try:
        open_image(path)
        return True
    except UNREADABLE as e:
        bad.append(f"{Path(path).name} ({type(e).__name__})")
        return False
