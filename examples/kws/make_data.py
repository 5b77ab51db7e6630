"""Keyword-spotting data made offline: the Speech Commands keywords spoken by Debian's espeak-ng and flite.

    python examples/kws/make_data.py [--per-class 2400] [--seed 0]
    python examples/kws/make_data.py --stream [--streams 2400] [--seconds 15] [--seed 0]

Twelve classes as in the MLPerf Tiny benchmark (ten keywords, "silence", "unknown": other words), many voices,
variants, speeds and pitches, placed at a random offset in 1 s at 16 kHz with background noise at 0-25 dB SNR,
then MFCC (49x10, `mfcc.py`). Speakers (engine, voice, variant) are split between train, calibration and test:
the thresholds are set on voices the network never heard, and the test split holds voices neither the network nor
the thresholds heard. Writes train.npz, calibration.npz and test.npz beside this file (x: (N, 1, 49, 10) float32,
y: (N,) int64, groups: (N,) the speaker's index, which augment's accuracy margin uses; not committed).
`dscnn.onnx` was trained on the words of `--per-class 800`; the default makes three times as many words of the
same voices, almost all new to the network: the exit heads learn from words whose features look like those of new
data (on the words it was trained on the network is right on every one), and the guarantee tests on more of them
(`bench/paper.py --tasks kws`: 73.9 % of the MACs saved with the old default, 80.9 % with this one).

With --stream: running streams of --seconds, one speaker each (drawn from STREAM_VARIANTS: most of them unheard by
the network), words (keywords mostly, other words too) at random gaps inside one steady background noise, cut into
1 s windows every HOP_SECONDS (`augment --stream`, docs/streams.md). A window is labelled with the word it holds at
least half of, else "silence". Streams of test speakers go to stream_test.npz, the others to stream_train.npz, with
stream (N,) the stream's index, order (N,) the window's position in it and groups (N,) its speaker.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy.io.wavfile
from mfcc import RATE, mfcc
from scipy.signal import resample_poly

HERE = Path(__file__).resolve().parent
KEYWORDS = ["down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes"]
CLASSES = KEYWORDS + ["silence", "unknown"]
UNKNOWN_WORDS = [
    "bed",
    "bird",
    "cat",
    "dog",
    "happy",
    "house",
    "marvin",
    "sheila",
    "tree",
    "wow",
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "learn",
    "follow",
    "forward",
    "backward",
    "visual",
]
ESPEAK_VOICES = [
    "en",
    "en-us",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
    "en-gb-x-gbcl",
]
ESPEAK_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2"]
FLITE_VOICES = ["kal", "kal16", "awb", "rms", "slt"]
# Streams come from many more speakers than the network heard: a speaker's streams are alike, so a certificate on
# streams counts speakers and needs hundreds of them; espeak-ng's other human-sounding variants give them.
STREAM_VARIANTS = ESPEAK_VARIANTS + [
    *("m8", "klatt3", "klatt4", "klatt5", "klatt6", "adam", "Alex", "Alicia", "Andrea", "Andy", "Annie", "antonio"),
    *("aunty", "belinda", "benjamin", "boris", "caleb", "david", "Denis", "Diogo", "ed", "edward", "Gene", "gustave"),
    *("Henrique", "Hugo", "iven", "Jacky", "john", "Lee", "linda", "marcelo", "Marco", "Mario", "max", "Michael"),
    *("michel", "miguel", "Mike", "Nguyen", "pablo", "paul", "pedro", "quincy", "rob", "robert", "steph", "zac"),
    *("anika", "grandpa", "grandma", "norbert", "sandro", "shelby", "travis", "victor"),
]
SPLITS = {"test": 0.2, "calibration": 0.2, "train": 0.6}  # shares of the speakers
HOP_SECONDS, GAP_SECONDS, KEYWORD_SHARE = 0.25, (0.3, 3.0), 0.7


def speakers(variants: list[str] = ESPEAK_VARIANTS) -> list[tuple[str, str, str]]:
    return [("espeak", v, var) for v in ESPEAK_VOICES for var in variants] + [("flite", v, "") for v in FLITE_VOICES]


def split_of(speaker: tuple[str, str, str]) -> str:
    """The split a speaker belongs to, fixed by a hash of its name so that it never changes with --seed."""
    position = zlib.crc32("/".join(speaker).encode()) % 1000 / 1000
    for name, share in SPLITS.items():
        if position < share:
            return name
        position -= share
    return "train"


def synthesise(word: str, speaker: tuple[str, str, str], rng: np.random.Generator, scratch: Path) -> np.ndarray:
    engine, voice, variant = speaker
    wav = scratch / f"{rng.integers(1 << 62)}.wav"
    if engine == "espeak":
        command = [
            "espeak-ng",
            "-v",
            f"{voice}+{variant}",
            "-s",
            str(rng.integers(120, 220)),
            "-p",
            str(rng.integers(20, 80)),
            "-w",
            str(wav),
            word,
        ]
    else:
        command = [
            "flite",
            "-voice",
            voice,
            "--setf",
            f"duration_stretch={rng.uniform(0.8, 1.3):.2f}",
            "--setf",
            f"int_f0_target_mean={rng.integers(90, 200)}",
            "-t",
            word,
            "-o",
            str(wav),
        ]
    subprocess.run(command, check=True, capture_output=True)
    rate, audio = scipy.io.wavfile.read(wav)
    wav.unlink()
    audio = audio.astype(np.float32) / 32768.0
    return resample_poly(audio, RATE, rate) if rate != RATE else audio


def one_second(speech: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """The utterance at a random offset in 1 s, scaled at random, with white or brown noise at 0-25 dB SNR."""
    clip = np.zeros(RATE, np.float32)
    if speech is not None:
        speech = (
            speech[np.flatnonzero(np.abs(speech) > 0.01).min() :][:RATE]
            if np.abs(speech).max() > 0.01
            else speech[:RATE]
        )
        start = rng.integers(0, RATE - len(speech) + 1)
        clip[start : start + len(speech)] = speech * rng.uniform(0.3, 1.0)
    noise = rng.standard_normal(RATE).astype(np.float32)
    if rng.random() < 0.5:
        noise = np.cumsum(noise)
        noise -= np.convolve(noise, np.ones(400) / 400, mode="same")  # brown noise, its drift removed
    noise /= noise.std() + 1e-9
    level = (clip.std() if speech is not None else rng.uniform(0.005, 0.05)) / 10 ** (rng.uniform(0, 25) / 20)
    return np.clip(clip + level * noise, -1, 1)


def sample(label: int, speaker, seed: int, scratch: Path) -> np.ndarray:
    rng = np.random.default_rng(seed)
    word = CLASSES[label]
    if word == "silence":
        return mfcc(one_second(None, rng))
    if word == "unknown":
        word = UNKNOWN_WORDS[rng.integers(len(UNKNOWN_WORDS))]
    return mfcc(one_second(synthesise(word, speaker, rng, scratch), rng))


def voiced(speech: np.ndarray) -> np.ndarray:
    """The utterance from its first to its last sample above the silence level, at most 1 s."""
    loud = np.flatnonzero(np.abs(speech) > 0.01)
    return speech[loud.min() : loud.max() + 1][:RATE] if len(loud) else speech[:RATE]


def stream(speaker, seed: int, seconds: int, scratch: Path) -> tuple[np.ndarray, np.ndarray]:
    """One speaker's running stream of `seconds` cut into windows: (MFCC windows (W, 49, 10), labels (W,))."""
    rng = np.random.default_rng(seed)
    length = seconds * RATE
    audio, words = np.zeros(length, np.float32), []  # words: (start, end, label)
    at = int(rng.uniform(*GAP_SECONDS) * RATE)
    while True:
        keyword = rng.random() < KEYWORD_SHARE
        label = int(rng.integers(len(KEYWORDS))) if keyword else CLASSES.index("unknown")
        word = KEYWORDS[label] if keyword else UNKNOWN_WORDS[rng.integers(len(UNKNOWN_WORDS))]
        speech = voiced(synthesise(word, speaker, rng, scratch)) * rng.uniform(0.3, 1.0)
        if at + len(speech) > length:
            break
        audio[at : at + len(speech)] = speech
        words.append((at, at + len(speech), label))
        at += len(speech) + int(rng.uniform(*GAP_SECONDS) * RATE)
    noise = rng.standard_normal(length).astype(np.float32)
    if rng.random() < 0.5:
        noise = np.cumsum(noise)
        noise -= np.convolve(noise, np.ones(400) / 400, mode="same")  # brown noise, its drift removed
    speech_level = np.sqrt(np.mean([np.mean(audio[a:b] ** 2) for a, b, _ in words])) if words else 0.02
    audio = np.clip(audio + noise / (noise.std() + 1e-9) * speech_level / 10 ** (rng.uniform(5, 25) / 20), -1, 1)
    starts = np.arange(0, length - RATE + 1, int(HOP_SECONDS * RATE))
    labels = np.full(len(starts), CLASSES.index("silence"))
    for i, start in enumerate(starts):
        inside = [(min(b, start + RATE) - max(a, start)) / (b - a) for a, b, _ in words]
        if inside and max(inside) >= 0.5:
            labels[i] = words[int(np.argmax(inside))][2]
    return np.stack([mfcc(audio[s : s + RATE]) for s in starts]), labels


