"""The example data generators: made offline, shaped as the models take them, splits disjoint."""

import subprocess
import sys

import numpy as np
from conftest import REPO

KWS = REPO / "examples" / "kws"
ECG = REPO / "examples" / "ecg"


def test_keyword_data_is_spoken_offline_with_calibration_and_test_voices_never_in_training(tmp_path):
    subprocess.run(
        [sys.executable, KWS / "make_data.py", "--per-class", "6", "--out", tmp_path], check=True, capture_output=True
    )
    splits = {name: np.load(tmp_path / f"{name}.npz") for name in ("train", "calibration", "test")}
    assert splits["train"]["x"].shape[1:] == (1, 49, 10) and splits["train"]["x"].dtype == np.float32
    assert sum(len(s["y"]) for s in splits.values()) == 12 * 6
    assert np.isfinite(splits["train"]["x"]).all() and splits["train"]["x"].std() > 1

    sys.path.insert(0, str(KWS))
    import make_data

    speakers = make_data.speakers()
    for name in ("test", "calibration"):  # a fifth of the voices each, never heard in training
        assert 0.1 < sum(make_data.split_of(s) == name for s in speakers) / len(speakers) < 0.3


def test_mfcc_has_the_mlperf_tiny_shape_and_tells_tones_apart():
    sys.path.insert(0, str(KWS))
    from mfcc import RATE, mfcc

    t = np.arange(RATE) / RATE
    low, high = mfcc(np.sin(2 * np.pi * 300 * t) * 0.5), mfcc(np.sin(2 * np.pi * 2500 * t) * 0.5)
    assert low.shape == (49, 10) and np.abs(low - high).mean() > 1


def test_ecg_strips_are_normalised_with_every_rhythm_in_both_disjoint_splits(tmp_path):
    subprocess.run(
        [sys.executable, ECG / "make_data.py", "--per-class", "8", "--out", tmp_path], check=True, capture_output=True
    )
    splits = {name: np.load(tmp_path / f"{name}.npz") for name in ("train", "calibration", "test")}
    for split in splits.values():
        x, y = split["x"], split["y"]
        assert x.shape == (len(y), 1, 1250) and x.dtype == np.float32 and y.dtype == np.int64
        assert np.allclose(x.mean(-1), 0, atol=1e-4) and np.allclose(x.std(-1), 1, atol=1e-3)
        assert set(y) == {0, 1, 2, 3}
    assert [len(s["y"]) for s in splits.values()] == [4 * 8, 4 * 6, 4 * 2]  # calibration: three quarters
    strips = [{row.tobytes() for row in s["x"]} for s in splits.values()]
    assert len(set.union(*strips)) == sum(len(s) for s in strips)  # no strip in two splits
