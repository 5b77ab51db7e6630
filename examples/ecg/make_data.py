"""ECG rhythm data made offline: 5 s single-lead strips at 250 Hz synthesised by physiokit, in four rhythm classes.

    python examples/ecg/make_data.py [--per-class 8000] [--seed 0]
    python examples/ecg/make_data.py --stream [--records 1600] [--seconds 30] [--seed 0]

physiokit's WaSP-ECG generator has two rhythms, sinus and atrial fibrillation (no P waves, irregular RR);
sinus rhythm is split by rate into bradycardia, normal and tachycardia, with ranges that overlap by a few beats
per minute so the boundary stays ambiguous, as it is in 5 s of a real strip. Every strip takes a random lead,
a random conduction morphology (normal, hemiblocks, LBBB, STEMI, high take-off: physiokit's presets, here a
nuisance the network has to ignore) and random physiokit noise, then baseline wander, powerline hum and white
noise at random SNRs, and is normalised to zero mean and unit std. Train, calibration (the exit thresholds) and
test come from three different random streams. Writes train.npz, calibration.npz and test.npz beside this file
(x: (N, 1, 1250) float32, y: (N,) int64; not committed).
`ecg_cnn.onnx` was trained on the 8,000 strips of `--per-class 2000`. The default makes four times as many
training strips, new to the network, for the exit heads (a head with a hidden layer fits 8,000 strips almost
perfectly and new ones far less well), and 24,000 calibration strips: the guarantee's test is what limits the
saving, and its margin shrinks with the square root of the strips it tests on.

With --stream: records (one patient each: one lead, one morphology) of rhythm episodes of 20-90 s, cut into 5 s
windows every second (`augment --stream`, docs/streams.md). Many short records rather than a few long ones: a
record's windows err alike, so a certificate on streams counts records. A window is labelled with the episode at its
centre and normalised on its own, as a strip is. Writes stream_train.npz and stream_test.npz (a quarter of the
records), with stream (N,) the record's index and order (N,) the window's position in it.
"""

from __future__ import annotations

import argparse
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields
from pathlib import Path

import numpy as np
from physiokit.ecg import EcgPreset, generate_preset_parameters, simulate_brisk

HERE = Path(__file__).resolve().parent
RATE, LENGTH = 250, 1250
CLASSES = ["sinus bradycardia", "normal sinus", "sinus tachycardia", "atrial fibrillation"]
HEART_RATES = [(40, 62), (58, 102), (98, 170), (50, 150)]  # bpm; AF spans all three so rate alone does not tell it
MORPHOLOGIES = [
    EcgPreset.SR,
    EcgPreset.LAHB,
    EcgPreset.LPHB,
    EcgPreset.LBBB,
    EcgPreset.ant_STEMI,
    EcgPreset.high_take_off,
]
SPLITS = {"train": 1.0, "calibration": 0.75, "test": 0.25}  # strips per class, as a share of --per-class
STREAM_SPLITS = {"stream_train": 1.0, "stream_test": 0.25}  # records, as a share of --records
EPISODE_SECONDS, HOP_SECONDS = (20, 90), 1


def at_snr(noise: np.ndarray, signal: np.ndarray, snr_db: float) -> np.ndarray:
    return noise * signal.std() / (noise.std() + 1e-12) / 10 ** (snr_db / 20)


def strip(label: int, seed: int) -> np.ndarray:
    return normalised(episode(label, seed, LENGTH))


def normalised(ecg: np.ndarray) -> np.ndarray:
    return ((ecg - ecg.mean()) / ecg.std()).astype(np.float32)


def episode(label: int, seed: int, length: int, patient: int | None = None) -> np.ndarray:
    """`length` samples of one rhythm; the lead and morphology are drawn from `patient` (default: `seed`)."""
    # physiokit draws from the global `random` and `np.random`: seeded per strip, so workers do not matter
    random.seed(seed)
    np.random.seed(seed % 2**32)
    rng = np.random.default_rng(seed)
    who = np.random.default_rng(seed if patient is None else patient)
    rate = rng.uniform(*HEART_RATES[label])
    params = generate_preset_parameters(MORPHOLOGIES[who.integers(len(MORPHOLOGIES))], rate)
    lead = who.integers(12)
    for f in fields(params):  # the chosen lead first: physiokit then synthesises that one lead only (12x cheaper)
        if isinstance(getattr(params, f.name), list):
            setattr(params, f.name, getattr(params, f.name)[lead:])
    preset = EcgPreset.AFIB if CLASSES[label] == "atrial fibrillation" else EcgPreset.SR
    _, ecg, _, _, _ = simulate_brisk(
        length,
        RATE,
        leads=1,
        heart_rate=rate,
        preset=preset,
        parameters=params,
        noise_multiplier=rng.uniform(0, 2),
        impedance=rng.uniform(0.5, 2),
    )
    ecg = ecg[0]
    t = np.arange(length) / RATE
    wander = sum(np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 2 * np.pi)) for _ in range(2))
    hum = np.sin(2 * np.pi * rng.choice([50, 60]) * t + rng.uniform(0, 2 * np.pi))
    ecg = (
        ecg
        + at_snr(wander, ecg, rng.uniform(-5, 15))
        + at_snr(hum, ecg, rng.uniform(10, 40))
        + at_snr(rng.standard_normal(length), ecg, rng.uniform(5, 30))
    )
    return ecg


