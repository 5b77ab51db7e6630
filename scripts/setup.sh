#!/usr/bin/env bash
# Set up eenn-tvm on a fresh Debian machine: system packages, then a virtual environment in .venv.
#   scripts/setup.sh         what running eenn-tvm needs
#   scripts/setup.sh --dev   also what the tests and the example's training script need (pytest, torch)
#   scripts/setup.sh --tiers also what a live deployment across tiers needs (paho-mqtt)
set -euo pipefail
cd "$(dirname "$0")/.."

extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
[ "${1:-}" = "--tiers" ] && extra="[tiers]"  # the live deployment (paho-mqtt) without the development tools

# g++ links exported host modules; the Fashion-MNIST package is the example's data set; the Arm
# cross-compiler, newlib, CMake and QEMU build and run the microcontroller firmware; espeak-ng and flite
# speak the keyword-spotting example's data; Mosquitto is the MQTT broker of the live deployment's tests and demo.
apt_packages=(g++ dataset-fashion-mnist cmake gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm espeak-ng flite
  mosquitto)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

stamp=".venv/.installed${extra}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  echo "setup: installing eenn-tvm${extra} into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".${extra}"
  touch "$stamp"
fi
