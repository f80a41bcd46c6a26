"""A study file and its plan: the schema (with the `tune:` section), parsing with file:line
errors, and `plan_study`, which resolves every run's config before anything runs.

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
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from fashionlab._io import YamlTooLarge, check_path_component, load_yaml
from fashionlab._read import read_text
from fashionlab.config import TrainConfig
from fashionlab.data.corruptions import get_corruption
from fashionlab.errors import ConfigError, one_line
from fashionlab.models import build_config
from fashionlab.studies.twins import find_twins
from fashionlab.training import check_runnable

DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice")


class TuneSpec(BaseModel):
    """The `tune:` section of a study file."""

    model_config = ConfigDict(extra="forbid")

    run: str | None = None
    metric: Literal["val_loss", "val_accuracy"] = "val_loss"
    num_samples: int = Field(8, ge=1)
    max_concurrent: int | None = Field(None, ge=1)
    scheduler: Literal["asha", "none"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: int = Field(2, ge=2)
    seed: int = 0
    space: dict[str, dict[str, list[Any]]]

    @field_validator("space")
    @classmethod
    def _known_fields_and_distributions(cls, space: dict[str, dict[str, list[Any]]]):
        if not space:
            raise ValueError("give at least one field to search")
        fields = set(TrainConfig.model_fields) - {"model", "name", "seed"}
        for name, dist in space.items():
            if name not in fields:
                raise ValueError(f"{name!r} is not a config field; searchable: {sorted(fields)}")
            if len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
                raise ValueError(
                    f"{name}: give exactly one of {', '.join(DISTRIBUTIONS)}, e.g. "
                    "{loguniform: [1.0e-4, 1.0e-2]}"
                )
            kind, values = next(iter(dist.items()))
            if kind != "choice" and (len(values) != 2 or not values[0] < values[1]):
                raise ValueError(f"{name}: {kind} needs [low, high] with low < high")
            if kind == "loguniform" and values[0] <= 0:
                raise ValueError(f"{name}: loguniform needs low > 0")
            if kind == "choice" and not values:
                raise ValueError(f"{name}: choice needs at least one value")
        return space

    @property
    def mode(self) -> str:
        return "min" if self.metric == "val_loss" else "max"


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
    # What the claim says: "better" (a beats b) or "same" (a and b score alike); the
    # scoreboard's verdict tests that (fashionlab.studies.scoreboard).
    kind: Literal["better", "same"] = "better"


DEFAULT_MAX_RUNS = 1_000
# What a study file may raise max_runs to (a study file is untrusted input): planning is linear,
# and this many runs plan in about a second on 2 cores (benchmarks/bench_planning.py).
MAX_RUNS_CEILING = 10_000


class RobustnessSpec(BaseModel):
    """`robustness:` in a study file: score every run on the corruption suite after training
    (as `fashionlab robustness STUDY` does), so the report holds the results."""

    model_config = ConfigDict(extra="forbid")

    corruptions: list[str] | None = None  # None: the whole suite
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5], min_length=1)
    items: int | None = Field(1000, gt=0)  # None: the whole test split
    seed: int = Field(0, ge=0)
    reference: str | None = None  # a label; default: the first

    @field_validator("severities")
    @classmethod
    def _severities(cls, value: list[int]) -> list[int]:
        if any(not 1 <= v <= 5 for v in value):
            raise ValueError("severities must be between 1 and 5")
        return sorted(set(value))


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
    robustness: RobustnessSpec | None = None  # score the runs on corrupted images
    # A plan larger than this is refused before it is expanded (a typo in a grid multiplies).
    max_runs: int = Field(DEFAULT_MAX_RUNS, ge=1, le=MAX_RUNS_CEILING)
    _lines: dict[tuple, int] = PrivateAttr(default_factory=dict)  # YAML path -> line number

    def where(self, source: str, *path: Any) -> str:
        """`file:line` of a YAML path, for error messages."""
        line = _line_for(self._lines, tuple(path))
        return f"{source}:{line}" if line else source

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_path_component(value)

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
    # The label of an earlier run this one twins (studies.twins); run_dir is then that run's.
    same_as: str | None = None


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
        text = read_text(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: study file not found") from None
    except (OSError, ValueError) as exc:  # a folder, not UTF-8, not a regular file, too large
        raise ConfigError(f"{path}: cannot read study file ({one_line(exc)})") from None
    try:
        raw = load_yaml(text)
    except YamlTooLarge as exc:
        raise ConfigError(f"{path}: refused: the YAML is {exc}") from None
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
        raise ConfigError(one_line("; ".join(problems), 2000)) from None


def _slug(text: str) -> str:
    """A run label as the start of a folder name (its safety is checked with the config)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).lstrip(".-").rstrip("-")[:100] or "run"


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
    planned_count = sum(
        math.prod(len(v) for v in spec.grid.values()) * len(spec.seeds or study.seeds)
        for spec in study.runs
    )
    if planned_count > study.max_runs:
        raise ConfigError(
            f"{source}: the study plans {planned_count:,} runs, more than max_runs "
            f"{study.max_runs:,}; shrink its grid or seeds, or raise max_runs in the file"
        )
    planned: list[PlannedRun] = []
    errors: list[str] = []
    labels_seen: set[str] = set()
    slugs: dict[str, str] = {}  # folder-name start -> the label it came from
    for i, spec in enumerate(study.runs):
        for names, grid_overrides in _grid_points(spec.grid):
            base = spec.label or spec.model
            label = base + "".join(f"[{k}={v}]" for k, v in names.items())
            if label in labels_seen:
                errors.append(f"{source}: runs[{i}]: duplicate run label {label!r}; give 'label'")
                continue
            labels_seen.add(label)
            other = slugs.setdefault(_slug(label), label)
            if other != label:
                errors.append(
                    f"{source}: runs[{i}]: labels {other!r} and {label!r} would share the run "
                    f"folders {_slug(label)}-seed*; rename one of them"
                )
                continue
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
    check = study.robustness
    if check is not None and check.reference is not None and check.reference not in known:
        errors.append(
            f"{source}: robustness: reference {check.reference!r} is not a run label "
            f"(labels: {', '.join(sorted(known))})"
        )
    if check is not None:
        for name in check.corruptions or ():
            try:
                get_corruption(name)
            except ConfigError as exc:
                errors.append(f"{source}: robustness: {exc}")
    errors.extend(_unrunnable(planned, source))
    if errors:
        raise ConfigError(one_line("; ".join(dict.fromkeys(errors)), 2000))
    # Seed-major order: every model's first seed finishes before any second seed starts, so a
    # study cut short still compares all models; within a seed, file order (feature runs come
    # after the CNN runs they read).
    seed_rank = {seed: k for k, seed in enumerate(dict.fromkeys(p.seed for p in planned))}
    planned = sorted(planned, key=lambda p: seed_rank[p.seed])
    for i, j in find_twins([p.config for p in planned]).items():
        planned[i].same_as, planned[i].run_dir = planned[j].label, planned[j].run_dir
    return planned


