"""quantize convert and check end to end on real (small) Keras models, through the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
from runcli import quantize

pytestmark = pytest.mark.slow


def int8_predictions(tflite, x: np.ndarray) -> np.ndarray:
    """An independent int8 run: raw pixels minus 128, as the model's contract says."""
    try:
        from tflite_runtime.interpreter import Interpreter
    except ImportError:
        from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=str(tflite))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["quantization"] == (1.0, -128)
    interpreter.resize_tensor_input(inp["index"], [len(x), *inp["shape"][1:3], 1])
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], (x.astype(np.int16) - 128).astype(np.int8)[..., None])
    interpreter.invoke()
    return interpreter.get_tensor(out["index"]).argmax(axis=1)


def public_pixels(tiny, size):
    import cv2

    from quantize.datasets import load_split

    faces = load_split(tiny / "faces.csv", "PublicTest")
    return np.stack([cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR) for img in faces.x]), faces.y


@pytest.fixture(scope="module")
def converted48(tiny):
    out = tiny / "small48.tflite"
    quantize("convert", tiny / "small48.keras", "--data", tiny / "faces.csv", "--out", out, check=True)
    return out


def test_convert_writes_int8_model_and_sidecar(tiny, converted48):
    meta = json.loads(converted48.with_suffix(".json").read_text())
    assert meta["labels"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert (meta["input"]["height"], meta["input"]["width"]) == (48, 48)
    assert meta["input"]["dtype"] == "int8" and meta["input"]["scale"] == 1.0 and meta["input"]["zero_point"] == -128
    assert meta["source"]["file"] == "small48.keras" and len(meta["source"]["sha256"]) == 64
    assert meta["normalization"] == {"input_scale": pytest.approx(1 / 255), "input_offset": 0.0, "in_model": None}
    assert meta["accuracy"]["split"] == "PublicTest" and meta["accuracy"]["n"] == 210
    assert meta["calibration"]["n"] == 300


def test_convert_leaves_the_accuracy_out_when_no_unseen_split_is_left(tiny, tmp_path):
    """After a final fit on Training+PublicTest, a PublicTest figure would describe faces the model learned."""
    out = tmp_path / "final.tflite"
    result = quantize("convert", tiny / "small48.keras", "--data", tiny / "faces.csv", "--out", out,
                      "--eval-split", "none", check=True)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["accuracy"] is None and "trained on every labelled split" in meta["accuracy_note"]
    assert "no accuracy in the sidecar (--eval-split none)" in result.stderr and "PublicTest" not in result.stdout
    # check still gates the drop, and says the accuracy it prints may be on learned faces (terminal and report).
    checked = quantize("check", "--keras", tiny / "small48.keras", "--tflite", out, "--data", tiny / "faces.csv",
                       "--report", tmp_path / "report", check=True)
    assert "may be on faces it learned" in checked.stderr
    assert "may be on faces the model learned" in (tmp_path / "report" / "report.md").read_text()


def test_convert_warns_when_it_would_score_the_calibration_split(tiny, tmp_path):
    out = tmp_path / "m.tflite"
    result = quantize("convert", tiny / "small48.keras", "--data", tiny / "faces.csv", "--out", out,
                      "--eval-split", "Training", check=True)
    assert "--eval-split Training is also the calibration split" in result.stderr
    assert json.loads(out.with_suffix(".json").read_text())["accuracy"]["split"] == "Training"


def test_int8_agrees_with_keras(tiny, converted48):
    x, y = public_pixels(tiny, 48)
    float_pred = np.load(tiny / "small48.keras.pred.npy")
    int8_pred = int8_predictions(converted48, x)
    assert np.mean(float_pred == y) > 0.8, "the tiny model should learn the gratings"
    assert np.mean(int8_pred == float_pred) >= 0.95


def test_check_report_matches_an_independent_count(tiny, converted48, tmp_path):
    result = quantize("check", "--keras", tiny / "small48.keras", "--tflite", converted48, "--data", tiny / "faces.csv",
                      "--report", tmp_path, "--max-drop", "5")
    assert result.returncode == 0, result.stderr
    assert "agreement" in result.stdout and "PASS" in result.stdout
    assert "normalization: pixel * 0.00392157 + 0 (from the sidecar)" in result.stdout
    assert "no TTA (sidecar, confirmed by the int8 graph;" in result.stdout
    assert ("only 210 faces in the PublicTest split (under 500): one face is worth 0.48 points, 10% of --max-drop 5"
            in result.stderr)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["tta"]["applied"] == "none" and report["tta"]["mirror_steps"] > 4
    assert report["normalization"]["source"] == "sidecar"
    assert "no TTA (sidecar, confirmed by the int8 graph" in (tmp_path / "report.md").read_text()
    x, y = public_pixels(tiny, 48)
    float_pred = np.load(tiny / "small48.keras.pred.npy")
    int8_pred = int8_predictions(converted48, x)
    assert report["n"] == len(y) == 210
    assert report["float"]["accuracy"] == pytest.approx(np.mean(float_pred == y))
    assert report["int8"]["accuracy"] == pytest.approx(np.mean(int8_pred == y))
    assert report["drop_pts"] == pytest.approx(100 * (np.mean(float_pred == y) - np.mean(int8_pred == y)))
    assert report["agreement"] == pytest.approx(np.mean(float_pred == int8_pred))
    confusion = np.array(report["int8"]["confusion"])
    assert confusion.sum() == 210 and np.trace(confusion) == np.sum(int8_pred == y)
    happy = report["int8"]["per_class"]["happy"]
    assert happy["support"] == np.sum(y == 3)
    assert happy["recall"] == pytest.approx(np.sum((int8_pred == 3) & (y == 3)) / np.sum(y == 3))
    assert report["int8"]["latency_ms"] > 0 and report["int8"]["size_bytes"] == converted48.stat().st_size
    for name in ("report.md", "confusion-float.png", "confusion-int8.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_legacy_h5_64px_with_normalization_flags(tiny, tmp_path):
    out = tmp_path / "small64.tflite"
    result = quantize("convert", tiny / "small64.h5", "--data", tiny / "faces.csv", "--out", out,
                      "--input-scale", 2 / 255, "--input-offset", -1, "--calibration-size", "1000", check=True)
    assert result.stderr.count("--calibration-size 1000, but the Training split has only 420 faces") == 1
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["calibration"]["n"] == 420
    assert (meta["input"]["height"], meta["input"]["width"]) == (64, 64)
    x, _ = public_pixels(tiny, 64)
    agreement = np.mean(int8_predictions(out, x) == np.load(tiny / "small64.h5.pred.npy"))
    assert agreement >= 0.95
    # check reads the normalization from the sidecar by default.
    result = quantize("check", "--keras", tiny / "small64.h5", "--tflite", out, "--data", tiny / "faces.csv",
                      "--no-latency", "--report", tmp_path / "r")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "r" / "report.json").read_text())["agreement"] == pytest.approx(agreement)


