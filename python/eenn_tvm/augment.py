"""The augmentation stage: from a trained model and labelled data to a plan with exits, heads, thresholds.

Steps: analyze -> features (one backbone run, cached) -> heads for every (point, kind), trained on the train split
(briefly first when there are many; the chosen ones then fully) -> search on the validation split -> the
Shallow-Deep-Networks baseline on the same data -> outputs: plan.json, heads/, eenn.onnx, the host module with the
exit logic compiled in, report.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx

from eenn_tvm import data as datasets
from eenn_tvm import features as feature_cache
from eenn_tvm import heads as exit_heads
from eenn_tvm import stream_stage
from eenn_tvm.analysis import Analysis, analyze
from eenn_tvm.cache import CACHE
from eenn_tvm.catalog import RULES
from eenn_tvm.costs import CostFunction, MacCost
from eenn_tvm.decision import confidence
from eenn_tvm.documents import sha256_of
from eenn_tvm.early_exit import early_exit_module
from eenn_tvm.errors import EennError
from eenn_tvm.frontend import ImportedModel, import_onnx
from eenn_tvm.guarantee import Certified, learn_then_test
from eenn_tvm.network import Network
from eenn_tvm.onnx_export import with_exit_heads
from eenn_tvm.outputs import Output, atomic_folder
from eenn_tvm.parallel import HeadCall, InProcess, head_pool
from eenn_tvm.passes import ChainExits
from eenn_tvm.plan import Artifacts, Baseline, Evaluation, ModelInfo, Plan, PlannedExit, PredictedFigures, SearchRecord
from eenn_tvm.report import write_report
from eenn_tvm.search import Option, Result, SearchProblem, outcome_of, search, single_threshold
from eenn_tvm.targets.host import HostModule, build
from eenn_tvm.targets.host.static import build_static

SDN_FRACTIONS = (0.15, 0.30, 0.45, 0.60, 0.75, 0.90)
HOST_MODULE = "eenn_host.so"
STATIC_HOST_MODULE = "eenn_host_static.so"
VAL_FRACTION = 0.2
# A stream's windows err alike, so a certificate on streams counts streams: it needs many more of them than the
# heads do (they learn as much from half the streams).
STREAM_VAL_FRACTION = 0.5
# Heads this much more accurate than the model they hang on: the data are likely not what it was trained on.
MISMATCH_GAIN = 0.05
MODEL_ONNX = "model.onnx"  # the backbone as imported (shapes fixed, constants folded): later stages rebuild from it


@dataclass
class Settings:
    max_accuracy_drop: float = 0.01
    decision: str = "maxprob"
    val_fraction: float | None = None  # None: VAL_FRACTION, STREAM_VAL_FRACTION with `stream`
    seed: int = 0
    cache_dir: Path | None = CACHE
    calibration_path: Path | None = None  # thresholds set on this file; all of --data trains the heads
    confidence: float = 0.9  # that the expected drop on new data stays within the tolerance (eenn_tvm.guarantee)
    int8: bool = False  # also the int8 network (eenn_tvm.quantize), its thresholds searched on its own confidences
    batch: int = feature_cache.BATCH  # samples per backbone call in the feature pass, where the model allows it
    cluster: str | None = None  # the feature pass and the heads on this Ray cluster ("ray" or "ray://HOST:PORT")
    workers: int | None = None  # local processes training the heads (None: one per core; 1: this process)
    database: Path | None = None  # a tuning database (`eenn-tvm tune`) the host modules are built with
    stream: bool = False  # also decisions that use the stream's past (eenn_tvm.stream), on stream data

    def __post_init__(self):
        if self.val_fraction is None:
            self.val_fraction = STREAM_VAL_FRACTION if self.stream else VAL_FRACTION


@dataclass
class _Trained:
    """Everything the search saw: heads per (point, kind), and the problem built on the validation split.

    With many heads (deep networks), every head is first trained briefly (SCREEN_ITERATIONS) to screen the
    candidates; `settle` then trains the proposed ones fully and searches again until every proposed head is."""

    heads: dict[tuple[int, str], exit_heads.Head]
    problem: SearchProblem
    val_samples: int
    train_options: Callable[..., list[tuple[exit_heads.Head, Option]]]  # (jobs, iterations[, progress title])
    screened: set[int]  # options whose head is not fully trained yet

    def heads_of(self, result: Result) -> list[exit_heads.Head]:
        """The trained head behind each exit the search chose."""
        return [self.heads[e.point, self.problem.options[e.option].kind] for e in result.exits]

    def train_option(self, point: int, kind: str, iterations: int) -> tuple[exit_heads.Head, Option]:
        return self.train_options([(point, kind)], iterations)[0]

    def settle(self, solve: Callable[[SearchProblem], Result], confidence: float) -> Certified:
        """Learn-then-Test until every head of its proposal is fully trained. Which heads those are depends on the
        proposal, made on the first part of the split: were it the certified cascade, the part that tests would
        choose the heads of the next round's test."""
        while True:
            certified = learn_then_test(solve, self.problem, confidence)
            brief = [e.option for e in certified.proposed if e.option in self.screened]
            if not brief:
                return certified
            jobs = [(self.problem.options[index].point, self.problem.options[index].kind) for index in brief]
            for index, job, (head, option) in zip(brief, jobs, self.train_options(jobs, exit_heads.MAX_ITER)):
                self.heads[job], self.problem.options[index] = head, option
                self.screened.discard(index)


