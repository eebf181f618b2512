"""`quantize train` / `distill` (resumable runs) and `convert --tta flip`, on tiny synthetic data."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from runcli import quantize
from synthetic import gratings

pytestmark = pytest.mark.slow

RUN = ("--epochs", "3", "--batch-size", "32", "--crop", "40", "--ema", "0.9", "--seed", "3")


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("faces") / "faces.npz"
    x, y = gratings(140, seed=1)
    xv, yv = gratings(70, seed=2)
    np.savez(path, x_train=x, y_train=y, x_public=xv, y_public=yv)
    return path


def _checkpoint(path):
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    return json.loads(str(arrays.pop("meta"))), arrays


def test_a_run_split_by_resume_ends_where_an_uninterrupted_one_does(npz, tmp_path):
    whole = tmp_path / "whole" / "m.keras"
    quantize("train", "--data", npz, "--out", whole, *RUN, check=True)

    split = tmp_path / "split" / "m.keras"
    ckpt = tmp_path / "split" / "run.npz"
    first = quantize("train", "--data", npz, "--out", split, "--checkpoint", ckpt, *RUN, "--stop-after", "1", check=True)
    assert f"not finished: quantize train --resume {ckpt}" in first.stdout
    assert not split.exists()
    meta, _ = _checkpoint(ckpt)
    assert meta["epochs_done"] == 1
    # Resumed on "another machine": the data moved, and only the checkpoint and the new path are given.
    moved = tmp_path / "elsewhere.npz"
    moved.write_bytes(npz.read_bytes())
    quantize("train", "--resume", ckpt, "--data", moved, check=True)

    meta_whole, arrays_whole = _checkpoint(whole.with_suffix(".checkpoint.npz"))
    meta_split, arrays_split = _checkpoint(ckpt)
    assert meta_split["epochs_done"] == meta_whole["epochs_done"] == 3
    steps = [h["step"] for h in meta_split["history"]]
    assert steps == [h["step"] for h in meta_whole["history"]] == [5, 10, 15]  # 140 faces / 32 = 5 steps an epoch
    assert [h["learning_rate"] for h in meta_split["history"]] == [h["learning_rate"] for h in meta_whole["history"]]
    # The optimizer's state (step counter, moments, EMA) and the weights continue, not restart.
    assert sorted(arrays_split) == sorted(arrays_whole)
    for key in arrays_whole:
        if key.startswith(("w/", "o/")):
            np.testing.assert_allclose(arrays_split[key], arrays_whole[key], rtol=1e-3, atol=1e-4, err_msg=key)
    history = json.loads(split.with_name("m.history.json").read_text())
    assert [h["epoch"] for h in history["history"]] == [1, 2, 3], "the history file survives the resume"
    assert split.exists() and meta_split["data"] == str(moved)


def test_the_saved_model_takes_whole_faces_and_crops_inside(npz, tmp_path):
    out = tmp_path / "m.keras"
    quantize("train", "--data", npz, "--out", out, *RUN, "--cycles", "1", "--cycle-epochs", "1", check=True)
    meta, arrays = _checkpoint(out.with_suffix(".checkpoint.npz"))
    assert [s["epoch"] for s in meta["snapshots"]] == [3, 4], "a snapshot at the end of each cosine cycle"
    assert any(k.startswith("snap1/") for k in arrays)
    code = ("import keras, sys; m = keras.models.load_model(sys.argv[1]); "
            "print(m.input_shape, [l.name for l in m.layers][:2])")
    shown = subprocess.run([sys.executable, "-c", code, str(out.with_name("m.snapshot2.keras"))],
                           capture_output=True, text=True, timeout=300, check=True).stdout
    assert "(None, 48, 48, 1)" in shown and "center_crop" in shown


def test_resume_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    bogus = tmp_path / "x.npz"
    bogus.write_text("not a zip")
    result = quantize("train", "--resume", bogus)
    assert result.returncode == 2 and "x.npz: not a quantize checkpoint" in result.stderr


def test_a_new_run_never_overwrites_a_checkpoint(npz, tmp_path):
    out = tmp_path / "m.keras"
    out.with_suffix(".checkpoint.npz").write_bytes(b"precious")
    result = quantize("train", "--data", npz, "--out", out, *RUN)
    assert result.returncode == 2 and "--resume" in result.stderr
    assert out.with_suffix(".checkpoint.npz").read_bytes() == b"precious"


def test_distill_trains_on_stored_soft_labels(tiny, npz, tmp_path):
    teacher = tiny / "small48.keras"  # a trained 48x48 model taking pixels/255 (no flip: a mirrored grating is another class)
    out = tmp_path / "student.keras"
    quantize("distill", "--teacher", teacher, "--tta", "none", "--alpha", "0.5", "--data", npz, "--out", out,
             *RUN, "--stop-after", "1", check=True)
    meta, arrays = _checkpoint(out.with_suffix(".checkpoint.npz"))
    soft = arrays["soft_labels"].astype(np.float32)
    assert soft.shape == (140, 7) and meta["options"]["distill_alpha"] == 0.5
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=2e-3)
    y = np.load(npz)["y_train"]
    assert np.all(soft >= 0) and not np.allclose(soft, np.eye(7)[y], atol=0.05), "the teacher's own probabilities"
    # The teacher knows the gratings: its soft labels put the most mass on the true class for most faces.
    assert np.mean(soft.argmax(axis=1) == y) > 0.8
    # Resuming needs no teacher: the soft labels travel in the checkpoint.
    quantize("distill", "--resume", out.with_suffix(".checkpoint.npz"), check=True)
    assert out.exists()


def test_tta_flip_model_averages_the_face_and_its_mirror_in_one_invoke(tiny, tmp_path):
    plain, flip = tmp_path / "plain.tflite", tmp_path / "flip.tflite"
    common = ("--data", tiny / "faces.csv", "--calibration-size", "140")
    quantize("convert", tiny / "small48.keras", *common, "--out", plain, check=True)
    result = quantize("convert", tiny / "small48.keras", *common, "--out", flip, "--tta", "flip", check=True)
    assert json.loads(flip.with_suffix(".json").read_text())["tta"] == "flip"
    assert "accuracy float" in result.stdout

    code = """
