"""The checks on the float model (quantize.gate), label orders, and the faults caught before TensorFlow loads.

Fast: no TensorFlow in these (the CLI runs stop before importing it)."""

import argparse
import json
import zipfile

import numpy as np
import pytest
from runcli import quantize

from quantize import gate
from quantize.errors import ModelError, QuantizeError
from quantize.keras_io import keras2_rewrites, load_keras, sniff
from quantize.labels import ALPHABETICAL, EMOTIONS, describe, parse_labels
from quantize.options import finite_float, non_negative_float, nonzero_float, percent, positive_int

DEFAULT = gate.Thresholds()


def confusion_of(y_true, outputs):
    from quantize.metrics import confusion

    return confusion(np.asarray(y_true), np.asarray(outputs))


def faces_answered(labels_of_outputs, n_per_class=30, correct=0.8, seed=0):
    """True FER classes and the outputs of a model that is right `correct` of the time in its own order."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(7), n_per_class)
    right = rng.random(len(y)) < correct
    truth_names = [EMOTIONS[c] for c in y]
    outputs = np.array([labels_of_outputs.index(name) for name in truth_names])
    outputs[~right] = rng.integers(0, 7, (~right).sum())
    return y, outputs


def test_parse_labels_shorthands_and_names():
    assert parse_labels("alphabetical") == ALPHABETICAL == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    assert parse_labels("FER2013") == EMOTIONS
    assert parse_labels(" Angry, disgust,fear,happy,neutral,sad,surprise ") == ALPHABETICAL
    assert describe(ALPHABETICAL) == "alphabetical" and describe(("sad", *EMOTIONS[:4], *EMOTIONS[5:])).startswith("sad,")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("angry,disgust,fear,happy,sad,surprise,contempt", "--labels: unknown emotion 'contempt'"),
        ("angry,angry,fear,happy,sad,surprise,neutral", "repeated: angry; missing: disgust"),
        ("angry,disgust,fear", "got 3 names; missing: happy, sad, surprise, neutral"),
    ],
)
def test_parse_labels_refuses_what_is_not_the_seven_emotions(text, message):
    with pytest.raises(QuantizeError) as err:
        parse_labels(text)
    assert message in str(err.value)


def test_a_good_model_in_its_own_order_passes():
    y, out = faces_answered(ALPHABETICAL)
    result = gate.inspect(confusion_of(y, out), ALPHABETICAL, DEFAULT)
    assert result["findings"] == [] and result["accuracy"] > 0.7  # 0.8 + 0.2 / 7 expected
    assert tuple(result["best_labels"]) == ALPHABETICAL


def test_alphabetical_model_scored_in_fer_order_names_the_right_order():
    y, out = faces_answered(ALPHABETICAL)
    result = gate.inspect(confusion_of(y, out), EMOTIONS, DEFAULT)
    kinds = [f.kind for f in result["findings"]]
    assert "label_order" in kinds
    message = next(f.message for f in result["findings"] if f.kind == "label_order")
    assert "--labels alphabetical (the alphabetical folder order" in message and "--labels fer2013" in message
    assert result["best_accuracy"] == pytest.approx(np.mean(np.array(ALPHABETICAL)[out] == np.array(EMOTIONS)[y]))


def test_any_permutation_is_recovered():
    order = ("sad", "happy", "angry", "surprise", "fear", "neutral", "disgust")
    y, out = faces_answered(order, correct=0.6, seed=3)
    result = gate.inspect(confusion_of(y, out), EMOTIONS, DEFAULT)
    assert tuple(result["best_labels"]) == order
    assert "--labels sad,happy,angry,surprise,fear,neutral,disgust scores" in result["findings"][-1].message


def test_best_order_is_the_optimal_assignment():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(7)
    for _ in range(20):
        matrix = rng.integers(0, 50, (7, 7))
        rows, cols = scipy_optimize.linear_sum_assignment(matrix, maximize=True)
        _, correct = gate.best_order(matrix)
        assert correct == matrix[rows, cols].sum()


def test_one_answer_for_every_face():
    y = np.repeat(np.arange(7), 10)
    result = gate.inspect(confusion_of(y, np.zeros_like(y)), EMOTIONS, DEFAULT)
    kinds = {f.kind for f in result["findings"]}
    assert kinds == {"one_class", "near_chance"}  # a single column: no order does better
    assert "answers 'angry' for 100.0% of the faces (limit --max-one-class 90%)" in result["findings"][0].message
    assert "normalized wrongly" in result["findings"][0].message


def test_one_class_threshold_is_adjustable():
    y = np.repeat(np.arange(7), 10)
    out = y.copy()
    out[10:60] = 0  # 60 of 70 answers are angry: 85.7%
    share = 100 * 60 / 70

    def kinds(limit):
        result = gate.inspect(confusion_of(y, out), EMOTIONS, gate.Thresholds(max_one_class_pct=limit))
        return {f.kind for f in result["findings"]}

    assert "one_class" in kinds(85) and "one_class" in kinds(share - 0.01)
    assert "one_class" not in kinds(share) and "one_class" not in kinds(DEFAULT.max_one_class_pct)


def test_near_chance_is_measured_against_the_commonest_class():
    # 50% of the faces are happy: a model right 55% of the time is only 5 points above always answering happy.
    y = np.array([3] * 50 + [0] * 10 + [1] * 10 + [2] * 10 + [4] * 10 + [5] * 5 + [6] * 5)
    out = np.where(np.arange(100) < 55, y, (y + 1) % 7)
    out[50:55] = y[50:55]
    result = gate.inspect(confusion_of(y, out), EMOTIONS, DEFAULT)
    assert result["chance"] == 0.5 and result["commonest"] == "happy"
    near = [f for f in result["findings"] if f.kind == "near_chance"]
    assert near and "always answering 'happy' scores 50.0%" in near[0].message
    assert not [f for f in gate.inspect(confusion_of(y, out), EMOTIONS, gate.Thresholds(min_above_chance_pts=4))["findings"]
                if f.kind == "near_chance"]


def test_order_gain_threshold():
    y, out = faces_answered(ALPHABETICAL)
    result = gate.inspect(confusion_of(y, out), EMOTIONS, DEFAULT)
    gain = 100 * (result["best_accuracy"] - result["accuracy"])
    assert gain > 30 and "label_order" in {f.kind for f in result["findings"]}
    relaxed = gate.Thresholds(min_above_chance_pts=0, max_order_gain_pts=gain)
    assert not gate.inspect(confusion_of(y, out), EMOTIONS, relaxed)["findings"]


@pytest.mark.parametrize("parse", [finite_float, non_negative_float, percent])
@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "x"])
def test_float_flags_refuse_non_finite(parse, text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse(text)


def test_range_types():
    assert non_negative_float("0") == 0 and percent("100") == 100
    assert nonzero_float("-0.5") == -0.5 and positive_int("1") == 1
    for parse, text in ((non_negative_float, "-0.5"), (percent, "101"), (percent, "-1"), (nonzero_float, "0"),
                        (positive_int, "0"), (positive_int, "-3"), (positive_int, "2.5")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


@pytest.mark.parametrize(("flag", "value"), [("--calibration-size", "0"), ("--calibration-size", "-5"),
                                             ("--input-scale", "0")])
def test_constant_input_and_empty_calibration_are_usage_errors(tmp_path, flag, value):
    result = quantize("convert", tmp_path / "m.keras", "--data", tmp_path, "--out", tmp_path / "m.tflite", flag, value)
    assert result.returncode == 2
    assert "usage: quantize convert" in result.stderr and f"argument {flag}:" in result.stderr


@pytest.mark.parametrize("value", ["nan", "-1", "inf"])
def test_max_drop_nan_is_a_usage_error(tmp_path, value):
    result = quantize("check", "--keras", tmp_path / "m.keras", "--tflite", tmp_path / "m.tflite", "--data", tmp_path,
                      "--max-drop", value)
    assert result.returncode == 2
    assert "usage: quantize check" in result.stderr and "argument --max-drop:" in result.stderr
    assert value in result.stderr and "Traceback" not in result.stderr


def test_unwritable_report_is_refused_before_the_evaluation(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the report folder would go")
    # The model files do not exist either: the report place is checked first, before minutes of evaluation.
    result = quantize("check", "--keras", tmp_path / "m.keras", "--tflite", tmp_path / "m.tflite", "--data", tmp_path,
                      "--report", blocker / "reports")
    assert result.returncode == 2, result.stderr
    assert f"--report {blocker / 'reports'}: cannot write there" in result.stderr and "Traceback" not in result.stderr


def test_unwritable_out_is_refused_before_converting(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = quantize("convert", tmp_path / "m.keras", "--data", tmp_path, "--out", blocker / "m.tflite")
    assert result.returncode == 2
    assert f"--out {blocker / 'm.tflite'}: cannot write there" in result.stderr


LFS = (b"version https://git-lfs.github.com/spec/v1\n"
       b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 872112\n")
HTML = b"\n\n<!DOCTYPE html>\n<html lang=\"en\" data-color-mode=\"auto\">\n<head><title>emotion_model.hdf5 at main</title>"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (LFS, "a Git LFS pointer (131 bytes), not the model itself"),
        (HTML, "a web page (HTML), not the raw model file"),
        (b"\x00\x01garbage" * 20, "not a Keras model: neither an HDF5 file (legacy .h5) nor a zip archive (.keras)"),
        (b"", "an empty file, not a Keras model"),
    ],
)
@pytest.mark.parametrize("name", ["model.keras", "model.h5"])
def test_files_that_are_not_models_are_named_for_what_they_are(tmp_path, content, message, name):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelError) as err:
        sniff(path)
    assert str(err.value).startswith(f"{path}: {message}")
    if content is LFS:
        assert "git lfs pull" in str(err.value)
    result = quantize("convert", path, "--data", tmp_path, "--out", tmp_path / "x.tflite")
    assert result.returncode == 2 and f"{path}: {message}" in result.stderr and "Traceback" not in result.stderr


def test_sniff_knows_hdf5_and_zip(tmp_path):
    (tmp_path / "a").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    (tmp_path / "b").write_bytes(bytes(512) + b"\x89HDF\r\n\x1a\n" + bytes(100))  # after a user block
    with zipfile.ZipFile(tmp_path / "c", "w") as archive:
        archive.writestr("config.json", "{}")
    assert [sniff(tmp_path / n) for n in "abc"] == ["hdf5", "hdf5", "zip"]


def test_truncated_zip_is_named_and_exits_2(tmp_path):
    """A partial download of a .keras file: the zip's central directory (at its end) is missing."""
    whole = tmp_path / "whole.keras"
    with zipfile.ZipFile(whole, "w") as archive:
        archive.writestr("model.weights.h5", bytes(5000))
        archive.writestr("config.json", "{}")
    cut = tmp_path / "partial.keras"
    cut.write_bytes(whole.read_bytes()[:3000])
    with pytest.raises(ModelError, match=r"partial\.keras: a truncated or corrupt zip archive"):
        sniff(cut)
    result = quantize("convert", cut, "--data", tmp_path, "--out", tmp_path / "x.tflite")
    assert result.returncode == 2 and "a truncated or corrupt zip archive" in result.stderr, result.stderr


