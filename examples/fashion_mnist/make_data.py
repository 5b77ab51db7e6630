"""Write the example's data files from Debian's Fashion-MNIST package: train.npz (60k) and test.npz (10k).

    python examples/fashion_mnist/make_data.py [-o DIR]

`x` is float32 (N, 1, 28, 28) in [0, 1], as the example model was trained; `y` the labels 0..9.
"""

import argparse
from pathlib import Path

import numpy as np
from fashion_mnist import load

HERE = Path(__file__).resolve().parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output-dir", type=Path, default=HERE)
    args = parser.parse_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        x, y = load(split)
        np.savez(args.output_dir / f"{split}.npz", x=x, y=y)
        print(f"wrote {args.output_dir / f'{split}.npz'}: {len(y)} samples")


if __name__ == "__main__":
    main()