SCREEN_ABOVE = 24  # heads; with more, all are screened with brief training first
SCREEN_ITERATIONS = 40


def augment(
    model_path: str | Path,
    data_path: str | Path,
    out: Output,
    settings: Settings,
    input_shapes: dict | None = None,
    cost: Callable[[ImportedModel, Analysis], CostFunction] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> Plan:
    check_settings(settings)
    out.check(log)
    stage = _Stopwatch()
    model = import_onnx(model_path, input_shapes)
    analysis = analyze(model)
    if not analysis.exit_points:
        raise EennError(f"{model_path}: no point in the model can host an exit (see `eenn-tvm analyze`)")
    input_shape, classes = _io_of(model)
    data, train_idx, val_idx = datasets.load_split(
        data_path, input_shape[1:], classes, settings.val_fraction, settings.seed, settings.calibration_path
    )
    if settings.stream:
        stream_stage.require_streams(data, str(data_path))
    costs = cost(model, analysis) if cost else MacCost(analysis)
    log(
        f"{model.name}: {len(analysis.exit_points)} candidate points; {len(train_idx)} samples train the heads, "
        f"{len(val_idx)} set the thresholds"
    )
    stage.done("import")

    features = feature_cache.extract(
        model, analysis.exit_points, data.x, settings.cache_dir, log, settings.batch, settings.cluster
    )
    stage.done("features")
    groups = None if data.groups is None else data.groups[val_idx]
    with head_pool(settings.workers, settings.cluster, settings.cache_dir) as pool:
        streams = data.is_stream  # windows of recordings: their groups run (eenn_tvm.guarantee)
        trained = train_and_score(
            analysis, features, data.y, groups, train_idx, val_idx, classes, settings, costs, pool, streams
        )
        stage.done("heads")

        certified = trained.settle(search, settings.confidence)
        baseline_points = sdn_points(analysis, costs)
        baseline_options = [
            i for i, o in enumerate(trained.problem.options) if o.kind == "gap_linear" and o.point in baseline_points
        ]
        baseline_certified = trained.settle(lambda p: single_threshold(p, baseline_options), settings.confidence)
    result, baseline = certified.result, baseline_certified.result
    # A baseline whose every single threshold fails the test saves nothing: reported as infeasible, like one
    # whose floor no threshold meets, rather than as a baseline that exits nowhere.
    baseline = replace(baseline, feasible=baseline.feasible and bool(baseline.exits))
    stage.done("search")

    plan = _make_plan(
        model,
        analysis,
        trained,
        result,
        baseline,
        costs,
        settings,
        data_path,
        {"eenn": certified, "baseline": baseline_certified},
    )
    _warn_of_mismatch(plan, log)
    if settings.stream:
        heads = trained.heads_of(result)
        plan.stream = stream_stage.certify(plan, analysis, features, heads, data, val_idx, settings.confidence)
        stage.done("stream")
    int8 = None
    if settings.int8:
        from eenn_tvm.quantize import add_int8  # heavy (onnxruntime's quantisation tooling); only with int8

        def int8(folder: Path) -> None:
            add_int8(folder, plan, data, train_idx, val_idx, log=log)

    _write(out, plan, model, analysis, trained, result, baseline, log, stage, int8, settings.database)
    return plan


def _warn_of_mismatch(plan: Plan, log: Callable[[str], None]) -> None:
    gain = plan.validation.accuracy - plan.validation.baseline_accuracy
    if gain > MISMATCH_GAIN:
        log(
            f"note: the early-exit network is {100 * gain:.1f} points more accurate than the original model "
            f"({100 * plan.validation.baseline_accuracy:.2f} %) on the validation data: heads trained on these data "
            "beat the model itself, so they may not be what it was trained on (input scaling, features, label order)"
        )


class _Stopwatch:
    """Wall time per stage, in the order the stages ran (the plan records them; the scaling benchmark reads them)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._since = time.perf_counter()

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._since, 2)
        self._since = now


def sdn_points(analysis: Analysis, costs: CostFunction) -> list[int]:
    """The candidate points nearest to the fixed cost fractions of the baseline (deduplicated)."""
    fractions = np.array([costs.reach(p) / costs.total() for p in analysis.exit_points])
    return sorted({int(np.abs(fractions - f).argmin()) for f in SDN_FRACTIONS})


def check_settings(settings: Settings) -> None:
    """The settings on their own (with the data, `data.require_split_fits` checks the split too)."""
    if not 0 <= settings.max_accuracy_drop < 1:
        raise EennError(f"--max-accuracy-drop {settings.max_accuracy_drop:g}: must be >= 0 and < 1, e.g. 0.01")
    if not 0 < settings.confidence < 1:
        raise EennError(f"--confidence {settings.confidence:g}: must be > 0 and < 1, e.g. 0.9")
    if settings.decision not in RULES:
        raise EennError(f"--decision {settings.decision}: choose one of {', '.join(RULES)}")
    if settings.calibration_path is None and not 0 < settings.val_fraction < 1:
        raise EennError(f"--val-fraction {settings.val_fraction:g}: must be > 0 and < 1, e.g. 0.2")
    if settings.seed < 0:
        raise EennError(f"--seed {settings.seed}: must be 0 or more")
    if settings.stream and settings.calibration_path is not None:
        raise EennError("--stream sets its rule on whole streams held out of --data: drop --calibration-data")
    if settings.batch < 1:
        raise EennError(f"--batch {settings.batch}: must be 1 or more, e.g. {feature_cache.BATCH}")
    if settings.workers is not None and settings.workers < 1:
        raise EennError(f"--workers {settings.workers}: must be 1 or more (1 trains the heads in this process)")
    if settings.cluster is not None:
        from eenn_tvm import cluster  # Ray itself is imported only when the pass runs

        cluster.check(settings.cluster)


def _io_of(model: ImportedModel) -> tuple[tuple[int, ...], int]:
    if len(model.input_shapes) != 1:
        raise EennError(f"the model has {len(model.input_shapes)} inputs: augment supports single-input classifiers")
    out = next(o for o in model.onnx.graph.output if o.name == model.output_names[0])
    dims = [d.dim_value for d in out.type.tensor_type.shape.dim]
    if len(dims) != 2 or dims[1] < 2:
        raise EennError(
            f"the model's output {out.name!r} is {dims}: augment needs a classifier with output (1, classes)"
        )
    return next(iter(model.input_shapes.values())), dims[1]


def train_and_score(
    analysis, features, labels, groups, train_idx, val_idx, classes, settings, costs, pool=None, serial=False
) -> _Trained:
    """A head per (point, kind) trained on `train_idx` by `pool` (eenn_tvm.parallel; None: in this process), and
    the search problem on `val_idx` (bench/guarantee.py re-splits it; `serial`: its groups are streams). Two rounds,
    each spread over the pool: the first trains the heads before the last point on every sample alike; the second
    trains the heads after the first point with each sample weighted by how likely it is to reach them
    (`reach_weights` of the first round's heads), and so does every later training of those heads
    (`_Trained.settle`)."""
    pool = pool or InProcess()
    points = analysis.exit_points
    jobs = [(i, kind) for i, p in enumerate(points) for kind in exit_heads.kinds_for(p.shape)]
    y_train, y_val = labels[train_idx], labels[val_idx]
    weights: dict[int, np.ndarray] = {}  # point -> a weight per training sample, once the first round is done
    shared = {}  # (point, pooling or "weights") -> the array as the pool shares it: each is sent once

    def pooled_of(i: int, kind: str) -> np.ndarray:
        return features.pooled[points[i].name][exit_heads.HEAD_KINDS[kind].pooling]

    def shared_once(key: tuple[int, str], array: np.ndarray):
        if key not in shared:
            shared[key] = pool.share(array)
        return shared[key]

    def call_of(i: int, kind: str, iterations: int) -> HeadCall:
        pooled = shared_once((i, exit_heads.HEAD_KINDS[kind].pooling), pooled_of(i, kind))
        weighted = shared_once((i, "weights"), weights[i]) if i in weights else None
        return pooled, train_idx, y_train, kind, classes, settings.seed, iterations, weighted

    def train_options(
        chosen: list[tuple[int, str]], iterations: int, title: str = "exit heads"
    ) -> list[tuple[exit_heads.Head, Option]]:
        label = title if iterations == exit_heads.MAX_ITER else f"{title} (screening)"
        done = pool.map([call_of(i, kind, iterations) for i, kind in chosen], label)
        return [(head, option_of(i, kind, head)) for (i, kind), head in zip(chosen, done)]

    def option_of(i: int, kind: str, head: exit_heads.Head) -> Option:
        logits = head.logits(pooled_of(i, kind)[val_idx])
        return Option(
            i, kind, confidence(logits, settings.decision), logits.argmax(1) == y_val, costs.head(head, points[i])
        )

    iterations = SCREEN_ITERATIONS if len(jobs) > SCREEN_ABOVE else exit_heads.MAX_ITER
    heads, options = {}, {}

    def train_round(round_jobs: list[tuple[int, str]], title: str) -> None:
        for job, (head, option) in zip(round_jobs, train_options(round_jobs, iterations, title)):
            heads[job], options[job] = head, option

    # The first round's heads at the last point would only be replaced: no later head needs the samples they take.
    train_round([job for job in jobs if job[0] < max(len(points) - 1, 1)], "exit heads")
    weights.update(reach_weights(heads, features, points, train_idx, settings.decision))
    train_round([job for job in jobs if job[0] in weights], "exit heads weighted to the samples reaching them")
    final_correct = features.final[val_idx].argmax(1) == y_val
    problem = SearchProblem(
        options=[options[job] for job in jobs],
        reach_cost=[costs.reach(p) for p in points],
        final_cost=costs.total(),
        final_correct=final_correct,
        min_accuracy=float(final_correct.mean()) - settings.max_accuracy_drop,
        groups=groups,
        serial=serial,
    )
    screened = set(range(len(jobs))) if iterations < exit_heads.MAX_ITER else set()
    return _Trained(heads, problem, len(val_idx), train_options, screened)


REACH_MIX = 0.25  # share of uniform weight in `reach_weights`: a later head still sees every class


def reach_weights(heads, features, points, train_idx, rule: str) -> dict[int, np.ndarray]:
    """For each point after the first, a weight per training sample (mean 1): the chance that no earlier exit takes
    it, reading the confidence of the most confident head at each earlier point as its chance of taking the sample
    (the thresholds are not known yet), mixed with uniform weights. The earlier exits take the easy samples; a
    later head should be good at the rest."""
    reach, weights = np.ones(len(train_idx)), {}
    for i, point in enumerate(points[:-1]):
        at_point = [head for (j, _), head in heads.items() if j == i]
        taken = np.max(
            [confidence(h.logits(features.pooled[point.name][h.pooling][train_idx]), rule) for h in at_point], axis=0
        )
        reach = reach * (1 - taken)
        weights[i + 1] = REACH_MIX + (1 - REACH_MIX) * reach / max(reach.mean(), 1e-12)
    return weights


def _evaluation(
    problem: SearchProblem, result: Result, analysis: Analysis, trained: _Trained, costs: CostFunction
) -> Evaluation:
    """Figures in MACs always; in the searched cost too when that is not MACs."""
    outcome = result.outcome
    in_macs = outcome if costs.name == "macs" else outcome_of(_in_macs(problem, analysis, trained), result.exits)
    predicted = None
    if costs.name != "macs":
        predicted = PredictedFigures(
            cost=costs.name,
            mean=outcome.mean_cost,
            full=problem.final_cost,
            fraction=outcome.mean_cost / problem.final_cost,
        )
    return Evaluation(
        samples=problem.samples,
        baseline_accuracy=float(problem.final_correct.mean()),
        accuracy=outcome.accuracy,
        mean_macs=in_macs.mean_cost,
        mac_fraction=in_macs.mean_cost / analysis.total_macs,
        exit_histogram=outcome.exit_counts,
        predicted=predicted,
    )


def _in_macs(problem: SearchProblem, analysis: Analysis, trained: _Trained) -> SearchProblem:
    macs = MacCost(analysis)
    points = analysis.exit_points
    options = [
        replace(o, head_cost=macs.head(trained.heads[o.point, o.kind], points[o.point])) for o in problem.options
    ]
    return replace(problem, options=options, reach_cost=[macs.reach(p) for p in points], final_cost=macs.total())


def _planned_exits(analysis: Analysis, trained: _Trained, result: Result, prefix: str) -> list[PlannedExit]:
    planned = []
    for index, (e, head) in enumerate(zip(result.exits, trained.heads_of(result))):
        point = analysis.exit_points[e.point]
        planned.append(
            PlannedExit(
                index=index,
                point=point.name,
                binding=point.binding,
                shape=point.shape,
                head=head.kind,
                threshold=e.threshold,
                macs_to_reach=point.macs_before,
                head_macs=head.macs(point.shape),
                head_param_bytes=head.param_bytes(),
                weights=f"heads/{prefix}_{index}.npz",
            )
        )
    return planned


def _make_plan(model, analysis, trained, result, baseline, costs, settings, data_path, tests) -> Plan:
    floor = trained.problem.min_accuracy
    input_name, input_shape = next(iter(model.input_shapes.items()))
    return Plan(
        model=ModelInfo(
            name=model.name,
            input_name=input_name,
            input_shape=list(input_shape),
            output_name=model.output_names[0],
            classes=_io_of(model)[1],
            total_macs=analysis.total_macs,
        ),
        decision=settings.decision,
        exits=_planned_exits(analysis, trained, result, "exit"),
        validation=_evaluation(trained.problem, result, analysis, trained, costs),
        baseline=Baseline(
            exits=_planned_exits(analysis, trained, baseline, "baseline"),
            validation=_evaluation(trained.problem, baseline, analysis, trained, costs) if baseline.feasible else None,
            feasible=baseline.feasible,
        ),
        pareto=[[c / trained.problem.final_cost, a] for c, a in result.pareto],
        search=SearchRecord(
            max_accuracy_drop=settings.max_accuracy_drop,
            confidence=settings.confidence,
            accuracy_margin={name: t.result.outcome.accuracy - floor for name, t in tests.items()},
            p_value={name: t.p_value for name, t in tests.items()},
            val_fraction=None if settings.calibration_path else settings.val_fraction,
            calibration_data=str(settings.calibration_path) if settings.calibration_path else None,
            calibration_sha256=sha256_of(settings.calibration_path) if settings.calibration_path else None,
            seed=settings.seed,
            cost=costs.name,
            data=str(data_path),
            data_sha256=sha256_of(Path(data_path)),
            validation_samples=trained.val_samples,
            candidate_points=len(analysis.exit_points),
            heads_trained=len(trained.heads),
            baseline_pareto=[[c / trained.problem.final_cost, a] for c, a in baseline.pareto],
        ),
        artifacts=Artifacts(
            model_onnx=MODEL_ONNX,
            host_module=HOST_MODULE,
            static_host_module=STATIC_HOST_MODULE,
            eenn_onnx="eenn.onnx",
            baseline_onnx="baseline.onnx" if baseline.feasible else None,
            report="report.md",
        ),
    )


def _write(
    out: Output,
    plan: Plan,
    model: ImportedModel,
    analysis: Analysis,
    trained: _Trained,
    result: Result,
    baseline: Result,
    log,
    stage: _Stopwatch,
    int8: Callable[[Path], None] | None = None,
    database: Path | None = None,
) -> None:
    with atomic_folder(out, log) as tmp:
        (tmp / "heads").mkdir()
        onnx.save(model.onnx, str(tmp / MODEL_ONNX))
        networks = [(plan.exits, "eenn_onnx", result)]
        if plan.baseline.feasible:
            networks.append((plan.baseline.exits, "baseline_onnx", baseline))
        for planned, name, chosen in networks:
            heads = trained.heads_of(chosen)
            for exit_plan, head in zip(planned, heads):
                head.save(tmp / exit_plan.weights)
            onnx_with_heads = with_exit_heads(model.onnx, [(e.point, e.shape, h) for e, h in zip(planned, heads)])
            onnx.save(onnx_with_heads, str(tmp / getattr(plan.artifacts, name)))
        log("building the host module (TVM, llvm)")
        exits = [(e.point, h, e.threshold) for e, h in zip(plan.exits, trained.heads_of(result))]
        mod = early_exit_module(model.mod, exits, plan.decision)
        HostModule(build(ChainExits()(mod), database=database)).export(tmp / HOST_MODULE)
        log("building the static host module (TVM's kernels, one C call per sample)")
        network = Network.of_early_exits(mod, plan, model.onnx)
        if plan.stream is not None:
            network = network.with_stream_tap(plan.stream)  # its eenn_infer_stream decides streams
        try:
            build_static(network, tmp / STATIC_HOST_MODULE, database=database)
        except EennError as error:
            log(f"note: no static host module, `run` uses {HOST_MODULE}: {error}")
            plan.artifacts.static_host_module = None
        stage.done("write")
        if int8:
            # add_int8 opens eenn.onnx through the plan's checks, which hash every file the plan names, the report
            # too (written again below, with the int8 section)
            write_report(tmp, plan)
            plan.record_hashes(tmp)
            int8(tmp)
            stage.done("int8")
        plan.search.seconds = stage.seconds
        write_report(tmp, plan)
        plan.record_hashes(tmp)
        plan.save(tmp)