def record(seed: int, seconds: int) -> tuple[np.ndarray, np.ndarray]:
    """One patient's record of `seconds` cut into windows: (windows (W, 1, LENGTH), labels (W,))."""
    rng = np.random.default_rng(seed)
    ecg, labels = [], []
    while len(labels) < seconds * RATE:
        label, length = int(rng.integers(len(CLASSES))), int(rng.integers(*EPISODE_SECONDS, endpoint=True)) * RATE
        ecg.append(episode(label, int(rng.integers(2**63)), length, patient=seed))
        ecg[-1] = ecg[-1] / ecg[-1].std()  # episodes of one record at one scale, so the joins do not jump
        labels += [label] * length
    ecg, labels = np.concatenate(ecg)[: seconds * RATE], np.array(labels[: seconds * RATE])
    starts = np.arange(0, len(ecg) - LENGTH + 1, HOP_SECONDS * RATE)
    windows = np.stack([normalised(ecg[s : s + LENGTH]) for s in starts])[:, None]
    return windows, labels[starts + LENGTH // 2]


def split(per_class: int, stream: np.random.SeedSequence, pool: ProcessPoolExecutor) -> tuple[np.ndarray, np.ndarray]:
    y = np.repeat(np.arange(len(CLASSES)), per_class)
    seeds = [int(s) for s in stream.generate_state(len(y), np.uint64)]
    x = np.stack(list(pool.map(strip, y, seeds, chunksize=32)))[:, None]
    return x, y.astype(np.int64)


def recorded(
    records: int, seconds: int, stream: np.random.SeedSequence, pool: ProcessPoolExecutor
) -> dict[str, np.ndarray]:
    seeds = [int(s) for s in stream.generate_state(records, np.uint64)]
    cut = list(pool.map(record, seeds, [seconds] * records))
    return {
        "x": np.concatenate([x for x, _ in cut]),
        "y": np.concatenate([y for _, y in cut]).astype(np.int64),
        "stream": np.concatenate([np.full(len(y), i, np.int64) for i, (_, y) in enumerate(cut)]),
        "order": np.concatenate([np.arange(len(y), dtype=np.int64) for _, y in cut]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--per-class", type=int, default=8000, help="training strips per class (see SPLITS for the others)"
    )
    parser.add_argument("--stream", action="store_true", help="records cut into overlapping windows instead")
    parser.add_argument("--records", type=int, default=1600, help="with --stream: training records (test: a quarter)")
    parser.add_argument("--seconds", type=int, default=30, help="with --stream: the length of a record")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.stream:
        with ProcessPoolExecutor(2) as pool:
            seeds = np.random.SeedSequence([args.seed, 1]).spawn(len(STREAM_SPLITS))
            for (name, share), seed in zip(STREAM_SPLITS.items(), seeds):
                start, n = time.time(), max(1, round(share * args.records))
                arrays = recorded(n, args.seconds, seed, pool)
                np.savez(args.out / f"{name}.npz", **arrays)
                print(f"{name}: {n} records, {len(arrays['y'])} windows in {time.time() - start:.0f} s", flush=True)
        return
    streams = np.random.SeedSequence(args.seed).spawn(len(SPLITS))  # disjoint streams, so disjoint strips
    with ProcessPoolExecutor(2) as pool:
        for (name, share), stream in zip(SPLITS.items(), streams):
            start, n = time.time(), max(1, round(share * args.per_class))
            x, y = split(n, stream, pool)
            np.savez(args.out / f"{name}.npz", x=x, y=y)
            print(f"{name}: {len(y)} strips ({n} per class) in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
