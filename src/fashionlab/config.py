"""The training configuration: one validated, fully resolved record per run.

Resolution order (later wins): field defaults < the model's study recipe (from the registry)
< a study file's overrides < command-line flags / `--set key=value`; `models.build_config`
does the resolving, since the recipes live with the models. Unknown keys and bad values are
errors that name the key and what is allowed, before anything runs.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from fashionlab._io import YamlTooLarge, check_path_component, load_yaml
from fashionlab.errors import ConfigError, one_line

Optimizer = Literal["adam", "adamw", "sgd", "muon"]
Scheduler = Literal["none", "plateau", "cosine", "onecycle", "step"]
Normalization = Literal["dataset", "half", "unit", "zscore"]
SplitKind = Literal["random", "stratified", "pooled"]
CropMode = Literal["zero", "reflect"]
FlipMode = Literal["random", "alternate"]
DeviceName = str  # "auto", "cpu", "cuda", "cuda:1", "mps"
MAX_SEED = 2**32 - 1
Precision = Literal["fp32", "bf16", "auto"]
MemoryFormat = Literal["channels_last", "contiguous"]


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*")
_UNIT_SECONDS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """'30s', '2m', '1.5h' or '90' (seconds) -> seconds; ValueError for anything else."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration; write e.g. 30s, 2m or 1h")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class TrainConfig(BaseModel):
    """Everything that determines a training run. Saved as `config.yaml` in the run folder."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: str = Field(description="registered model name (`fashionlab models` lists them)")
    model_args: dict[str, Any] = Field(
        default_factory=dict,
        description="arguments of the model's builder, e.g. {hidden: [512, 256]} for `mlp`",
    )
    name: str | None = Field(None, description="run folder name; default: MODEL-seedSEED")

    # Optimisation
    # Upper bounds keep a typo from allocating without limit: no split has more than 70,000
    # items, and no study trains for more than a few hundred epochs.
    epochs: int = Field(
        10, gt=0, le=100_000,
        description="training epochs (an upper bound with early stopping)",
    )
    # A wall-time budget for the whole command; the epochs are then measured, not given
    # (fashionlab.training.budget). "30s", "2m", "1h" or seconds.
    budget: float | None = Field(
        None, gt=0, le=7 * 86_400,
        description="wall-time budget (30s, 2m, 1h): train the most epochs that fit in it",
    )
    batch_size: int = Field(
        128, gt=0, le=70_000,
        description="training batch size (the global batch under data-parallel training)",
    )
    lr: float = Field(1e-3, gt=0, description="learning rate (the peak rate under one-cycle)")
    optimizer: Optimizer = Field(
        "adam",
        description="optimiser; muon: Muon for hidden weight tensors, SGD for the rest",
    )
    momentum: float = Field(
        0.9, ge=0, lt=1,
        description="SGD momentum (Adam's beta1 is its own default)",
    )
    nesterov: bool = Field(False, description="Nesterov momentum for SGD")
    weight_decay: float = Field(0.0, ge=0, description="weight decay (decoupled for adamw)")
    # `optimizer: muon`: the hidden weight matrices and filters (all but the first and the
    # last layer's) take Muon steps at `muon_lr` (fashionlab.training.muon), every other
    # parameter SGD at `lr` with `momentum`, `nesterov` and `weight_decay`. 0.1 is the speed-run
    # presets' value (0.2 scored the same at 5 epochs: docs/speedrun.md, the screen).
    muon_lr: float = Field(
        0.1, gt=0, le=10,
        description="learning rate of the Muon-trained tensors under optimizer muon",
    )
    # The Muon group's momentum, held for the whole run; None: the same as the other groups
    # (`momentum`, or under one-cycle its 0.95 -> 0.85 -> 0.95 cycle). airbench's Muon uses 0.6.
    muon_momentum: float | None = Field(
        None, ge=0, lt=1,
        description="momentum of the Muon group, held for the whole run; null: as the other groups",
    )
    # Rescale each Muon-trained tensor to Frobenius norm sqrt(rows) before its step (airbench):
    # BatchNorm follows every such filter, so its scale is free, and a fixed scale makes
    # `muon_lr` the step relative to the weights for the whole run rather than one that
    # shrinks as the weights grow. Weight decay then has nothing to do on these tensors.
    muon_weight_norm: bool = Field(
        False,
        description="rescale each Muon-trained tensor to norm sqrt(rows) before its step",
    )
    scheduler: Scheduler = Field("none", description="learning-rate schedule")
    plateau_factor: float = Field(
        0.5, gt=0, lt=1,
        description="plateau scheduler: the factor applied to the rate when validation loss stalls",
    )
    plateau_patience: int = Field(
        2, ge=0, le=100_000,
        description="plateau scheduler: epochs without improvement before the rate drops",
    )
    step_size: int = Field(
        5, gt=0, le=100_000,
        description="step scheduler: epochs between rate drops",
    )
    step_gamma: float = Field(0.1, gt=0, le=1, description="step scheduler: factor of each drop")
    label_smoothing: float = Field(
        0.0, ge=0, lt=1,
        description="label smoothing of the cross-entropy loss",
    )
    early_stopping_patience: int | None = Field(
        None, gt=0,
        description="stop after this many epochs without a lower validation loss; null: never",
    )
    use_best_weights: bool = Field(
        True,
        description="test with the weights of the lowest-validation-loss epoch (else the last)",
    )

    # Data
    split: SplitKind = Field(
        "random",
        description="validation split: random, stratified, or pooled (all 70k, 60/20/20)",
    )
    # 0 trains on all 60k images with no validation: only for fixed-length recipes (no early
    # stopping, no plateau schedule, the last weights tested).
    val_fraction: float = Field(
        0.1, ge=0, lt=1,
        description="share of training images held out for validation; 0: none (fixed-length runs)",
    )
    split_seed: int = Field(42, ge=0, le=MAX_SEED, description="seed of the train/validation split")
    normalization: Normalization = Field(
        "dataset",
        description="input scaling: dataset (train mean/std), half ([-1,1]), unit ([0,1]), zscore",
    )
    train_subset: int | None = Field(
        None, gt=0,
        description="train on the first N training items only (quick checks, tests)",
    )
    # Cross-validation on the 60k training set: with `cv_folds` k, fold `cv_fold` (0..k-1, a
    # stratified 1/k drawn with split_seed) is held out as the "test" part and the run trains
    # (and validates) on the rest. Out-of-sample predictions for every training image: the
    # data audit's suspect-label search trains one run per fold.
    cv_folds: int | None = Field(
        None, ge=2, le=100,
        description="cross-validation: number of folds of the 60k training set (with cv_fold)",
    )
    cv_fold: int | None = Field(
        None, ge=0,
        description="cross-validation: the fold held out as the test part (0..cv_folds-1)",
    )
    eval_subset: int | None = Field(
        None, gt=0,
        description="validate and test on the first N items only (quick checks, tests)",
    )

    # Augmentation (batched, on tensors)
    crop_padding: int = Field(
        0, ge=0, le=28,
        description="random-crop augmentation: pixels of padding (0: off)",
    )
    crop_mode: CropMode = Field("zero", description="what the crop's padding holds")
    hflip: bool = Field(False, description="horizontal-flip augmentation")
    # "alternate": derandomised flips (airbench) -- each training image is mirrored in every
    # other epoch, starting from a random half, instead of by a coin toss each epoch, so no
    # image goes several epochs seen one way only.
    hflip_mode: FlipMode = Field(
        "random",
        description="random: a coin toss per image and epoch; alternate: every other epoch",
    )
    erasing: float = Field(0.0, ge=0, le=1, description="probability of random erasing per image")
    # Corruptions of the robustness suite (fashionlab.data.corruptions) as augmentation: each
    # training image, with probability `corruption_prob`, gets one of them at a severity drawn
    # from 1..`corruption_max_severity`. Names are checked when training starts.
    corruption_augment: list[str] = Field(
        default_factory=list, max_length=32,
        description="corruptions of the robustness suite used as augmentation (by name)",
    )
    corruption_prob: float = Field(
        0.5, ge=0, le=1,
        description="probability that a training image gets one of corruption_augment",
    )
    corruption_max_severity: int = Field(
        3, ge=1, le=5,
        description="highest severity drawn for corruption_augment (1-5)",
    )

    # Speed-run tricks (after KellerJordan/cifar10-airbench; each one's measured effect is in
    # docs/speedrun.md's ablation). `whiten_init`: the first convolution starts as a
    # whitening of its input patches, estimated from training images (fashionlab.training.
    # conv_init). `dirac_init`: every later square convolution starts as the identity on
    # its first input-many output channels. `norm_lr_scale`: normalisation layers' weights and
    # biases learn at lr x this (weight decay / this). `low_res`: the first `low_res_epochs`
    # epochs train on batches shrunk to low_res x low_res pixels (progressive resizing: a
    # 20-pixel epoch costs about half a 28-pixel one); evaluation is always at 28.
    whiten_init: bool = Field(
        False,
        description="start the first convolution as a whitening of the input patches",
    )
    dirac_init: bool = Field(
        False,
        description="start later square convolutions as the identity on their first channels",
    )
    norm_lr_scale: float = Field(
        1.0, gt=0, le=1000,
        description="learning-rate multiplier of normalisation layers' weights and biases",
    )
    low_res: int | None = Field(
        None, ge=8, le=27,
        description="progressive resizing: pixels a side for the first low_res_epochs epochs",
    )
    low_res_epochs: int = Field(
        0, ge=0, le=100_000,
        description="progressive resizing: epochs at low_res (with low_res)",
    )

    # Weights and evaluation
    # Exponential moving average of the weights (0 = off); when on, validation, the test and
    # the saved model use the averaged weights (BatchNorm statistics averaged alike).
    ema_decay: float = Field(
        0.0, ge=0, lt=1,
        description="decay of a moving average of the weights, used to evaluate and save (0: off)",
    )
    # Test-time augmentation: average the logits of each image and its mirror image when
    # validating and testing, and in predict/serve (fashionlab.data.tta_views).
    tta_flip: bool = Field(
        False,
        description="test-time augmentation: average each image's logits with its mirror image's",
    )
    # ... and each view moved 1 pixel up-left and down-right at half weight (airbench's TTA;
    # 3x the evaluation work; its effect on accuracy: docs/performance.md).
    tta_shift: bool = Field(
        False,
        description="test-time augmentation: also 1-pixel shifted views at half weight",
    )

    # Execution
    # NumPy's generators take seeds below 2**32; a larger one would fail after the folder exists.
    seed: int = Field(
        42, ge=0, le=MAX_SEED,
        description="seed of the weights, the shuffle and the augmentation (0 to 2**32-1)",
    )
    device: DeviceName = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    threads: int | None = Field(
        None, gt=0, le=1024,
        description="PyTorch threads; null: PyTorch's default",
    )
    # bf16 autocast for the forward pass (weights, optimiser and loss stay fp32): about 2x
    # faster convolutions on CPUs with AVX-512 BF16 or AMX, and on recent GPUs. "auto" (the
    # default) picks bf16 where the device runs it natively, fp32 elsewhere; each study's
    # headline models were checked to score the same either way (docs/precision.md).
    precision: Precision = Field(
        "auto",
        description="forward-pass precision: auto picks bf16 where the device runs it natively",
    )
    # Conv models train and evaluate in NHWC ("channels_last"): oneDNN's fast path on CPUs
    # (docs/performance.md) and Tensor Cores' layout on GPUs.
    memory_format: MemoryFormat = Field("channels_last", description="tensor layout of conv models")

    @field_validator("budget", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _one_folder_name(cls, value: str | None) -> str | None:
        return None if value is None else check_path_component(value)

    @field_validator("model")
    @classmethod
    def _model_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model name is empty")
        return value

    @model_validator(mode="after")
    def _cross_validation(self) -> TrainConfig:
        if (self.cv_folds is None) != (self.cv_fold is None):
            raise ValueError("cv_folds and cv_fold go together: set both (e.g. 5 and 0) or none")
        if self.cv_folds is not None:
            if self.cv_fold >= self.cv_folds:
                raise ValueError(f"cv_fold must be 0..{self.cv_folds - 1}, got {self.cv_fold}")
            if self.split == "pooled":
                raise ValueError("cross-validation folds the 60k training set; use split random")
        return self

    @model_validator(mode="after")
    def _validation_needed(self) -> TrainConfig:
        if self.val_fraction == 0 and self.split != "pooled":
            needs = [
                name
                for name, uses in (
                    ("early_stopping_patience", self.early_stopping_patience is not None),
                    ("use_best_weights", self.use_best_weights),
                    ("scheduler=plateau", self.scheduler == "plateau"),
                )
                if uses
            ]
            if needs:
                raise ValueError(
                    f"val_fraction=0 leaves no validation split, but {', '.join(needs)} "
                    "needs one; set early_stopping_patience=null, use_best_weights=false and "
                    "another scheduler, or a val_fraction above 0"
                )
        return self

    @model_validator(mode="after")
    def _low_res_together(self) -> TrainConfig:
        if (self.low_res is None) != (self.low_res_epochs == 0):
            raise ValueError(
                "low_res and low_res_epochs go together: set both (e.g. 20 and 4) or neither"
            )
        return self

    def run_name(self) -> str:
        return self.name or f"{self.model}-seed{self.seed}"

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


FIELD_NAMES = tuple(TrainConfig.model_fields)


def describe_validation_error(exc: ValidationError, source: str = "config") -> str:
    """One line per problem: `source: key: message (allowed: ...)`."""
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(err["loc"][-1]), FIELD_NAMES, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            parts.append(f"unknown key '{key}'{hint}")
        elif not err["loc"]:  # a rule across fields: its message names them; the input is all
            parts.append(str(err["msg"]).removeprefix("Value error, "))
        else:
            # The input may be anything a file held: quoted short, never whole.
            parts.append(f"{key}: {err['msg']} (got {one_line(repr(err.get('input')), 80)})")
    return f"{source}: " + "; ".join(parts)


def parse_set_value(text: str) -> Any:
    """`--set key=value`: the value is read as YAML, so numbers, booleans, lists and null work."""
    try:
        return load_yaml(text)
    except YamlTooLarge as exc:
        raise ConfigError(f"--set value refused: the YAML is {exc}") from None
    except yaml.YAMLError:
        return text


def parse_set_options(items: list[str] | None) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        if key.startswith("model_args."):
            overrides.setdefault("model_args", {})[key.split(".", 1)[1]] = parse_set_value(value)
        else:
            overrides[key] = parse_set_value(value)
    return overrides
