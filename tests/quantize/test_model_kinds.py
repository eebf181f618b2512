"""The kinds of models people bring (issue 13), each made from one small trained model (make_tiny_models.py):
each converts and scores like that model, or fails with a message saying what is wrong and the right status.
"""

import hashlib
import json

import numpy as np
import pytest
from legacy_h5 import as_keras2
from runcli import quantize
from test_convert_check import int8_predictions, public_pixels

from quantize.labels import ALPHABETICAL, EMOTIONS

pytestmark = pytest.mark.slow


def convert(tiny, model, out, *flags):
    return quantize("convert", model if str(model).startswith("/") else tiny / model, "--data", tiny / "faces.csv",
                    "--out", out, *flags)


def check(tiny, model, tflite, *flags):
    return quantize("check", "--keras", tiny / model, "--tflite", tflite, "--data", tiny / "faces.csv", "--no-latency", *flags)


def expected(tiny) -> np.ndarray:
    """small48's float answers on PublicTest (FER2013 indices): every derived model computes the same."""
    return np.load(tiny / "small48.keras.pred.npy")


def assert_int8_matches_small48(tiny, tflite):
    x, _ = public_pixels(tiny, 48)
    labels = json.loads(tflite.with_suffix(".json").read_text())["labels"]
    names = np.array(labels)[int8_predictions(tflite, x)]
    assert np.mean(names == np.array(EMOTIONS)[expected(tiny)]) >= 0.95


def test_alphabetical_model_scored_in_fer_order_fails_and_names_the_order(tiny, tmp_path):
    out = tmp_path / "alpha.tflite"
    result = convert(tiny, "alphabetical48.keras", out)
    assert result.returncode == 0, result.stderr
    assert "warning: on the 300 calibration faces, the labels look mis-ordered: --labels alphabetical" in result.stderr
    result = check(tiny, "alphabetical48.keras", out, "--report", tmp_path / "r")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "check failed: the labels look mis-ordered: --labels alphabetical (the alphabetical folder order" in result.stderr
    assert "float model (above chance, varied answers, label order): FAIL (label_order: see below)" in result.stdout
    checks = json.loads((tmp_path / "r" / "report.json").read_text())["float_checks"]
    assert tuple(checks["best_labels"]) == ALPHABETICAL and checks["labels"] == list(EMOTIONS)
    y = np.load(tiny / "public_y.npy")
    assert checks["best_accuracy"] == pytest.approx(np.mean(expected(tiny) == y))
    assert checks["accuracy"] < checks["best_accuracy"] - 0.2


def test_alphabetical_model_with_labels_is_scored_and_published_right(tiny, tmp_path):
    out = tmp_path / "alpha.tflite"
    result = convert(tiny, "alphabetical48.keras", out, "--labels", "alphabetical")
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    assert json.loads(out.with_suffix(".json").read_text())["labels"] == list(ALPHABETICAL)
    result = check(tiny, "alphabetical48.keras", out, "--report", tmp_path / "r")  # the labels come from the sidecar
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    y = np.load(tiny / "public_y.npy")
    assert report["float"]["accuracy"] == pytest.approx(np.mean(expected(tiny) == y))
    assert report["labels"] == list(ALPHABETICAL) and report["float_checks"]["findings"] == []
    assert_int8_matches_small48(tiny, out)
    # The daemon maps outputs by the sidecar: it publishes what small48 would, keyed in the contract's order.
    from edged.classifier import EmotionClassifier

    classifier = EmotionClassifier(out)
    x, _ = public_pixels(tiny, 48)
    scores = [classifier.classify(img, [(0, 0, 48, 48)])[0] for img in x]
    published = np.array([max(s, key=s.__getitem__) for s in scores])
    assert np.mean(published == np.array(EMOTIONS)[expected(tiny)]) >= 0.95
    assert all(tuple(s) == EMOTIONS for s in scores)
    # Overriding the sidecar with the wrong order fails the gate again.
    assert check(tiny, "alphabetical48.keras", out, "--labels", "fer2013").returncode == 1


def test_rescaling_inside_the_model_is_fed_raw_pixels(tiny, tmp_path):
    out = tmp_path / "rescaling.tflite"
    result = convert(tiny, "rescaling48.keras", out)
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    meta = json.loads(out.with_suffix(".json").read_text())
    assert (meta["normalization"]["input_scale"], meta["normalization"]["input_offset"]) == (1.0, 0.0)
    assert "Rescaling layer 'rescaling' (scale 0.003922, offset 0)" in meta["normalization"]["in_model"]
    assert_int8_matches_small48(tiny, out)
    assert check(tiny, "rescaling48.keras", out).returncode == 0

    # A sidecar that folded 1/255 in as well (as quantize did before): the float model answers one class.
    meta["normalization"].update(input_scale=1 / 255, in_model=None)
    out.with_suffix(".json").write_text(json.dumps(meta))
    result = check(tiny, "rescaling48.keras", out)
    assert result.returncode == 1
    assert "check failed: the float model answers" in result.stderr and "normalized wrongly" in result.stderr