def test_a_folder_or_a_tflite_as_the_model_is_named(tmp_path):
    saved = tmp_path / "exported"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ModelError, match=r"exported: a folder \(a TensorFlow SavedModel\), not a model file: a "
                       r"SavedModel is not supported; load it in TensorFlow and save it as .keras"):
        load_keras(saved)
    flatbuffer = tmp_path / "model.tflite"
    flatbuffer.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(100))
    with pytest.raises(ModelError, match=r"model\.tflite: a TFLite flatbuffer .* convert takes the float Keras model"):
        load_keras(flatbuffer)


def _h5_with_config(path, config):
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.0.8"
    return path


CONV = {"class_name": "Conv2D", "config": {"name": "conv2d_1", "batch_input_shape": [None, 48, 48, 1], "dtype": "float32",
                                          "filters": 8, "kernel_size": [3, 3]}}
DENSE = {"class_name": "Dense", "config": {"name": "dense_1", "units": 7}}


def test_keras20_sequential_config_is_rewritten(tmp_path):
    path = _h5_with_config(tmp_path / "old.h5", {"class_name": "Sequential", "config": [CONV, DENSE]})
    config, changes = keras2_rewrites(path)
    layers = config["config"]["layers"]
    assert [layer["class_name"] for layer in layers] == ["InputLayer", "Conv2D", "Dense"]
    assert layers[0]["config"]["batch_shape"] == [None, 48, 48, 1] and "batch_input_shape" not in layers[1]["config"]
    assert len(changes) == 2 and "Keras 2.0-2.1" in changes[0] and "'conv2d_1' made an explicit InputLayer" in changes[1]
    assert json.loads(__import__("h5py").File(path, "r").attrs["model_config"])["config"][0] == CONV, "the file is untouched"


