from pathlib import Path

import numpy as np
import pytest
from synthetic import gratings, write_csv, write_folders

from quantize.datasets import canonical_split, load_split
from quantize.errors import DataError


@pytest.fixture(scope="module")
def faces():
    return gratings(21, seed=1)


def test_csv_splits_by_usage(tmp_path, faces):
    x, y = faces
    path = write_csv(tmp_path / "fer.csv", {"Training": (x[:14], y[:14]), "PublicTest": (x[14:], y[14:])})
    train = load_split(path, "Training")
    public = load_split(path, "public")
    assert np.array_equal(train.x, x[:14]) and np.array_equal(train.y, y[:14])
    assert np.array_equal(public.x, x[14:]) and public.size == (48, 48)


def _csv(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("3," + " ".join(["0"] * 2300) + ",Training", "line 3: 2300 pixels, expected 2304"),
        ("9," + " ".join(["0"] * 2304) + ",Training", "line 3: emotion 9 is outside 0..6"),
        ("happy," + " ".join(["0"] * 2304) + ",Training", "line 3: emotion 'happy' is not an integer"),
        ("3," + " ".join(["300"] * 2304) + ",Training", "line 3: pixel values must be 0-255"),
        ("3," + " ".join(["x"] * 2304) + ",Training", "line 3: pixels must be space-separated integers"),
    ],
)
def test_csv_bad_row_names_file_and_line(tmp_path, row, message):
    good = "0," + " ".join(["7"] * 2304) + ",Training"
    path = _csv(tmp_path, [good, row])
    with pytest.raises(DataError) as err:
        load_split(path, "Training")
    assert str(path) in str(err.value) and message in str(err.value)


def test_csv_without_required_columns(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("label,image\n0,1 2 3 4\n")
    with pytest.raises(DataError, match="missing \\['emotion', 'pixels'\\]"):
        load_split(path, "Training")


def test_csv_missing_split_lists_present_ones(tmp_path, faces):
    x, y = faces
    path = write_csv(tmp_path / "fer.csv", {"Training": (x, y)})
    with pytest.raises(DataError, match=r"no rows with Usage .PrivateTest.*Training"):
        load_split(path, "PrivateTest")


def test_folders_any_case(tmp_path, faces):
    x, y = faces
    write_folders(tmp_path, "Train", x, y, case=str.upper)
    loaded = load_split(tmp_path, "Training")
    assert len(loaded) == len(x)
    # Folders are read class by class; compare as multisets of (label, image).
    got = sorted((int(label), img.tobytes()) for img, label in zip(loaded.x, loaded.y, strict=True))
    want = sorted((int(label), img.tobytes()) for img, label in zip(x, y, strict=True))
    assert got == want


def test_folders_unknown_class(tmp_path, faces):
    x, y = faces
    write_folders(tmp_path, "test", x[:3], y[:3])
    (tmp_path / "test" / "contempt").mkdir()
    with pytest.raises(DataError, match=r"unknown class folder .contempt."):
        load_split(tmp_path, "test")


def test_folders_unreadable_image(tmp_path, faces):
    x, y = faces
    write_folders(tmp_path, "train", x[:2], y[:2])
    bad = tmp_path / "train" / "happy" / "broken.png"
    bad.parent.mkdir(exist_ok=True)
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png: not a readable image"):
        load_split(tmp_path, "train")


def test_npz_layout(tmp_path, faces):
    x, y = faces
    np.savez(tmp_path / "fer.npz", x_train=x, y_train=y, x_public=x[:5], y_public=y[:5])
    assert len(load_split(tmp_path / "fer.npz", "Training")) == 21
    assert len(load_split(tmp_path / "fer.npz", "PublicTest")) == 5
    with pytest.raises(DataError, match=r"no split 'PrivateTest'.*\['public', 'train'\]"):
        load_split(tmp_path / "fer.npz", "PrivateTest")


def test_npz_bad_labels(tmp_path, faces):
    x, y = faces
    np.savez(tmp_path / "fer.npz", x_train=x, y_train=y + 3)
    with pytest.raises(DataError, match="label 7 at index"):
        load_split(tmp_path / "fer.npz", "train")


def test_unknown_format_and_missing_path(tmp_path):
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(DataError, match="unknown data format"):
        load_split(tmp_path / "data.txt", "Training")
    with pytest.raises(DataError, match="no such file"):
        load_split(tmp_path / "nope.csv", "Training")


def test_stratified_sample_keeps_every_class(faces):
    x, y = gratings(700, seed=2)
    from quantize.datasets import Faces

    sample = Faces(x, y, "mem").stratified_sample(70)
    assert len(sample) == 70
    assert set(np.unique(sample.y)) == set(range(7))


def test_split_aliases():
    assert canonical_split("train") == "Training"
    assert canonical_split("VAL") == "PublicTest"
    assert canonical_split("custom") == "custom"


def test_csv_with_byte_order_mark_and_spaced_header(tmp_path, faces):
    """Spreadsheet programs save CSVs starting with a UTF-8 byte-order mark; some put spaces after the commas."""
    x, y = faces
    plain = write_csv(tmp_path / "plain.csv", {"Training": (x, y)})
    text = plain.read_text().replace("emotion,pixels,Usage", "emotion, pixels, Usage", 1)
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    loaded = load_split(bom, "Training")
    assert np.array_equal(loaded.x, x) and np.array_equal(loaded.y, y)