def test_normalization_layer_inside_the_model_is_fed_raw_pixels(tiny, tmp_path):
    out = tmp_path / "normalization.tflite"
    result = convert(tiny, "normalization48.keras", out)
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    meta = json.loads(out.with_suffix(".json").read_text())
    assert (meta["normalization"]["input_scale"], meta["normalization"]["input_offset"]) == (1.0, 0.0)
    assert "a Normalization layer 'normalization' (mean 0, std 255)" in meta["normalization"]["in_model"]
    assert_int8_matches_small48(tiny, out)


@pytest.mark.parametrize("command", ["convert", "check"])
def test_rescaling_inside_and_input_scale_is_refused(tiny, tmp_path, command):
    flags = ("--input-scale", str(1 / 255))
    if command == "convert":
        result = convert(tiny, "rescaling48.keras", tmp_path / "x.tflite", *flags)
    else:
        result = check(tiny, "rescaling48.keras", tmp_path / "absent.tflite", *flags)
    assert result.returncode == 2
    assert ("rescaling48.keras normalizes its own input with a Rescaling layer 'rescaling' (scale 0.003922, offset 0), "
            "so it takes raw pixels 0-255; --input-scale 0.00392157 would normalize them a second time") in result.stderr


def test_rgb_input_model(tiny, tmp_path):
    out = tmp_path / "rgb.tflite"
    result = convert(tiny, "rgb48.keras", out)
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    assert_int8_matches_small48(tiny, out)
    y = np.load(tiny / "public_y.npy")
    assert json.loads(out.with_suffix(".json").read_text())["accuracy"]["float"] == pytest.approx(np.mean(expected(tiny) == y))


def test_one_answer_for_every_face_warns_and_fails(tiny, tmp_path):
    out = tmp_path / "one.tflite"
    result = convert(tiny, "oneclass48.keras", out)
    assert result.returncode == 0
    assert "warning: on the 300 calibration faces, the float model answers 'fear' for 100.0% of the faces" in result.stderr
    result = check(tiny, "oneclass48.keras", out)
    assert result.returncode == 1, result.stdout
    assert "drop +0.00 points" in result.stdout, "int8 matches float: the drop alone would pass"
    assert "check failed: the float model answers 'fear' for 100.0%" in result.stderr
    assert "check failed: the float model is near chance: accuracy 14.3%" in result.stderr
    # Each sign has its threshold flag.
    assert check(tiny, "oneclass48.keras", out, "--max-one-class", "100", "--min-above-chance", "0").returncode == 0


def test_custom_layer_needs_its_code(tiny, tmp_path):
    out = tmp_path / "custom.tflite"
    result = convert(tiny, "custom48.keras", out)
    assert result.returncode == 2
    assert ("custom48.keras: the model uses 'ScaledReLU', a custom class Keras does not know: give quantize the code "
            "that defines it with --custom-objects FILE.py") in result.stderr
    result = convert(tiny, "custom48.keras", out, "--custom-objects", tiny / "my_layers.py")
    assert result.returncode == 0, result.stderr
    assert_int8_matches_small48(tiny, out)
    assert check(tiny, "custom48.keras", out, "--custom-objects", tiny / "my_layers.py").returncode == 0

    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    result = convert(tiny, "custom48.keras", out, "--custom-objects", broken)
    assert result.returncode == 2 and f"--custom-objects {broken}: importing it failed: RuntimeError: boom" in result.stderr


# The second is also misnamed: an HDF5 file called .keras is read as what its bytes say.
@pytest.mark.parametrize(("version", "name"), [("2.0.8", "old.h5"), ("2.2.4", "old.keras")])
def test_keras2_sequential_h5_loads_from_a_rewritten_copy(tiny, tmp_path, version, name):
    old = as_keras2(tiny / "small48.h5", tmp_path / name, version)
    before = hashlib.sha256(old.read_bytes()).hexdigest()
    out = tmp_path / "old.tflite"
    result = convert(tiny, old, out)
    assert result.returncode == 0, result.stderr
    assert_int8_matches_small48(tiny, out)
    rewritten = json.loads(out.with_suffix(".json").read_text())["source"]["keras2_config_rewritten"]
    assert any("made an explicit InputLayer" in change for change in rewritten)
    assert any("Keras 2.0-2.1" in change for change in rewritten) == version.startswith("2.0")
    assert hashlib.sha256(old.read_bytes()).hexdigest() == before, "the user's file is never changed"
