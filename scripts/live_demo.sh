#!/usr/bin/env bash
# A live deployment on this machine: a Mosquitto broker, one `eenn-tvm serve` per host tier, then the device
# (the firmware in QEMU) on the first N test images. Everything started here stops when it ends (or on Ctrl-C).
#   scripts/live_demo.sh OUT TEST.npz [N]
set -euo pipefail
out=$1
data=$2
n=${3:-200}
eenn=.venv/bin/eenn-tvm
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait
  rm -rf "$work"
}
trap cleanup EXIT

$eenn broker --folder "$work/broker" >"$work/url" &
pids+=($!)
until [ -s "$work/url" ]; do sleep 0.1; done
url=$(cat "$work/url")

# The tiers after the device, from the plan's deployment.
tiers=$(python3 -c 'import json, sys; print(*(t["target"] for t in json.load(open(sys.argv[1]))["deployment"]["tiers"][1:]))' "$out/plan.json")
for tier in $tiers; do
  $eenn serve "$out" --tier "$tier" --broker "$url" 2> >(tee "$work/$tier.log" >&2) &
  pids+=($!)
done
for tier in $tiers; do
  until grep -q " listening on " "$work/$tier.log" 2>/dev/null; do sleep 0.2; done
done
$eenn device "$out" --data "$data" --n "$n" --broker "$url"
