"""The FIN paper's two networks, BranchyNet's B-AlexNet and B-ResNet-110 (CIFAR-10), as placement problem files.

    python examples/placement/branchynet.py [--resnet-exits 0.4 0.2] [--out examples/placement]

The FIN paper (Singhal et al., INFOCOM 2024) places these two networks on its device / edge / cloud tiers, but
its per-block figures could not be read offline. What is public, and used here:
- the architectures, from BranchyNet's code (github.com/kunglab/branchynet, networks/alex_cifar10.py and
  networks/resnet_cifar10.py, chainer): MACs, parameters and activation sizes per block follow from them exactly
  (conventions below); a block is one trunk layer (AlexNet) or residual block (ResNet), and a block with a branch
  also pays for the branch's head, since every sample that reaches it runs the head;
- B-AlexNet's exit shares and accuracies: BranchyNet's own results (kunglab/branchynet,
  experiment_alex_cifar10.ipynb, CPU table): at entropy thresholds {0.01, 0.05} (its most accurate row, 79.66 %)
  63.42 / 21.36 / 15.22 % of the CIFAR-10 test images leave at branch 1 / branch 2 / the end; branch 1 alone is
  75.29 % accurate (the rows where every image leaves there), the main network 77.76 %; branch 2 alone is not
  published, so that exit has a share but no accuracy (it cannot be the terminal one);
- the nodes and links: the `fin` platform preset (the FIN paper's powers, throughputs and energies per bit;
  bandwidths and link latencies there are marked as assumptions), features sent at its 8 bits per value.
B-ResNet's exit shares are not in any material available offline: `--resnet-exits` sets them, and the file
records them as an assumption. The latency bound (50 ms, as in the placement issue's example) is one too.

Conventions: MACs of convolutions and dense layers (pooling, LRN, ReLU and the zero-padded shortcut cost
none); parameters are float32 weights and biases, batch norm as a scale and a shift per channel.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from eenn_tvm.placement.problem_file import ProblemFile
from eenn_tvm.placement.segments import platform_nodes
from eenn_tvm.placement.solver import PlacementProblem
from eenn_tvm.platform import Platform

HERE = Path(__file__).resolve().parent
BRANCHYNET = "github.com/kunglab/branchynet"
MAX_LATENCY_S = 0.05


@dataclass
class Trace:
    """Shapes, MACs and parameters of a run of chainer layers (channels, height, width)."""

    c: int
    h: int
    w: int
    macs: int = 0
    params: int = 0

    def fork(self) -> Trace:
        return Trace(self.c, self.h, self.w)

    def conv(self, out: int, k: int, stride: int = 1, pad: int = 0, norm: bool = False) -> Trace:
        self.h, self.w = ((n + 2 * pad - k) // stride + 1 for n in (self.h, self.w))
        self.macs += out * self.c * k * k * self.h * self.w
        self.params += out * self.c * k * k + out + (2 * out if norm else 0)
        self.c = out
        return self

    def max_pool(self, k: int = 3, stride: int = 2) -> Trace:
        """chainer's max_pooling_2d, cover_all: the last window may hang over the edge."""
        self.h, self.w = ((n - k + stride - 1) // stride + 1 for n in (self.h, self.w))
        return self

    def subsample(self, k: int, stride: int) -> Trace:
        """chainer's average_pooling_2d (no cover_all): no MACs counted."""
        self.h, self.w = ((n - k) // stride + 1 for n in (self.h, self.w))
        return self

    def linear(self, out: int) -> Trace:
        size = self.c * self.h * self.w
        self.macs += size * out
        self.params += size * out + out
        self.c, self.h, self.w = out, 1, 1
        return self

    def res_block(self, out: int, stride: int = 1) -> Trace:
        """BranchyNet's ResBlock: two 3x3 conv + BN; the shortcut zero-pads channels and subsamples."""
        return self.conv(out, 3, stride, 1, norm=True).conv(out, 3, 1, 1, norm=True)

    @property
    def values(self) -> int:
        return self.c * self.h * self.w


class Chain:
    """Collects the problem's blocks as the trunk grows: each block is the trunk's growth since the last cut,
    plus the head of the branch that leaves there."""

    def __init__(self, trunk: Trace):
        self.trunk, self.blocks, self.mark = trunk, [], (0, 0)

    def cut(
        self, name: str, head: Trace | None = None, exit_fraction: float | None = None, accuracy: float | None = None
    ) -> None:
        macs, params = self.trunk.macs - self.mark[0], self.trunk.params - self.mark[1]
        if head is not None:
            macs, params = macs + head.macs, params + head.params
        block = {"name": name, "macs": macs, "param_bytes": 4 * params, "out_bits": 8 * self.trunk.values}
        if exit_fraction is not None:
            block["exit"] = {"exit_fraction": exit_fraction, **({"accuracy": accuracy} if accuracy is not None else {})}
        self.blocks.append(block)
        self.mark = (self.trunk.macs, self.trunk.params)


def b_alexnet() -> list[dict]:
    """networks/alex_cifar10.py; exits from experiment_alex_cifar10.ipynb (see the module docstring)."""
    t = Trace(3, 32, 32)
    chain = Chain(t)
    t.conv(32, 5, pad=2).max_pool()
    chain.cut("conv1")
    t.conv(64, 5, pad=2)
    chain.cut(
        "conv2+branch1",
        t.fork().max_pool().conv(32, 3, pad=1).conv(32, 3, pad=1).max_pool().linear(10),
        exit_fraction=0.6342,
        accuracy=0.7529,
    )
    t.max_pool().conv(96, 3, pad=1)
    chain.cut("conv3+branch2", t.fork().max_pool().conv(32, 3, pad=1).max_pool().linear(10), exit_fraction=0.2136)
    t.conv(96, 3, pad=1)
    chain.cut("conv4")
    t.conv(64, 3, pad=1).max_pool()
    chain.cut("conv5")
    for i, width in enumerate((256, 128)):
        t.linear(width)
        chain.cut(f"fc{i + 1}")
    t.linear(10)
    chain.cut("fc3", exit_fraction=0.1522, accuracy=0.7776)
    return chain.blocks


def b_resnet110(branch1: float, branch2: float) -> list[dict]:
    """networks/resnet_cifar10.py: a 3x3 stem without padding (30x30), 1 + 18 residual blocks at 16 channels,
    branch 1 after the first (LRN, two 3x3 conv, max pool, two dense layers), branch 2 after the 19th (a residual
    block and a dense layer), 18 blocks at 32 and 18 at 64 channels, average pool, dense."""
    t = Trace(3, 32, 32)
    chain = Chain(t)
    t.conv(16, 3, norm=True)
    chain.cut("stem")
    t.res_block(16)
    chain.cut(
        "res1+branch1",
        t.fork().conv(32, 3, pad=1).conv(32, 3, pad=1).max_pool().linear(3600).linear(10),
        exit_fraction=branch1,
    )
    for i in range(2, 20):
        t.res_block(16)
        if i < 19:
            chain.cut(f"res{i}")
    chain.cut("res19+branch2", t.fork().res_block(16).linear(10), exit_fraction=branch2)
    for stage, width in ((20, 32), (38, 64)):
        for i in range(stage, stage + 18):
            t.res_block(width, 2 if i == stage else 1)
            if i < 55:
                chain.cut(f"res{i}")
    t.subsample(6, 1).linear(10)
    chain.cut("res55+fc", exit_fraction=round(1 - branch1 - branch2, 6))
    return chain.blocks


def problem(blocks: list[dict], provenance: dict) -> dict:
    """The problem file: the `fin` platform's nodes and links around `blocks`, CIFAR-10's 3x32x32 input."""
    platform = Platform.load("fin")
    nodes, links = platform_nodes(platform)
    shell = PlacementProblem(
        platform.device.name, platform.transfer_bits((1, 3, 32, 32)), [], nodes, links, max_latency_s=MAX_LATENCY_S
    )
    return {"provenance": provenance, **ProblemFile.of(shell).to_json(), "blocks": blocks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--resnet-exits",
        type=float,
        nargs=2,
        default=(0.4, 0.2),
        metavar=("BRANCH1", "BRANCH2"),
        help="share of samples leaving B-ResNet at branch 1 and 2 (not published; an assumption)",
    )
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    nodes_from = "targets/platforms/fin.toml (FIN paper; bandwidths and link latencies assumed)"
    common = {"nodes_and_links": nodes_from, "max_latency_s": "assumption (the placement issue's example)"}
    files = {
        "b_alexnet.json": problem(
            b_alexnet(),
            {
                "network": f"B-AlexNet, CIFAR-10: {BRANCHYNET} networks/alex_cifar10.py",
                "exits": f"{BRANCHYNET} experiment_alex_cifar10.ipynb, CPU table, thresholds {{0.01, 0.05}}; "
                "branch 2's own accuracy not published",
                **common,
            },
        ),
        "b_resnet110.json": problem(
            b_resnet110(*args.resnet_exits),
            {
                "network": f"B-ResNet-110, CIFAR-10: {BRANCHYNET} networks/resnet_cifar10.py",
                "exits": f"assumption: {args.resnet_exits[0]:g} / {args.resnet_exits[1]:g} at branch 1 / 2 "
                "(not published in material available offline); no accuracies",
                **common,
            },
        ),
    }
    for name, doc in files.items():
        (args.out / name).write_text(json.dumps(doc, indent=1) + "\n")
        macs = sum(b["macs"] for b in doc["blocks"])
        print(f"wrote {args.out / name}: {len(doc['blocks'])} blocks, {macs / 1e6:.1f} M MACs with the heads")


if __name__ == "__main__":
    main()