def test_wrong_normalization_is_caught_by_the_gate(tiny, tmp_path):
    """Converting with the wrong flags folds the wrong normalization in; check (with the right flags) fails."""
    out = tmp_path / "wrong.tflite"
    quantize("convert", tiny / "small64.h5", "--data", tiny / "faces.csv", "--out", out, check=True)  # default 1/255
    result = quantize("check", "--keras", tiny / "small64.h5", "--tflite", out, "--data", tiny / "faces.csv",
                      "--input-scale", 2 / 255, "--input-offset", -1, "--no-latency")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout


def test_gate_exits_1_when_drop_exceeds_max(tiny, tmp_path):
    # The int8 model of an untrained network checked against the trained float model: a drop of tens of points.
    untrained = tmp_path / "untrained.tflite"
    quantize("convert", tiny / "untrained.keras", "--data", tiny / "faces.csv", "--out", untrained, check=True)
    # With the normalization flags given, the sidecar is still compared with --keras, and named as a likely cause.
    result = quantize("check", "--keras", tiny / "small48.keras", "--tflite", untrained, "--data", tiny / "faces.csv",
                      "--max-drop", "1.0", "--no-latency", "--report", tmp_path, "--input-scale", 1 / 255,
                      "--input-offset", 0)
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "different file" in result.stderr
    assert "check failed; a likely cause: " in result.stderr and "was converted from a different file" in result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["drop_pts"] > 1.0 and report["passed"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--keras", "missing.keras"], "missing.keras: no such model file"),
        (["--data", "missing.csv"], "missing.csv: no such file or directory"),
        (["--split", "PrivateTest"], "no rows with Usage 'PrivateTest'"),
        (["--max-drop", "-1"], "argument --max-drop: must be >= 0"),
    ],
)
def test_check_bad_input_exits_2(tiny, converted48, args, message):
    base = {"--keras": tiny / "small48.keras", "--tflite": converted48, "--data": tiny / "faces.csv"}
    flags = [str(v) for kv in base.items() for v in kv]
    result = quantize("check", *flags, *args, "--no-latency")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_convert_rejects_non_model_file(tiny, tmp_path):
    bogus = tmp_path / "bogus.keras"
    bogus.write_text("not a model")
    result = quantize("convert", bogus, "--data", tiny / "faces.csv", "--out", tmp_path / "x.tflite")
    assert result.returncode == 2
    assert "bogus.keras: not a Keras model: neither an HDF5 file" in result.stderr