def _unrunnable(planned: list[PlannedRun], source: str) -> list[str]:
    """What training would refuse in each distinct model/device/augmentation of the plan,
    found now, before the study folder or any run folder exists."""
    errors = []
    seen: set[str] = set()
    for run in planned:
        cfg = run.config
        key = repr((cfg.model, sorted(cfg.model_args.items()), cfg.device, cfg.corruption_augment))
        if key in seen:
            continue
        seen.add(key)
        try:
            check_runnable(cfg)
        except ConfigError as exc:
            errors.append(f"{source}: {run.label}: {exc}")
    return errors


# ---------------------------------------------------------------- a slice of the plan


def _label_pattern(pattern: str) -> re.Pattern[str]:
    # Only * and ? are wildcards: labels of grid points hold brackets ("cnn[pooling=max]"),
    # which fnmatch would read as character classes.
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts))


def select_runs(
    planned: list[PlannedRun], patterns: list[str], source: str = "study"
) -> list[PlannedRun]:
    """The planned runs whose label matches one of `patterns` (`*` and `?` wildcards), plus
    the runs they need: the CNN run a feature run reads and the original of a twin, under the
    same seed. Plan order is kept. A pattern that matches no label is an error."""
    labels = list(dict.fromkeys(run.label for run in planned))
    chosen: set[str] = set()
    for pattern in patterns:
        regex = _label_pattern(pattern)
        matched = [label for label in labels if regex.fullmatch(label)]
        if not matched:
            raise ConfigError(
                f"{source}: --only {pattern!r} matches no run label (labels: {', '.join(labels)})"
            )
        chosen.update(matched)
    keep = {(run.label, run.seed) for run in planned if run.label in chosen}
    grown = True
    while grown:  # a needed run may need another (a feature run reading a twin)
        size = len(keep)
        for run in planned:
            if (run.label, run.seed) in keep:
                keep.update((needed, run.seed) for needed in (run.features_from, run.same_as)
                            if needed is not None)  # fmt: skip
        grown = len(keep) > size
    return [run for run in planned if (run.label, run.seed) in keep]