def test_keras22_sequential_config_is_rewritten(tmp_path):
    path = _h5_with_config(tmp_path / "old.h5", {"class_name": "Sequential", "config": {"name": "seq", "layers": [CONV, DENSE]}})
    config, changes = keras2_rewrites(path)
    assert config["config"]["name"] == "seq" and config["config"]["layers"][0]["class_name"] == "InputLayer"
    assert len(changes) == 1


def test_current_configs_need_no_rewrite(tmp_path):
    inp = {"class_name": "InputLayer", "config": {"name": "input", "batch_shape": [None, 48, 48, 1]}}
    conv = {"class_name": "Conv2D", "config": {"name": "conv2d_1", "filters": 8, "kernel_size": [3, 3]}}
    path = _h5_with_config(tmp_path / "new.h5", {"class_name": "Sequential", "config": {"name": "s", "layers": [inp, conv]}})
    assert keras2_rewrites(path) is None


def test_missing_custom_objects_file(tmp_path):
    model = tmp_path / "m.keras"
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("config.json", "{}")
    result = quantize("convert", model, "--data", tmp_path, "--out", tmp_path / "m.tflite", "--custom-objects",
                      tmp_path / "layers.py")
    assert result.returncode == 2 and f"--custom-objects {tmp_path / 'layers.py'}: no such file" in result.stderr