def make_streams(count: int, seconds: int, seed: int, out: Path) -> None:
    everyone = speakers(STREAM_VARIANTS)
    rng = np.random.default_rng([seed, 1])
    who = rng.integers(len(everyone), size=count)
    jobs = [(everyone[i], int(rng.integers(1 << 62))) for i in who]
    with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(4) as pool:
        cut = list(pool.map(lambda job: stream(*job, seconds, Path(scratch)), jobs))
    test = np.array([split_of(speaker) == "test" for speaker, _ in jobs])
    for name, rows in (("stream_train", np.flatnonzero(~test)), ("stream_test", np.flatnonzero(test))):
        np.savez(
            out / f"{name}.npz",
            x=np.concatenate([cut[i][0] for i in rows])[:, None],
            y=np.concatenate([cut[i][1] for i in rows]).astype(np.int64),
            stream=np.concatenate([np.full(len(cut[i][1]), i, np.int64) for i in rows]),
            groups=np.concatenate([np.full(len(cut[i][1]), who[i], np.int64) for i in rows]),
            order=np.concatenate([np.arange(len(cut[i][1]), dtype=np.int64) for i in rows]),
        )
        print(f"{name}: {len(rows)} streams, {sum(len(cut[i][1]) for i in rows)} windows")


def plan_samples(per_class: int, seed: int) -> list[tuple[int, tuple[str, str, str], int]]:
    """(label, speaker, seed) of every sample: the whole data set follows from these."""
    everyone = speakers()
    rng = np.random.default_rng(seed)
    return [
        (label, everyone[rng.integers(len(everyone))], int(rng.integers(1 << 62)))
        for label in range(len(CLASSES))
        for _ in range(per_class)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=2400)
    parser.add_argument("--stream", action="store_true", help="running streams cut into windows instead")
    parser.add_argument("--streams", type=int, default=2400, help="with --stream: how many (a fifth are test)")
    parser.add_argument("--seconds", type=int, default=15, help="with --stream: the length of a stream")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.stream:
        make_streams(args.streams, args.seconds, args.seed, args.out)
        return
    jobs = plan_samples(args.per_class, args.seed)
    with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(4) as pool:
        features = list(pool.map(lambda job: sample(*job, Path(scratch)), jobs))
    x = np.stack(features)[:, None]
    y = np.array([label for label, _, _ in jobs], np.int64)
    split = np.array([split_of(speaker) for _, speaker, _ in jobs])
    index = {speaker: i for i, speaker in enumerate(speakers())}
    groups = np.array([index[speaker] for _, speaker, _ in jobs], np.int64)
    for name in SPLITS:
        rows = split == name
        np.savez(args.out / f"{name}.npz", x=x[rows], y=y[rows], groups=groups[rows])
        print(f"{name}: {rows.sum()} samples, {len({s for (_, s, _), r in zip(jobs, rows) if r})} speakers")


if __name__ == "__main__":
    main()