def test_check_without_sidecar_asks_for_flags(tiny, converted48, tmp_path):
    lone = tmp_path / "lone.tflite"
    lone.write_bytes(converted48.read_bytes())
    result = quantize("check", "--keras", tiny / "small48.keras", "--tflite", lone, "--data", tiny / "faces.csv")
    assert result.returncode == 2
    assert "lone.json is missing" in result.stderr and "--input-scale" in result.stderr and "--labels" in result.stderr


def test_flip_tta_is_read_from_the_graph_and_checked_against_the_sidecar(tiny, converted48, tmp_path):
    """A flip-TTA graph answers the same for a face and its mirror image; a plain one does not (the gratings' mirror
    image is another class). Without a sidecar that decides how the float model is evaluated; with one, a sidecar
    that says otherwise is refused."""
    flip = tmp_path / "flip.tflite"
    quantize("convert", tiny / "small48.keras", "--data", tiny / "faces.csv", "--out", flip, "--tta", "flip", check=True)
    lone = tmp_path / "lone" / "flip.tflite"
    lone.parent.mkdir()
    lone.write_bytes(flip.read_bytes())
    common = ("--keras", tiny / "small48.keras", "--data", tiny / "faces.csv", "--no-latency", "--max-drop", "100")
    result = quantize("check", "--tflite", lone, "--input-scale", 1 / 255, "--input-offset", 0, *common,
                      "--report", tmp_path / "r")
    assert "flip TTA applied to the float model (detected from the int8 graph (no sidecar);" in result.stdout, result.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["tta"]["applied"] == "flip" and report["tta"]["mirror_steps"] <= 4
    assert report["normalization"]["source"] == "flags"
    assert abs(report["drop_pts"]) < 5, "like with like: the float model averages both views too"

    def with_sidecar_tta(tflite, tta):
        copy = tmp_path / tta / tflite.name
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(tflite.read_bytes())
        meta = json.loads(tflite.with_suffix(".json").read_text())
        copy.with_suffix(".json").write_text(json.dumps({**meta, "tta": tta}))
        return copy

    result = quantize("check", "--tflite", with_sidecar_tta(flip, "none"), *common)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "flip.json says tta 'none', but" in result.stderr and "averages each face with its mirror image" in result.stderr
    result = quantize("check", "--tflite", with_sidecar_tta(converted48, "flip"), *common)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "small48.json says tta 'flip', but" in result.stderr and "does not average mirror images" in result.stderr


def test_train_cli_writes_model_and_history(tiny, tmp_path):
    out = tmp_path / "edge.keras"
    result = quantize("train", "--data", tiny / "faces.csv", "--out", out, "--epochs", "2", "--batch-size", "64")
    assert result.returncode == 0, result.stderr
    history = json.loads(out.with_suffix(".history.json").read_text())
    assert history["epochs_done"] == 2 and [h["epoch"] for h in history["history"]] == [1, 2]
    assert 0 <= history["best"]["val_accuracy"] <= 1 and f"{history['best']['val_accuracy']:.2%}" in result.stdout
    assert out.stat().st_size < 3 * 1024 * 1024, "saved without optimizer state"


def test_train_init_from_a_model_of_another_architecture_is_refused(tiny, tmp_path):
    result = quantize("train", "--data", tiny / "faces.csv", "--out", tmp_path / "x.keras", "--init", tiny / "small48.keras")
    assert result.returncode == 2
    assert "small48.keras: weights do not fit the edge architecture" in result.stderr


def test_architectures_have_their_documented_sizes():
    code = ("from quantize.architectures import build; "
            "print(build('seed').count_params(), build('edge').count_params(), build('edge', 64, 64).output_shape)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    seed, edge, *_ = result.stdout.split()
    assert 3_250_000 < int(seed) < 3_350_000  # the reference paper's 3.3M
    assert int(edge) < 400_000  # int8 file under 500 KB
    assert result.stdout.strip().endswith("(None, 7)")
