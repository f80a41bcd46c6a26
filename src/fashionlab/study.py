"""Studies: a YAML file of runs (model + overrides, optional grid axes) x seeds.

`run_study(path)` validates everything first (unknown keys, bad values, unknown models are
reported with the file, the line and what is allowed), trains every run that is not already
complete (so an interrupted study resumes where it stopped), then aggregates: mean ± std over
seeds, the study's reported numbers beside ours, McNemar tests for the claimed comparisons,
and identical architectures. The report module renders the result.

File format (see studies/*.yaml):

    name: s0                      # output folder: runs/<name>
    title: S0 - baseline vs deeper CNN
    seeds: [42, 43]
    overrides: {}                 # applied to every run (e.g. epochs: 1 for a dry run)
    runs:
      - label: M1                 # optional, default: the model name
        model: s0-m1
        overrides: {epochs: 12}
        grid: {model_args.pooling: [max, avg]}     # optional cartesian product
        reported: {test_accuracy: 0.9272}         # or a list of {where: {...}, ...} for grids
    compare:
      - {a: M1, b: M2, claim: "M1 is better than M2"}
"""

from __future__ import annotations

import itertools
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from fashionlab.atomic import atomic_write_json, atomic_write_text
from fashionlab.config import TrainConfig, build_config
from fashionlab.errors import ConfigError, FashionlabError, RunError
from fashionlab.runs import load_config, load_metrics, load_predictions
from fashionlab.tuning import TuneSpec

METRIC_KEYS = ("test_accuracy", "macro_f1", "weighted_f1", "test_loss")


class RunSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    label: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any] | dict[str, Any]] = Field(default_factory=dict)
    reported: dict[str, float] | list[dict[str, Any]] = Field(default_factory=dict)
    features_from: str | None = None  # label of a CNN run whose features this run learns from
    seeds: list[int] | None = None  # overrides the study's seeds for this run


class CompareSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    a: str
    b: str
    claim: str = ""


class StudySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    title: str = ""
    description: str = ""
    source: str = ""
    seeds: list[int] = Field(default_factory=lambda: [42])
    overrides: dict[str, Any] = Field(default_factory=dict)
    runs: list[RunSpec]
    compare: list[CompareSpec] = Field(default_factory=list)
    tune: TuneSpec | None = None  # search space for `fashionlab tune`
    _lines: dict[tuple, int] = PrivateAttr(default_factory=dict)  # YAML path -> line number

    def where(self, source: str, *path: Any) -> str:
        """`file:line` of a YAML path, for error messages."""
        line = _line_for(self._lines, tuple(path))
        return f"{source}:{line}" if line else source

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError("use letters, digits, '.', '_' and '-' only")
        return value

    @field_validator("seeds")
    @classmethod
    def _some_seeds(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("give at least one seed")
        return value


@dataclass
class PlannedRun:
    """One (run entry, grid point, seed): the resolved config and where it lives."""

    label: str
    seed: int
    config: TrainConfig
    run_dir: Path
    spec_index: int
    grid_point: dict[str, str] = field(default_factory=dict)
    reported: dict[str, float] = field(default_factory=dict)
    features_from: str | None = None


# ---------------------------------------------------------------- parsing and validation


def _yaml_lines(text: str) -> dict[tuple, int]:
    """Map YAML paths (('runs', 0, 'model'), ...) to 1-based line numbers, for error messages."""
    lines: dict[tuple, int] = {}

    def walk(node, path):
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(value, (*path, key.value))
                lines[(*path, key.value)] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def _line_for(lines: dict[tuple, int], loc: tuple) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None


def load_study(path: str | Path) -> StudySpec:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: study file not found") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read study file ({exc})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(
            f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a study file is a mapping with 'name', 'seeds' and 'runs'")
    try:
        study = StudySpec(**raw)
        study._lines = _yaml_lines(text)
        return study
    except ValidationError as exc:
        lines = _yaml_lines(text)
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _line_for(lines, loc)
            key = ".".join(str(p) for p in loc)
            what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            allowed = ""
            if err["type"] == "extra_forbidden":
                model = (
                    StudySpec if len(loc) == 1 else (RunSpec if loc[0] == "runs" else CompareSpec)
                )
                allowed = f" (allowed: {', '.join(model.model_fields)})"
            problems.append(f"{path}:{line or '?'}: {key}: {what}{allowed}")
        raise ConfigError("; ".join(problems)) from None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def _grid_points(grid: dict[str, Any]) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """[(names of the values, overrides)] for the cartesian product of the grid axes."""
    if not grid:
        return [({}, {})]
    axes = []
    for key, values in grid.items():
        if isinstance(values, dict):
            axes.append([(key, str(name), value) for name, value in values.items()])
        else:
            axes.append([(key, _value_name(value), value) for value in values])
    points = []
    for combo in itertools.product(*axes):
        names = {key.split(".")[-1]: name for key, name, _ in combo}
        overrides: dict[str, Any] = {}
        for key, _, value in combo:
            if key.startswith("model_args."):
                overrides.setdefault("model_args", {})[key.split(".", 1)[1]] = value
            else:
                overrides[key] = value
        points.append((names, overrides))
    return points


def _value_name(value: Any) -> str:
    if isinstance(value, list):
        return "-".join(map(str, value))
    return str(value)


def _merge(*dicts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in dicts:
        for key, value in d.items():
            if key == "model_args":
                out["model_args"] = {**out.get("model_args", {}), **value}
            else:
                out[key] = value
    return out


def _reported_for(spec: RunSpec, point: dict[str, str]) -> dict[str, float]:
    if isinstance(spec.reported, dict):
        return dict(spec.reported)
    for entry in spec.reported:
        where = entry.get("where", {})
        if all(str(point.get(k)) == str(v) for k, v in where.items()):
            return {k: v for k, v in entry.items() if k != "where"}
    return {}


def plan_study(
    study: StudySpec,
    out_dir: Path,
    extra_overrides: dict[str, Any] | None = None,
    source: str = "study",
) -> list[PlannedRun]:
    """Resolve every run's config (all errors before anything runs)."""
    planned: list[PlannedRun] = []
    errors: list[str] = []
    labels_seen: set[str] = set()
    for i, spec in enumerate(study.runs):
        for names, grid_overrides in _grid_points(spec.grid):
            base = spec.label or spec.model
            label = base + "".join(f"[{k}={v}]" for k, v in names.items())
            if label in labels_seen:
                errors.append(f"{source}: runs[{i}]: duplicate run label {label!r}; give 'label'")
                continue
            labels_seen.add(label)
            for seed in spec.seeds or study.seeds:
                name = f"{_slug(label)}-seed{seed}"
                overrides = _merge(
                    study.overrides,
                    spec.overrides,
                    grid_overrides,
                    extra_overrides or {},
                    {"seed": seed, "name": name},
                )
                where = study.where(source, "runs", i)
                try:
                    config = build_config(spec.model, overrides, source=f"{where}: runs[{i}]")
                except ConfigError as exc:
                    message = str(exc)
                    if not message.startswith(where):
                        message = f"{study.where(source, 'runs', i, 'model')}: runs[{i}]: {message}"
                    errors.append(message)
                    break
                planned.append(
                    PlannedRun(
                        label,
                        seed,
                        config,
                        out_dir / name,
                        i,
                        names,
                        _reported_for(spec, names),
                        spec.features_from,
                    )
                )
    known = {p.label for p in planned}
    for spec in study.runs:
        if spec.features_from and spec.features_from not in known:
            errors.append(f"{source}: features_from {spec.features_from!r} names no run label")
    for cmp in study.compare:
        for side in (cmp.a, cmp.b):
            if side not in known:
                errors.append(
                    f"{source}: compare: {side!r} is not a run label "
                    f"(labels: {', '.join(sorted(known))})"
                )
    if errors:
        raise ConfigError("; ".join(dict.fromkeys(errors)))
    # Seed-major order: every model's first seed finishes before any second seed starts, so a
    # study cut short still compares all models; within a seed, file order (feature runs come
    # after the CNN runs they read).
    seed_rank = {seed: k for k, seed in enumerate(dict.fromkeys(p.seed for p in planned))}
    return sorted(planned, key=lambda p: seed_rank[p.seed])


# ---------------------------------------------------------------- running


def _features_run_dir(planned: list[PlannedRun], run: PlannedRun) -> Path:
    for other in planned:
        if other.label == run.features_from and other.seed == run.seed:
            return other.run_dir
    raise ConfigError(f"features_from {run.features_from!r} has no run with seed {run.seed}")


def resolve_features_source(run: PlannedRun, planned: list[PlannedRun]) -> None:
    """Point a features_from run's config at its CNN run's folder (idempotent)."""
    if run.features_from:
        source_run = _features_run_dir(planned, run)
        args = {**run.config.model_args, "features_run": str(source_run)}
        run.config = run.config.model_copy(update={"model_args": args})


def execute_run(
    run: PlannedRun, planned: list[PlannedRun], quiet: bool, data_dir: str | Path | None
) -> str:
    """Train one planned run unless it is complete; resume it if it was interrupted.
    Returns 'done' (was complete), 'resumed' or 'trained'."""
    from fashionlab.training import resume, train

    resolve_features_source(run, planned)
    config = run.config
    if (run.run_dir / "complete").exists():
        if load_config(run.run_dir) != config:
            raise RunError(
                f"{run.run_dir} was made with a different config; pass --overwrite "
                "to re-run it or choose another --out folder"
            )
        return "done"
    if (run.run_dir / "checkpoint.pt").exists() and load_config(run.run_dir) == config:
        resume(run.run_dir, quiet=quiet, data_dir=data_dir)
        return "resumed"
    train(config, run.run_dir.parent, overwrite=True, quiet=quiet, data_dir=data_dir)
    return "trained"


def run_study(
    path: str | Path,
    out_dir: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    quiet: bool = False,
    data_dir: str | Path | None = None,
    overwrite: bool = False,
    make_report: bool = True,
    seeds: list[int] | None = None,
    backend: str = "local",
    workers: int = 1,
    address: str | None = None,
) -> Path:
    """Run (or resume) a study and write its aggregate and report; returns the study folder.

    `seeds` replaces the seeds given in the file, for every run. `backend` 'local' runs the
    runs one after another (workers=1) or in a process pool of `workers`; 'ray' runs them as
    Ray Tune trials on a local Ray instance or the cluster at `address`. Every backend writes
    the same run folders, so the aggregate and report do not depend on it."""
    from fashionlab.backends import check_backend, run_planned

    check_backend(backend, workers, address)
    study = load_study(path)
    if seeds:
        study.seeds = list(seeds)
        for spec in study.runs:
            spec.seeds = None
    out = Path(out_dir) if out_dir else Path("runs") / study.name
    planned = plan_study(study, out, overrides, source=str(path))
    if overwrite and out.exists():
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "study.yaml", Path(path).read_text())
    started = time.perf_counter()
    run_planned(planned, backend, workers, address, quiet, data_dir)
    summary = aggregate(study, planned)
    summary["wall_seconds_this_invocation"] = time.perf_counter() - started
    summary["backend"] = {"name": backend, "workers": workers, "address": address}
    atomic_write_json(out / "study.json", summary)
    if make_report:
        from fashionlab.report import write_report

        html = write_report(out, data_dir=data_dir)
        if not quiet:
            print(f"report: {html}", file=sys.stderr)
    return out


# ---------------------------------------------------------------- aggregation


def mean_std(values: list[float]) -> tuple[float, float]:
    from fashionlab.evaluation import mean_std as _mean_std

    return _mean_std(values)


def aggregate(study: StudySpec, planned: list[PlannedRun]) -> dict[str, Any]:
    """The comparison table, reproduction table, McNemar tests and identical architectures."""
    from fashionlab.evaluation import mcnemar

    by_label: dict[str, list[PlannedRun]] = {}
    for run in planned:
        by_label.setdefault(run.label, []).append(run)
    rows = []
    for label, runs in by_label.items():
        metrics = [load_metrics(r.run_dir) for r in runs]
        row: dict[str, Any] = {
            "label": label,
            "model": runs[0].config.model,
            "grid": runs[0].grid_point,
            "seeds": [r.seed for r in runs],
            "runs": [r.run_dir.name for r in runs],
        }
        for key in (*METRIC_KEYS, "params", "train_seconds", "seconds_per_epoch", "best_epoch"):
            values = [m[key] for m in metrics if m.get(key) is not None]
            if values:
                mean, std = mean_std(values)
                row[key] = {"mean": mean, "std": std, "n": len(values), "values": values}
        reported = runs[0].reported
        row["reported"] = reported
        row["difference"] = {
            key: row[key]["mean"] - value
            for key, value in reported.items()
            if key in row and isinstance(value, (int, float))
        }
        rows.append(row)
    comparisons = []
    for cmp in study.compare:
        per_seed = []
        for ra in by_label[cmp.a]:
            rb = next((r for r in by_label[cmp.b] if r.seed == ra.seed), None)
            if rb is None:
                continue
            pa, pb = load_predictions(ra.run_dir), load_predictions(rb.run_dir)
            if not np.array_equal(pa["labels"], pb["labels"]):
                raise RunError(
                    f"{ra.run_dir.name} and {rb.run_dir.name} were tested on "
                    "different items; McNemar needs the same test set"
                )
            result = mcnemar(pa["labels"], pa["logits"], pb["logits"])
            per_seed.append({"seed": ra.seed, **_as_dict(result)})
        comparisons.append({"a": cmp.a, "b": cmp.b, "claim": cmp.claim, "per_seed": per_seed})
    return {
        "name": study.name,
        "title": study.title,
        "description": study.description,
        "source": study.source,
        "seeds": study.seeds,
        "rows": rows,
        "comparisons": comparisons,
        "identical_architectures": identical_architectures(planned),
    }


def _as_dict(result: Any) -> dict[str, Any]:
    if hasattr(result, "_asdict"):
        return dict(result._asdict())
    if hasattr(result, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(result)
    return dict(result)


def identical_architectures(planned: list[PlannedRun]) -> list[dict[str, str]]:
    """Pairs of differently named models in the study that build the very same network."""
    from fashionlab.models import create_model, get_model_spec
    from fashionlab.models.summary import architecture_signature

    signatures: dict[str, tuple[str, str]] = {}
    found = []
    for run in planned:
        if run.label in signatures or get_model_spec(run.config.model).framework != "torch":
            continue
        try:
            sig = architecture_signature(create_model(run.config.model, **run.config.model_args))
        except FashionlabError:
            continue
        for other, (other_sig, other_model) in signatures.items():
            if sig == other_sig and other_model != run.config.model:
                found.append(
                    {
                        "a": other,
                        "b": run.label,
                        "note": f"{run.label} ({run.config.model}) is the same network as "
                        f"{other} ({other_model}): identical layers and shapes",
                    }
                )
        signatures[run.label] = (sig, run.config.model)
    return found
