"""The cost model: what a segment costs on a target, learned from measurements of workloads.

workloads.py (generated layers, segments of real models) -> measure.py (QEMU instruction counts, host timings)
-> data.py (the measurements and the trained model of a platform, and where they are kept) -> features.py (what the
model sees of a Relax function) -> model.py (per target: a base model corrected by XGBoost trees, or the analytic
fallback).
"""