import sys, numpy as np
sys.path.insert(0, sys.argv[3])
from quantize.runners import Int8Model
from synthetic import gratings
x, _ = gratings(60, seed=9)
plain, flip = Int8Model(sys.argv[1]), Int8Model(sys.argv[2])
both = (plain.scores(x) + plain.scores(x[:, :, ::-1].copy())) / 2
tta = flip.scores(x)
print(float(np.abs(tta - both).max()), float(np.mean(tta.argmax(1) == both.argmax(1))))
"""
    out = subprocess.run([sys.executable, "-c", code, str(plain), str(flip), str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=300, check=True).stdout.split()
    worst, agreement = float(out[-2]), float(out[-1])
    assert worst < 0.08 and agreement >= 0.95, (worst, agreement)

    check = quantize("check", "--keras", tiny / "small48.keras", "--tflite", flip, "--data", tiny / "faces.csv",
                     "--no-latency", "--max-drop", "3")
    assert check.returncode == 0, check.stdout + check.stderr


BN_CHECK = """
import sys, numpy as np, keras
m = keras.models.load_model(sys.argv[1])
net = next(layer for layer in m.layers if hasattr(layer, "layers"))
x = np.load(sys.argv[2])["x_train"][:, 4:44, 4:44, None].astype(np.float32) / 255.0
norms = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
for norm in (norms[0], norms[-1]):
    seen = keras.Model(net.input, norm.input)(x, training=False).numpy()
    mean = seen.reshape(-1, seen.shape[-1]).mean(axis=0)
    print(float(np.abs(mean - norm.moving_mean.numpy()).max() / (np.abs(mean).max() + 1e-6)))
