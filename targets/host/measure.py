"""MetaSchedule's builder and runner, in this process.

The stock `LocalBuilder` and `LocalRunner` start a fresh Python (which imports TVM) for every batch of candidates
and link each candidate into a shared library with the system compiler: on a busy 2-core machine that took ~70 s
for 4 candidates, most of a tuning budget. Here a candidate is compiled by LLVM in memory and timed right away.
The price: a candidate that crashes takes the tuning process with it (MetaSchedule's postprocessors reject the
invalid ones, and none crashed in our runs).
"""

from __future__ import annotations

import itertools

import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.runner.utils import alloc_argument_common, run_evaluator_common
from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

# Each measurement: calls repeated for at least MIN_REPEAT_MS, REPEATS times; a kernel counts its fastest
# repeat, which other jobs on the machine disturb least.
REPEATS = 5
MIN_REPEAT_MS = 10


def build_kernel(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.runtime.Module:
    """MetaSchedule's `default_build` without its import of every tensor intrinsic TVM has (44 s here, once)."""
    return tvm.tirx.build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def time_kernel(module: tvm.runtime.Module, args_info) -> float:
    """Seconds per call of a built kernel on random arguments: its fastest of REPEATS repeats."""
    device = tvm.cpu()
    fill = tvm.get_global_func("tvm.contrib.random.random_fill_for_measure")
    args = alloc_argument_common(fill, device, tuple(a.as_json() for a in args_info), alloc_repeat=1)
    config = ms.runner.EvaluatorConfig(number=1, repeat=REPEATS, min_repeat_ms=MIN_REPEAT_MS)
    return min(run_evaluator_common(module, device, config, args))


@derived_object
class InProcessBuilder(ms.builder.PyBuilder):
    """Compiles candidates with LLVM in memory; the artifact "path" names the module kept here for the runner."""

    def __init__(self):
        super().__init__()
        self.built: dict[str, tvm.runtime.Module] = {}
        self._ids = itertools.count()

    def build(self, build_inputs: list[ms.builder.BuilderInput]) -> list[ms.builder.BuilderResult]:
        results = []
        for build_input in build_inputs:
            try:
                module = build_kernel(build_input.mod, build_input.target)
            except Exception as err:  # a candidate that does not build is a result, not a crash
                results.append(ms.builder.BuilderResult(None, f"build error: {err}"))
                continue
            key = f"in-process:{next(self._ids)}"
            self.built[key] = module
            results.append(ms.builder.BuilderResult(key, None))
        return results


@derived_object
class _Done(ms.runner.PyRunnerFuture):
    def __init__(self, result: ms.runner.RunnerResult):
        super().__init__()
        self._result = result

    def done(self) -> bool:
        return True

    def result(self) -> ms.runner.RunnerResult:
        return self._result


@derived_object
class InProcessRunner(ms.runner.PyRunner):
    """Times the modules `builder` compiled on this machine's CPU, then frees them."""

    def __init__(self, builder: InProcessBuilder):
        super().__init__()
        self.builder = builder

    def run(self, runner_inputs: list[ms.runner.RunnerInput]) -> list[ms.runner.RunnerFuture]:
        return [_Done(self._time(i)) for i in runner_inputs]

    def _time(self, runner_input: ms.runner.RunnerInput) -> ms.runner.RunnerResult:
        module = self.builder.built.pop(str(runner_input.artifact_path))
        try:
            return ms.runner.RunnerResult([time_kernel(module, runner_input.args_info)], None)
        except Exception as err:  # a candidate that fails at run time is a result too
            return ms.runner.RunnerResult(None, f"run error: {err}")