@pytest.mark.parametrize("command", ["convert", "check"])
def test_bad_labels_flag_is_refused_before_loading_anything(tmp_path, command):
    if command == "convert":
        args = ["convert", tmp_path / "m.keras", "--data", tmp_path, "--out", tmp_path / "m.tflite"]
    else:
        args = ["check", "--keras", tmp_path / "m.keras", "--tflite", tmp_path / "m.tflite", "--data", tmp_path]
    result = quantize(*args, "--labels", "happy,sad")
    assert result.returncode == 2
    assert "--labels must name each of the 7 emotions once, got 2 names; missing: angry, disgust, fear" in result.stderr


def test_renaming_the_one_answer_is_not_reported_as_a_label_order():
    """Faces mostly happy, a model answering angry for all: calling that output happy 'gains' 40 points, but the
    model is still no better than always answering happy, so the order is not what is wrong."""
    y = np.array([3] * 40 + [0] * 10 + [1] * 10 + [2] * 10 + [4] * 10 + [5] * 10 + [6] * 10)
    result = gate.inspect(confusion_of(y, np.zeros_like(y)), EMOTIONS, DEFAULT)
    assert result["best_accuracy"] - result["accuracy"] == pytest.approx(0.3)
    assert {f.kind for f in result["findings"]} == {"one_class", "near_chance"}


def test_hdf5_weights_without_a_model_are_named(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "weights.h5"
    with h5py.File(path, "w") as f:  # the layout of Keras 2's save_weights
        f.attrs["layer_names"] = [b"conv2d_1", b"dense_1"]
        f.create_group("conv2d_1").create_dataset("kernel:0", data=np.zeros((3, 3, 1, 8), np.float32))
    result = quantize("convert", path, "--data", tmp_path, "--out", tmp_path / "x.tflite")
    assert result.returncode == 2
    assert f"{path}: an HDF5 file with weights only (saved with save_weights" in result.stderr


def test_label_order_is_not_judged_on_a_small_set():
    # An alphabetical model scored in FER2013's order: caught on 210 faces, not judged on 140.
    for per_class, checked in ((30, True), (20, False)):
        y, outputs = faces_answered(ALPHABETICAL, n_per_class=per_class)
        result = gate.inspect(confusion_of(y, outputs), EMOTIONS, DEFAULT)
        assert result["order_checked"] is checked
        assert any(f.kind == "label_order" for f in result["findings"]) is checked
        if not checked:
            assert result["order_note"].startswith("label order not checked: 140 faces are fewer than 200")


def test_model_id_changes_with_labels_tta_and_normalization():
    from quantize.keras_io import Normalization
    from quantize.sidecar import model_id

    sha = "ab" * 32
    base = model_id("emotions", sha, EMOTIONS, "none", Normalization())
    assert base.startswith("emotions-") and len(base) == len("emotions-") + 8
    assert base == model_id("emotions", sha, EMOTIONS, "none", Normalization())
    others = {model_id("emotions", sha, ALPHABETICAL, "none", Normalization()),
              model_id("emotions", sha, EMOTIONS, "flip", Normalization()),
              model_id("emotions", sha, EMOTIONS, "none", Normalization(2 / 255, -1)),
              model_id("emotions", "cd" * 32, EMOTIONS, "none", Normalization())}
    assert len(others) == 4 and base not in others
