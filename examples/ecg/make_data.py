"""ECG rhythm data made offline: 5 s single-lead strips at 250 Hz synthesised by physiokit, in four rhythm classes.

    python examples/ecg/make_data.py [--per-class 2000] [--seed 0]

physiokit's WaSP-ECG generator has two rhythms, sinus and atrial fibrillation (no P waves, irregular RR);
sinus rhythm is split by rate into bradycardia, normal and tachycardia, with ranges that overlap by a few beats
per minute so the boundary stays ambiguous, as it is in 5 s of a real strip. Every strip takes a random lead,
a random conduction morphology (normal, hemiblocks, LBBB, STEMI, high take-off: physiokit's presets, here a
nuisance the network has to ignore) and random physiokit noise, then baseline wander, powerline hum and white
noise at random SNRs, and is normalised to zero mean and unit std. Train, calibration (the exit thresholds) and
test come from three different random streams. Writes train.npz, calibration.npz and test.npz beside this file
(x: (N, 1, 1250) float32, y: (N,) int64; not committed).
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
SPLITS = {"train": 1.0, "calibration": 0.25, "test": 0.25}  # strips per class, as a share of --per-class


def at_snr(noise: np.ndarray, signal: np.ndarray, snr_db: float) -> np.ndarray:
    return noise * signal.std() / (noise.std() + 1e-12) / 10 ** (snr_db / 20)


def strip(label: int, seed: int) -> np.ndarray:
    # physiokit draws from the global `random` and `np.random`: seeded per strip, so workers do not matter
    random.seed(seed)
    np.random.seed(seed % 2**32)
    rng = np.random.default_rng(seed)
    rate = rng.uniform(*HEART_RATES[label])
    params = generate_preset_parameters(MORPHOLOGIES[rng.integers(len(MORPHOLOGIES))], rate)
    lead = rng.integers(12)
    for f in fields(params):  # the chosen lead first: physiokit then synthesises that one lead only (12x cheaper)
        if isinstance(getattr(params, f.name), list):
            setattr(params, f.name, getattr(params, f.name)[lead:])
    preset = EcgPreset.AFIB if CLASSES[label] == "atrial fibrillation" else EcgPreset.SR
    _, ecg, _, _, _ = simulate_brisk(
        LENGTH,
        RATE,
        leads=1,
        heart_rate=rate,
        preset=preset,
        parameters=params,
        noise_multiplier=rng.uniform(0, 2),
        impedance=rng.uniform(0.5, 2),
    )
    ecg = ecg[0]
    t = np.arange(LENGTH) / RATE
    wander = sum(np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 2 * np.pi)) for _ in range(2))
    hum = np.sin(2 * np.pi * rng.choice([50, 60]) * t + rng.uniform(0, 2 * np.pi))
    ecg = (
        ecg
        + at_snr(wander, ecg, rng.uniform(-5, 15))
        + at_snr(hum, ecg, rng.uniform(10, 40))
        + at_snr(rng.standard_normal(LENGTH), ecg, rng.uniform(5, 30))
    )
    return ((ecg - ecg.mean()) / ecg.std()).astype(np.float32)


def split(per_class: int, stream: np.random.SeedSequence, pool: ProcessPoolExecutor) -> tuple[np.ndarray, np.ndarray]:
    y = np.repeat(np.arange(len(CLASSES)), per_class)
    seeds = [int(s) for s in stream.generate_state(len(y), np.uint64)]
    x = np.stack(list(pool.map(strip, y, seeds, chunksize=32)))[:, None]
    return x, y.astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=2000, help="training strips per class (the others: a quarter)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    streams = np.random.SeedSequence(args.seed).spawn(len(SPLITS))  # disjoint streams, so disjoint strips
    with ProcessPoolExecutor(2) as pool:
        for (name, share), stream in zip(SPLITS.items(), streams):
            start, n = time.time(), max(1, round(share * args.per_class))
            x, y = split(n, stream, pool)
            np.savez(args.out / f"{name}.npz", x=x, y=y)
            print(f"{name}: {len(y)} strips ({n} per class) in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