"""


def _bn_errors(model, npz) -> list[float]:
    """Relative error of the first and last batch norms' moving means against the mean of what they see on the
    training faces' centre crops (the test data's crops are 40 of 48)."""
    shown = subprocess.run([sys.executable, "-c", BN_CHECK, str(model), str(npz)],
                           capture_output=True, text=True, timeout=300, check=True).stdout.split()
    return [float(error) for error in shown[-2:]]


def test_the_saved_model_has_batch_norm_statistics_of_its_own_weights(npz, tmp_path):
    """The EMA weights are saved with moving means and variances recomputed for them on (centre crops of) the
    training faces, not the lagging statistics of the live weights."""
    out = tmp_path / "m.keras"
    quantize("train", "--data", npz, "--out", out, *RUN, check=True)
    # 140 faces, one batch: the moving mean is exactly the faces' mean.
    assert max(_bn_errors(out, npz)) < 1e-3


def test_recalibrate_gives_an_older_model_the_statistics_of_its_weights(npz, tmp_path):
    out = tmp_path / "m.keras"
    quantize("train", "--data", npz, "--out", out, *RUN[:-4], "--ema", "0", "--seed", "3", check=True)
    assert max(_bn_errors(out, npz)) > 1e-2, "without an EMA, train keeps the running statistics"
    fixed = tmp_path / "fixed.keras"
    result = quantize("recalibrate", out, "--data", npz, "--out", fixed, check=True)
    assert "batch-norm statistics of 25 layers recomputed on 140 Training faces" in result.stdout
    assert max(_bn_errors(fixed, npz)) < 1e-3


def _predict(path, x):
    import keras

    return keras.saving.load_model(path, compile=False).predict(x[..., None] / 255.0, verbose=0)


def test_export_takes_the_best_epoch_or_a_snapshot_out_of_a_run_finished_or_not(npz, tmp_path):
    out, ckpt = tmp_path / "m.keras", tmp_path / "run.npz"
    cycles = ("--cycles", "1", "--cycle-epochs", "1")  # 3 + 1 epochs, snapshots at epochs 3 and 4
    quantize("train", "--data", npz, "--out", out, "--checkpoint", ckpt, *RUN, *cycles, "--stop-after", "3", check=True)
    x = np.load(npz)["x_public"].astype(np.float32)

    early = quantize("export", ckpt, "--out", tmp_path / "snap1.keras", "--snapshot", "1", check=True)
    assert "snapshot 1" in early.stdout and "epoch 3" in early.stdout
    np.testing.assert_allclose(_predict(tmp_path / "snap1.keras", x), _predict(tmp_path / "m.snapshot1.keras", x), atol=1e-6)
    missing = quantize("export", ckpt, "--out", tmp_path / "snap2.keras", "--snapshot", "2")
    assert missing.returncode == 2 and "the run has 1 snapshot(s) so far" in missing.stderr
    assert "snapshot 2 comes at epoch 4" in missing.stderr
    assert not (tmp_path / "snap2.keras").exists()

    quantize("train", "--resume", ckpt, check=True)  # the export left the run as it was
    meta, _ = _checkpoint(ckpt)
    best = quantize("export", ckpt, "--out", tmp_path / "best.keras", check=True)
    assert f"epoch {meta['best']['epoch']}, validation accuracy {meta['best']['val_accuracy']:.2%}" in best.stdout
    np.testing.assert_allclose(_predict(tmp_path / "best.keras", x), _predict(out, x), atol=1e-6)
    # Bad input: a clear error (exit 2) naming the file or flag, no traceback, nothing written.
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(ckpt.read_bytes()[:4000])
    for args, says in [((tmp_path / "nothing.npz", "--out", tmp_path / "x.keras"), "no such checkpoint file"),
                       ((out, "--out", tmp_path / "x.keras"), "not a quantize checkpoint"),  # a model, not a run
                       ((truncated, "--out", tmp_path / "x.keras"), "not a quantize checkpoint"),
                       ((ckpt, "--out", tmp_path / "x.h5"), "must end in .keras"),
                       ((ckpt, "--out", tmp_path), "must end in .keras")]:
        result = quantize("export", *args)
        assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
    assert not (tmp_path / "x.keras").exists()
