import numpy as np
import pytest
from PIL import Image

from edgecnn.data import (CALIBRATION_PHOTOS, EVALUATION_PHOTOS, Preprocessing, calibration_batch, evaluation_batch,
                          find_images, load_images, to_model_mode)
from edgecnn.errors import CalibrationDataError

PREP = Preprocessing(64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_bundled_photos_are_real_and_split():
    assert not set(CALIBRATION_PHOTOS) & set(EVALUATION_PHOTOS)
    cal = calibration_batch(PREP, 10)
    ev = evaluation_batch(PREP, 5)
    assert cal.shape == (10, 3, 64, 64) and ev.shape == (5, 3, 64, 64) and cal.dtype == np.float32
    # normalised real photos: roughly zero-mean, unit-ish spread, not constant
    assert -1.5 < cal.mean() < 1.0 and 0.5 < cal.std() < 2.0
    assert np.array_equal(calibration_batch(PREP, 10), cal)  # deterministic


def test_image_modes_are_converted(tmp_path):
    rgba = Image.new("RGBA", (80, 60), (255, 0, 0, 0))  # fully transparent -> white background
    assert to_model_mode(rgba, 3).getpixel((0, 0)) == (255, 255, 255)
    gray16 = Image.fromarray((np.arange(80 * 60).reshape(60, 80) * 10).astype(np.uint16))
    out = PREP(gray16)
    assert out.shape == (3, 64, 64) and np.isfinite(out).all()
    assert PREP(Image.new("L", (70, 90), 128)).shape == (3, 64, 64)


def test_folder_errors(tmp_path):
    with pytest.raises(CalibrationDataError, match="not found"):
        find_images(tmp_path / "nope")
    with pytest.raises(CalibrationDataError, match="no images"):
        find_images(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(CalibrationDataError, match="none of the images"):
        load_images(find_images(tmp_path))


def test_imagefolder_tree_and_corrupt_files_skipped(tmp_path):
    (tmp_path / "cat").mkdir()
    Image.new("RGB", (50, 40), (10, 200, 30)).save(tmp_path / "cat" / "a.png")
    (tmp_path / "cat" / "b.jpg").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="skipped 1"):
        batch = calibration_batch(PREP, 3, folder=tmp_path)
    assert batch.shape == (3, 3, 64, 64)
