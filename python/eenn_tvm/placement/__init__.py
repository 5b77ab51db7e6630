"""The placement across tiers: a network's segments on a platform's targets, to the exact optimum.

solver.py (the problem and its exact solver, pure Python) <- problem_file.py (the problem as a JSON document) <-
segments.py (`map` on an `augment` output: the segments with their predicted costs as a problem, solved).
"""
