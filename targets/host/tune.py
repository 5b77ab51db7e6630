"""Tuning a module's kernels with MetaSchedule into a database folder that builds then apply (`eenn-tvm tune`).

Every kernel starts from its default schedule, measured and stored as the first record, so a build with the
database is never slower than one without it (as far as the measurements tell); MetaSchedule's evolutionary
search then looks for better ones. A kernel the database already holds is not tuned again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import tvm
from tvm import s_tir
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.logging import get_loggers_from_work_dir
from tvm.s_tir.meta_schedule.relax_integration import extract_tasks
from tvm.s_tir.meta_schedule.utils import fork_seed

from eenn_tvm.errors import EennError
from eenn_tvm.targets.host.measure import InProcessBuilder, InProcessRunner, build_kernel, time_kernel
from eenn_tvm.targets.host.pipeline import fused_kernels
from eenn_tvm.targets.host.schedule import ChannelLastReduction, default_rule, default_schedule
from eenn_tvm.targets.host.target import target_cpu
from eenn_tvm.textui import logger_at

MANIFEST = "eenn-database.json"  # beside MetaSchedule's own files: which CPU the records were measured on
TRIALS_PER_ROUND = 16
SHARE = 0.02  # kernels under this share of the module's time keep their default schedule


class DatabaseError(EennError):
    """A database folder that cannot be used: unwritable, not a database, or tuned for another CPU."""


def open_database(folder: str | Path, target: tvm.target.Target, create: bool = False) -> ms.database.JSONDatabase:
    """The MetaSchedule database in `folder`, checked to be tuned for `target`'s CPU; made if `create` (which
    also checks that the folder can be written)."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    cpu = target_cpu(target)
    if manifest.is_file():
        try:
            tuned_for = json.loads(manifest.read_text()).get("cpu")
        except (ValueError, AttributeError):
            raise DatabaseError(f"{manifest} is not a tuning database manifest: tune into a new folder") from None
        if tuned_for != cpu:
            raise DatabaseError(f"{folder} was tuned for the CPU {tuned_for!r}, not {cpu!r}: tune into another folder")
    elif not create:
        raise DatabaseError(f"{folder} is not a tuning database (no {MANIFEST}): make one with `eenn-tvm tune`")
    elif folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise DatabaseError(f"{folder} is not empty and is not a tuning database: give a new or empty folder")
    else:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            manifest.write_text(json.dumps({"cpu": cpu, "made_by": "eenn-tvm tune"}, indent=1) + "\n")
        except OSError as err:
            raise DatabaseError(f"cannot write the database folder {folder}: {err.strerror}") from None
    if create and not os.access(folder, os.W_OK):
        raise DatabaseError(f"cannot write the database folder {folder}: permission denied")
    _check_records(folder)
    return ms.database.JSONDatabase(work_dir=str(folder), module_equality="structural")


def read_records(folder: str | Path) -> None:
    """Load every workload and tuning record of the database in `folder` and replay each record's schedule."""
    database = ms.database.JSONDatabase(work_dir=str(folder), module_equality="structural")
    for record in database.get_all_tuning_records():
        record.as_measure_candidate()


def _check_records(folder: Path) -> None:
    """The records are user input that TVM's own reader trusts (some malformed lines crash the process), so a
    child process reads them all first; the one line it ends with names what is wrong."""
    probe = f"import sys; from {__name__} import read_records; read_records(sys.argv[1])"
    done = subprocess.run([sys.executable, "-c", probe, str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        why = lines[-1][:200] if done.returncode > 0 and lines else f"its reader crashed (exit {done.returncode})"
        raise DatabaseError(f"{folder}: its MetaSchedule records cannot be read ({why}): tune into a new folder")


@dataclass
class KernelTuning:
    name: str
    uses: int  # how many times the module calls it
    trials: int  # candidates measured in this run
    default_us: float | None  # its default schedule
    best_us: float | None  # the best in the database after this run
    already_tuned: bool  # found in the database: not tuned again


@dataclass
class TuneReport:
    cpu: str
    database: str
    trials: int
    seconds: float
    kernels: list[KernelTuning]

    def to_json(self) -> dict:
        return asdict(self)


def tune(
    mod: tvm.IRModule,
    target: tvm.target.Target,
    folder: str | Path,
    trials: int,
    log: Callable[[str], None] = lambda _: None,
    minutes: float | None = None,
) -> TuneReport:
    """Tune the kernels of `mod` not yet in the database `folder` with about `trials` candidates in all, the
    search stopping after `minutes` if given (the final timing of the winners comes on top).

    The search keeps its records in memory; the database receives one record per kernel: its default schedule
    or the search's best, whichever is faster when the two are timed again side by side (a single timing on a
    busy machine can be lucky).
    """
    started = time.perf_counter()
    database = open_database(folder, target, create=True)
    tasks = extract_tasks(fused_kernels(mod, target), target)
    new = [t for t in tasks if not database.has_workload(t.dispatched[0])]
    log(f"{len(tasks)} kernels, {len(tasks) - len(new)} of them already in {folder}")
    search = ms.database.MemoryDatabase(module_equality="structural")
    seeds = {t.task_name: _seed(search, t, target) for t in new}
    defaults = {name: float(r.run_secs[0]) if r else None for name, r in seeds.items()}
    searched = _worth_searching(new, defaults)
    log(f"default schedules measured; searching {len(searched)} kernels (the rest take under {SHARE:.0%} of the time)")
    deadline = None if minutes is None else started + 60 * minutes
    progress = _Progress(searched, log, deadline)
    if searched and trials > 0:
        with logger_at("tvm.s_tir.meta_schedule", logging.WARNING):  # its logs stay in the folder's logs/
            ms.tune.tune_tasks(
                tasks=_contexts(searched, target, folder),
                task_weights=[float(t.weight) for t in searched],
                work_dir=str(folder),
                max_trials_global=trials,
                num_trials_per_iter=min(TRIALS_PER_ROUND, max(trials // len(searched), 1)),
                builder=(builder := InProcessBuilder()),
                runner=InProcessRunner(builder),
                database=search,
                # MetaSchedule's default callbacks also delete each candidate's build folder, which ours have not
                measure_callbacks=[
                    ms.measure_callback.AddToDatabase(),
                    ms.measure_callback.UpdateCostModel(),
                    progress,
                ],
            )
    confirmed = {t.task_name: _keep_faster(search, database, t, seeds[t.task_name]) for t in new}
    kernels = [
        KernelTuning(
            t.task_name,
            int(t.weight),
            progress.trials.get(t.task_name, 0),
            _us(confirmed[t.task_name][0] if t in new else None),
            _us(confirmed[t.task_name][1] if t in new else _best(database, t)),
            t not in new,
        )
        for t in tasks
    ]
    return TuneReport(target_cpu(target), str(folder), progress.total, time.perf_counter() - started, kernels)


def _keep_faster(search, database, task, seed, rounds: int = 3) -> tuple[float | None, float | None]:
    """Time the kernel's default schedule (`seed`) and the best one the search found `rounds` times each,
    alternately; commit the faster to `database`. Their seconds per call (None where there is none)."""
    workload = database.commit_workload(task.dispatched[0])  # known from now on, even with no schedule of ours
    found = search.get_top_k(search.commit_workload(task.dispatched[0]), 1)
    candidates = [r for r in [seed, *found] if r is not None and (r is seed or seed is None or not r.same_as(seed))]
    if not candidates:
        return None, None
    modules = [build_kernel(r.as_measure_candidate().sch.mod, r.target) for r in candidates]
    timed = [float("inf")] * len(candidates)
    for _ in range(rounds):  # alternately, so that both see the same moments of a busy machine
        timed = [min(t, time_kernel(m, r.args_info)) for t, m, r in zip(timed, modules, candidates)]
    winner = min(range(len(candidates)), key=timed.__getitem__)
    record = candidates[winner]
    database.commit_tuning_record(
        ms.database.TuningRecord(record.trace, workload, [timed[winner]], record.target, record.args_info)
    )
    return (timed[0] if seed is not None else None), timed[winner]


def _worth_searching(tasks, defaults: dict[str, float | None]) -> list:
    """The register-tiled kernels that take at least SHARE of the module's time with their default schedules."""
    total = sum((defaults[t.task_name] or 0.0) * t.weight for t in tasks)
    return [
        t
        for t in tasks
        if defaults[t.task_name] is not None
        and isinstance(default_rule(t.dispatched[0]["main"], t.target), ChannelLastReduction)
        and defaults[t.task_name] * t.weight >= SHARE * total
    ]


def _contexts(tasks, target: tvm.target.Target, folder: str | Path) -> list[ms.TuneContext]:
    """One tuning context per kernel: the space is `ChannelLastReduction`'s register tile, whose sizes
    MetaSchedule samples and mutates; its evolutionary search is made smaller than the default (population
    512), which spent minutes per round on this machine for spaces this small."""

    def template(sch: s_tir.Schedule) -> None:
        ChannelLastReduction().schedule(sch, target, tunable=True)

    loggers = get_loggers_from_work_dir(str(folder), [t.task_name for t in tasks])
    with _without_tensor_intrinsics():
        return [
            ms.TuneContext(
                mod=t.dispatched[0],
                target=target,
                space_generator=ms.space_generator.ScheduleFn(
                    template,
                    sch_rules=[],
                    postprocs=[ms.postproc.DisallowDynamicLoop(), ms.postproc.RewriteReductionBlock()],
                    mutator_probs={ms.mutator.MutateTileSize(): 1.0},
                ),
                search_strategy=ms.search_strategy.EvolutionarySearch(
                    population_size=64, init_min_unmeasured=16, genetic_num_iters=2
                ),
                task_name=t.task_name,
                logger=logger,
                rand_state=seed,
                num_threads=1,
            ).clone()
            for t, logger, seed in zip(tasks, loggers, fork_seed(0, len(tasks)))
        ]


def _seed(database, task, target) -> ms.database.TuningRecord | None:
    """Time the kernel's default schedule and store it as its first record, which is returned."""
    workload_mod = task.dispatched[0]
    schedule = default_schedule(workload_mod["main"], target)
    if schedule is None:
        return None
    args_info = ms.arg_info.ArgInfo.from_prim_func(workload_mod["main"])
    seconds = time_kernel(build_kernel(schedule.mod, target), args_info)
    record = ms.database.TuningRecord(
        schedule.trace, database.commit_workload(workload_mod), [seconds], target, args_info
    )
    database.commit_tuning_record(record)
    return record


def _best(database, task) -> float | None:
    records = database.get_top_k(database.commit_workload(task.dispatched[0]), 1)
    return float(records[0].run_secs[0]) if records else None


def _us(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e6, 2)


@derived_object
class _Progress(ms.measure_callback.PyMeasureCallback):
    """Counts measured candidates per kernel and reports the best time so far after each round; past the
    `deadline` (a `time.perf_counter()` value), ends the search of every kernel."""

    def __init__(self, tasks, log, deadline: float | None = None):
        super().__init__()
        self.names = [t.task_name for t in tasks]
        self.log = log
        self.deadline = deadline
        self.trials: dict[str, int] = {}
        self.best: dict[str, float] = {}
        self.total = 0

    def apply(self, scheduler, task_id, _candidates, _builds, results) -> None:
        if self.deadline is not None and time.perf_counter() > self.deadline:
            self._stop(scheduler)
        if not results:
            return
        name = self.names[task_id]
        seconds = [float(r.run_secs[0]) for r in results if r.error_msg is None]
        self.trials[name] = self.trials.get(name, 0) + len(results)
        self.total += len(results)
        if seconds:
            self.best[name] = min(seconds + ([self.best[name]] if name in self.best else []))
        best = f"{self.best[name] * 1e6:.2f} us" if name in self.best else "none built"
        self.log(f"{self.total} trials; {name}: {self.trials[name]} trials, best {best}")

    def _stop(self, scheduler) -> None:
        for task_id, task in enumerate(scheduler.tasks_):
            if not task.is_terminated:
                scheduler.terminate_task(task_id)
        if self.deadline is not None:
            self.log("time budget spent: search stopped")
            self.deadline = None


@contextlib.contextmanager
def _without_tensor_intrinsics():
    """`TuneContext` imports tvm.s_tir.tensor_intrin, which parses every tensor intrinsic TVM has (CUDA, Arm,
    Hexagon, RISC-V... as TVMScript): 45 s to 3 minutes on this machine, per process. Our search space
    tensorizes nothing, so a placeholder stands in for it while the contexts are made."""
    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        yield
        return
    sys.modules[name] = types.ModuleType(name)
    try:
        yield
    finally:
        del sys.modules[name]
