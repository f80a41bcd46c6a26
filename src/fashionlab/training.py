"""The training loop: optimisers, schedulers, early stopping, checkpoints, resume.

One epoch = shuffle (seeded generator) -> per batch: gather uint8 -> normalise -> augment ->
forward/backward -> step. After each epoch the validation loss decides the best weights, the
scheduler and early stopping, and `checkpoint.pt` is rewritten atomically, so an interrupted run
resumes from the last finished epoch and ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import math
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fashionlab.allocator import retain_freed_memory
from fashionlab.atomic import atomic_write_with
from fashionlab.config import TrainConfig
from fashionlab.data import (
    CLASS_NAMES,
    BatchIterator,
    Normalizer,
    Split,
    augment_batch,
    load_fashion_mnist,
    make_normalizer,
    make_split,
    tta_average,
    tta_views,
)
from fashionlab.distributed import DistContext, init_distributed, shutdown_distributed
from fashionlab.errors import ConfigError, FashionlabError, RunError, TrainingDiverged
from fashionlab.model_io import model_info, save_weights
from fashionlab.native import unused_kernels_notice
from fashionlab.runs import RunWriter, load_config, prepare_run_dir

EVAL_BATCH = 1000
EpochCallback = Callable[[dict[str, Any]], None]


class RunInterrupted(FashionlabError):
    """Ctrl-C during training: the last finished epoch is checkpointed."""

    exit_code = 130


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but CUDA is not available; use --device cpu")
    return device


def prepare_data(
    config: TrainConfig, data_dir: str | Path | None = None
) -> tuple[Split, Normalizer]:
    """Load, split (and subset) the data as the config says; fit the normaliser on train only."""
    split = make_split(
        load_fashion_mnist(data_dir), config.split, config.val_fraction, config.split_seed
    )
    if config.train_subset:
        n = config.train_subset
        split.train_images, split.train_labels = split.train_images[:n], split.train_labels[:n]
        split.train_indices = split.train_indices[:n]
    if config.eval_subset:
        n = config.eval_subset
        split.val_images, split.val_labels = split.val_images[:n], split.val_labels[:n]
        split.val_indices = split.val_indices[:n]
        split.test_images, split.test_labels = split.test_images[:n], split.test_labels[:n]
        split.test_indices = split.test_indices[:n]
    return split, make_normalizer(config.normalization, split.train_images)


def build_optimizer(config: TrainConfig, params, fused: bool = True) -> torch.optim.Optimizer:
    """The configured optimiser. `fused`: Adam and AdamW use PyTorch's single-kernel update
    (`fused=True`) where it has one for the parameters' device, else its default.

    Why fused: the default CPU implementation makes one pass over memory per arithmetic step
    (lerp, mul, addcmul, sqrt, div, addcdiv). On the 2-core CPU that was about 17% of an s0-m1
    bf16 step (its 9216x128 layer is 1.2M parameters); fused, the whole step ran 8-18%
    faster (ad hoc A/Bs on the trainer). It computes the same update; its results match the
    default's except for rare last-bit differences, which a long run amplifies into a
    different (equally good) trajectory. SGD keeps PyTorch's default: fused, it was only 2-4%
    faster on `fast` (its one user), not worth changing the speed-run results' trajectories."""
    if config.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        params = list(params)
        kwargs = {"lr": config.lr, "weight_decay": config.weight_decay}
        if fused:
            # PyTorch refuses `fused` for devices or dtypes it has no kernel for.
            with contextlib.suppress(RuntimeError, ValueError):
                return cls(params, fused=True, **kwargs)
        return cls(params, **kwargs)
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
    )


def build_scheduler(config: TrainConfig, optimizer, steps_per_epoch: int):
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config.plateau_factor, patience=config.plateau_patience
        )
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch
        )
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.step_gamma)
    return None


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes in bf16 natively (so bf16 autocast is faster, not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return any(
            bool(getattr(cpu, probe, lambda: False)())
            for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        )
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' becomes 'bf16' on devices with native bf16 and 'fp32' elsewhere."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for (or 'auto' on a bf16 device); a no-op context for fp32."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def has_conv(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def apply_memory_format(model: torch.nn.Module, memory_format: str) -> bool:
    """Put a conv model's weights in channels-last layout when asked; True if it did."""
    if memory_format != "channels_last" or not has_conv(model):
        return False
    model.to(memory_format=torch.channels_last)
    return True


def _uses_channels_last(model: torch.nn.Module) -> bool:
    # Any conv whose weights are NHWC and not NCHW (a 1-channel first conv is both).
    return any(
        isinstance(m, torch.nn.Conv2d)
        and m.weight.is_contiguous(memory_format=torch.channels_last)
        and not m.weight.is_contiguous()
        for m in model.modules()
    )


@torch.inference_mode()
def predict_logits(
    model: torch.nn.Module,
    images: torch.Tensor,
    normalizer: Normalizer,
    device: torch.device,
    batch_size: int = EVAL_BATCH,
    precision: str = "fp32",
    tta_flip: bool = False,
    tta_shift: bool = False,
) -> torch.Tensor:
    """Logits (float32, CPU) for uint8 images, in eval mode, in fixed-size batches (the input
    follows the model's memory format). Test-time augmentation: `tta_flip` adds the mirrored
    images; `tta_shift` adds each view moved one pixel up-left and one down-right, at half
    weight (airbench's scheme); the logits are the weighted mean over the views."""
    model.eval()
    layout = torch.channels_last if _uses_channels_last(model) else torch.contiguous_format
    chunks = []
    for i in range(0, len(images), batch_size):
        x = normalizer(images[i : i + batch_size]).to(device)
        if x.dim() == 4:
            x = x.contiguous(memory_format=layout)
        views = tta_views(x, tta_flip, tta_shift)
        with autocast(device, precision):
            logits = tta_average(views, lambda v: model(v.contiguous(memory_format=layout)).float())
        chunks.append(logits.cpu())
    return torch.cat(chunks) if chunks else torch.empty(0, len(CLASS_NAMES))


def _loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    loss = F.cross_entropy(logits, labels).item() if len(labels) else float("nan")
    acc = (logits.argmax(1) == labels).float().mean().item() if len(labels) else float("nan")
    return loss, acc


@dataclass
class _State:
    """Everything that changes during training and must survive an interruption."""

    epoch: int = 0
    history: list = None  # type: ignore[assignment]
    best_val_loss: float = math.inf
    best_epoch: int = 0
    best_state: dict | None = None
    bad_epochs: int = 0
    train_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.history = self.history or []


class Trainer:
    """Trains one config into one run folder. Use `train()` / `resume()` rather than this."""

    def __init__(
        self,
        config: TrainConfig,
        run_dir: Path,
        quiet: bool = False,
        data_dir: str | Path | None = None,
        epoch_callback: EpochCallback | None = None,
        dist_ctx: DistContext | None = None,
        stop_after: int | None = None,
    ) -> None:
        from fashionlab.models import create_model
        from fashionlab.models.fusion import training_view

        # Train at most this many epochs in this invocation, checkpoint and return unfinished:
        # for wall-time-limited (cluster, preemptible) jobs that continue with --resume.
        self.stop_after = stop_after
        self.paused = False
        self.dist = dist_ctx or DistContext()
        self.config, self.run_dir = config, run_dir
        self.quiet = quiet or not self.dist.is_main  # one progress stream per job
        self.epoch_callback = epoch_callback
        if config.threads:
            torch.set_num_threads(config.threads)
        retain_freed_memory()  # up to ~1.4x faster steps on glibc; see fashionlab.allocator
        self.device = resolve_device(config.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's) and
        # an identical shuffle, from which each rank takes its shard.
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        # One process draws augmentation from the shuffle generator (as it always has). Ranks
        # draw from their own streams: shared draws would give every shard the same crops, and
        # unequal last shards would let the shuffle generators drift apart.
        self.augment_generator = self.generator
        if self.dist.enabled:
            self.augment_generator = torch.Generator().manual_seed(self._rank_seed())
        self.split, self.normalizer = prepare_data(config, data_dir)
        self.has_validation = len(self.split.val_labels) > 0
        if len(self.split.train_labels) == 0:
            raise ConfigError("the training split is empty; check train_subset / val_fraction")
        if self.dist.enabled and config.batch_size < self.dist.world_size:
            raise ConfigError(
                f"batch_size {config.batch_size} is smaller than the {self.dist.world_size} "
                "processes; batch_size is the global batch, split across processes"
            )
        self.model = create_model(config.model, **config.model_args).to(self.device)
        self.channels_last = apply_memory_format(self.model, config.memory_format)
        self.precision = resolve_precision(config.precision, self.device)
        if self.dist.enabled:
            torch.manual_seed(self._rank_seed())  # after the (identical) init: dropout masks
        # The training loop runs an exact rewrite of the model (same values and gradients,
        # same parameters; see models.fusion); everything else sees the model as built.
        self.train_model = self._wrap_for_data_parallel(training_view(self.model))
        self.ema = None
        if config.ema_decay > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(
                self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True
            )
        self.batches = BatchIterator(
            self.split.train_images,
            self.split.train_labels,
            config.batch_size,
            shuffle=True,
            generator=self.generator,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        self.optimizer = build_optimizer(config, self.model.parameters())
        self.scheduler = build_scheduler(config, self.optimizer, len(self.batches))
        self.state = _State()
        self.writer = RunWriter(run_dir)

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that are validated, tested and saved: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def _rank_seed(self) -> int:
        return self.config.seed * 1000 + 1 + self.dist.rank

    def _wrap_for_data_parallel(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP around the model when torchrun started several processes; the model itself
        otherwise. DDP averages gradients over ranks in backward, so with equal shards a step
        equals a single-process step on the whole global batch."""
        if not self.dist.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        if self.device.type == "cuda":
            # Batch statistics over the global batch, as one process would compute them.
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            return DistributedDataParallel(model, device_ids=[self.device.index])
        # On CPU (gloo) BatchNorm keeps per-process batch statistics: SyncBatchNorm is CUDA-only.
        return DistributedDataParallel(model)

    # ---------------------------------------------------------------- checkpoints

    def save_checkpoint(self) -> None:
        # Every rank's random streams go into rank 0's checkpoint, so a resumed data-parallel
        # run continues each rank's augmentation and dropout exactly.
        rank_states = self.dist.all_gather_object(
            {"augment": self.augment_generator.get_state(), "torch_rng": torch.get_rng_state()}
        )
        if not self.dist.is_main:
            return
        payload = {
            "config": self.config.model_dump(mode="json"),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "state": vars(self.state),
            "world_size": self.dist.world_size,
            "ema": self.ema.state_dict() if self.ema is not None else None,
        }
        if self.dist.enabled:
            payload["rank_states"] = rank_states
        atomic_write_with(self.run_dir / "checkpoint.pt", lambda tmp: torch.save(payload, tmp))

    def load_checkpoint(self) -> None:
        path = self.run_dir / "checkpoint.pt"
        try:
            # weights_only: a checkpoint is tensors and plain containers; never unpickle code.
            payload = torch.load(path, map_location=self.device, weights_only=True)
        except FileNotFoundError:
            raise RunError(f"{path}: missing; nothing to resume (start the run again)") from None
        except Exception as exc:  # torch raises many types for a damaged file
            raise RunError(
                f"{path}: corrupt checkpoint ({type(exc).__name__}); start again with --overwrite"
            ) from None
        # Compare as configs, so a checkpoint written before a new field existed still matches.
        if TrainConfig(**payload["config"]) != self.config:
            raise RunError(
                f"{self.run_dir}: config.yaml differs from the checkpoint's config; "
                "resume with the original config or start again with --overwrite"
            )
        saved_world = payload.get("world_size", 1)
        if saved_world != self.dist.world_size:
            raise RunError(
                f"{self.run_dir}: the checkpoint was written by {saved_world} process(es); "
                f"resume with --nproc {saved_world} (now {self.dist.world_size})"
            )
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scheduler and payload["scheduler"]:
            self.scheduler.load_state_dict(payload["scheduler"])
        self.generator.set_state(payload["generator"])
        torch.set_rng_state(payload["torch_rng"])
        if self.ema is not None and payload.get("ema") is not None:
            self.ema.load_state_dict(payload["ema"])
        if self.dist.enabled:
            mine = payload["rank_states"][self.dist.rank]
            self.augment_generator.set_state(mine["augment"])
            torch.set_rng_state(mine["torch_rng"])
        self.state = _State(**payload["state"])

    # ---------------------------------------------------------------- the loop

    def train_one_epoch(self, epoch: int) -> tuple[float, float]:
        cfg, model = self.config, self.train_model
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(
            self.batches,
            desc=f"epoch {epoch}/{cfg.epochs}",
            leave=False,
            disable=True if self.quiet else None,  # None: off when not a terminal
            unit="batch",
            dynamic_ncols=True,
        )
        for images, labels in bar:
            x = augment_batch(
                self.normalizer(images),
                self.augment_generator,
                cfg.crop_padding,
                cfg.crop_mode,
                cfg.hflip,
                cfg.erasing,
            ).to(self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = labels.to(self.device)
            with autocast(self.device, self.precision):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss.item()} in epoch {epoch}; stopped. The last good "
                    f"checkpoint (epoch {epoch - 1}) is kept in {self.run_dir}; try a lower --lr"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            if cfg.scheduler == "onecycle":
                self.scheduler.step()
            n = len(y)
            total_loss += loss.item() * n
            correct += (logits.argmax(1) == y).sum().item()
            seen += n
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}")
        total_loss, correct, seen = self.dist.all_reduce_sum([total_loss, correct, seen])
        return total_loss / seen, correct / seen

    def validation_loss_and_accuracy(self) -> tuple[float, float]:
        """On one process, the whole validation split; with several, each rank scores its
        shard and the sums are all-reduced, so every rank gets the same numbers (and makes the
        same early-stopping and scheduler decisions)."""
        cfg = self.config
        if not self.dist.enabled:
            val_logits = predict_logits(
                self.eval_model, self.split.val_images, self.normalizer, self.device,
                precision=cfg.precision, tta_flip=cfg.tta_flip, tta_shift=cfg.tta_shift,
            )  # fmt: skip
            return _loss_and_accuracy(val_logits, self.split.val_labels)
        images = self.dist.shard(self.split.val_images)
        labels = self.dist.shard(self.split.val_labels)
        logits = predict_logits(
            self.eval_model,
            images,
            self.normalizer,
            self.device,
            precision=cfg.precision,
            tta_flip=cfg.tta_flip,
            tta_shift=cfg.tta_shift,
        )
        loss_sum = F.cross_entropy(logits, labels, reduction="sum").item() if len(labels) else 0
        correct = (logits.argmax(1) == labels).sum().item()
        loss_sum, correct, n = self.dist.all_reduce_sum([loss_sum, correct, len(labels)])
        if n == 0:
            return float("nan"), float("nan")
        return loss_sum / n, correct / n

    def run(self) -> None:
        cfg, st = self.config, self.state
        session_epochs = 0
        while st.epoch < cfg.epochs:
            if self.stop_after is not None and session_epochs >= self.stop_after:
                self.paused = True
                break
            session_epochs += 1
            epoch = st.epoch + 1
            started = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            train_loss, train_acc = self.train_one_epoch(epoch)
            val_loss, val_acc = math.nan, math.nan  # no validation split (val_fraction=0)
            if self.has_validation:
                val_loss, val_acc = self.validation_loss_and_accuracy()
            if self.has_validation and not math.isfinite(val_loss):
                raise TrainingDiverged(
                    f"validation loss became {val_loss} in epoch {epoch}; "
                    f"the last good checkpoint is kept in {self.run_dir}"
                )
            if self.scheduler is not None and cfg.scheduler == "plateau":
                self.scheduler.step(val_loss)
            elif self.scheduler is not None and cfg.scheduler != "onecycle":
                self.scheduler.step()
            seconds = time.perf_counter() - started
            row = {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_accuracy": train_acc,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "lr": lr,
                "seconds": seconds,
            }
            st.history.append(row)
            st.train_seconds += seconds
            if not self.has_validation:
                st.best_epoch = epoch  # nothing to choose by; the config tests the last weights
            elif val_loss < st.best_val_loss:
                st.best_val_loss, st.best_epoch, st.bad_epochs = val_loss, epoch, 0
                st.best_state = copy.deepcopy(self.eval_model.state_dict())
            else:
                st.bad_epochs += 1
            st.epoch = epoch
            self.save_checkpoint()
            if self.dist.is_main:
                self.writer.write_history(st.history)
            if not self.quiet:
                val = f"val loss {val_loss:.4f} acc {val_acc:.4f} | " if self.has_validation else ""
                print(
                    f"epoch {epoch:>3}/{cfg.epochs}  train loss {train_loss:.4f} "
                    f"acc {train_acc:.4f} | {val}lr {lr:.2e} | {seconds:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
            if self.epoch_callback:
                self.epoch_callback(row)
            if cfg.early_stopping_patience and st.bad_epochs >= cfg.early_stopping_patience:
                if not self.quiet:
                    print(
                        f"early stopping: no val-loss improvement for {st.bad_epochs} epochs",
                        file=sys.stderr,
                    )
                break

    def finish(self) -> dict[str, Any]:
        """Evaluate on the test split with the chosen weights and write the remaining files."""
        from fashionlab.evaluation import summarize

        cfg, st = self.config, self.state
        model = self.eval_model
        if cfg.use_best_weights and st.best_state is not None:
            model.load_state_dict(st.best_state)
        if not self.dist.is_main:  # rank 0 alone evaluates the test split and writes
            return {}
        logits = predict_logits(
            model,
            self.split.test_images,
            self.normalizer,
            self.device,
            precision=cfg.precision,
            tta_flip=cfg.tta_flip,
            tta_shift=cfg.tta_shift,
        )
        labels = self.split.test_labels
        self.writer.write_predictions(
            labels.numpy(), logits.numpy(), self.split.test_indices, self.split.test_pool
        )
        metrics = summarize(labels.numpy(), logits.numpy(), CLASS_NAMES)
        metrics.update(
            {
                "model": cfg.model,
                "params": sum(p.numel() for p in model.parameters()),
                "best_epoch": st.best_epoch,
                "epochs_run": st.epoch,
                "best_val_loss": st.best_val_loss if self.has_validation else None,
                "evaluated_weights": "best" if cfg.use_best_weights else "last",
                "train_seconds": st.train_seconds,
                "seconds_per_epoch": st.train_seconds / max(st.epoch, 1),
                "seed": cfg.seed,
                "precision_used": self.precision,
                "channels_last": self.channels_last,
            }
        )
        save_weights(model, self.run_dir / "model.safetensors")
        self.writer.write_model_info(model_info(cfg, model, self.normalizer))
        self.writer.write_metrics(metrics)
        self.writer.mark_complete()
        return metrics

    def execute(self) -> Path:
        try:
            self.run()
        except KeyboardInterrupt:
            raise RunInterrupted(
                f"interrupted; epochs 1..{self.state.epoch} are checkpointed. "
                f"Continue with: fashionlab train --resume {self.run_dir}"
            ) from None
        if self.paused:
            # Every rank leaves together: a rank tearing down the process group while another
            # is still in its last checkpoint gather can leave that rank waiting forever.
            self.dist.barrier()
            if not self.quiet:
                print(
                    f"stopped after epoch {self.state.epoch} of {self.config.epochs} as asked "
                    f"(--stop-after); continue with: fashionlab train --resume {self.run_dir}",
                    file=sys.stderr,
                )
            return self.run_dir
        metrics = self.finish()
        self.dist.barrier()  # the other ranks leave only once rank 0 has written everything
        if not self.quiet:
            print(
                f"test accuracy {metrics['test_accuracy']:.4f}  macro-F1 "
                f"{metrics['macro_f1']:.4f}  ->  {self.run_dir}",
                file=sys.stderr,
            )
        return self.run_dir


def _execute_and_release(trainer: Trainer) -> Path:
    """Run `trainer` and drop its DistributedDataParallel wrapper before the caller destroys
    the process group.

    DDP's C++ Reducer holds a reference to the gloo process group. Were the Reducer the last
    holder, freeing the trainer would run the group's destructor with the GIL held, and that
    destructor joins gloo's worker thread, which may itself be waiting for the GIL to free its
    last work item: a deadlock, seen here as a finished 2-process run whose second rank never
    exited (py-spy: `~Reducer -> ~ProcessGroupGloo -> thread::join` on the main thread,
    `~AsyncBarrierWork -> gil_scoped_acquire` on gloo's). Freed first, the Reducer only
    decrements; `destroy_process_group` then frees the group through its Python binding,
    which releases the GIL."""
    try:
        return trainer.execute()
    except BaseException as exc:
        if trainer.dist.enabled:
            # The failed frames' locals (`model` in train_one_epoch) would keep DDP alive
            # until the error is reported, after the group is gone; the traceback's file and
            # line information stays.
            traceback.clear_frames(exc.__traceback__)
        raise
    finally:
        if trainer.dist.enabled:
            trainer.train_model = trainer.model
            gc.collect()  # DDP's hooks form reference cycles; free the Reducer now, not later


def _start(
    config: TrainConfig,
    run_dir: Path,
    quiet: bool,
    data_dir,
    epoch_callback,
    dist_ctx: DistContext,
    stop_after: int | None,
) -> Trainer:
    trainer = Trainer(
        config,
        run_dir,
        quiet=quiet,
        data_dir=data_dir,
        epoch_callback=epoch_callback,
        dist_ctx=dist_ctx,
        stop_after=stop_after,
    )
    if dist_ctx.is_main:
        RunWriter(run_dir).write_config(config)
        RunWriter(run_dir).write_env(
            config.seed, str(trainer.device), torch.get_num_threads(), dist_ctx.world_size
        )
        notice = unused_kernels_notice() if trainer.device.type == "cpu" else None
        if notice and not quiet:
            print(notice, file=sys.stderr)  # the same numbers either way, but slower
    return trainer


def train(
    config: TrainConfig,
    runs_dir: str | Path = "runs",
    overwrite: bool = False,
    quiet: bool = False,
    data_dir: str | Path | None = None,
    epoch_callback: EpochCallback | None = None,
    stop_after: int | None = None,
) -> Path:
    """Train `config` into `runs_dir/<name>/` and return that folder.

    Under torchrun (WORLD_SIZE > 1) this is one rank of a data-parallel job. `stop_after`
    ends this invocation after that many epochs, checkpointed, for `resume` to continue."""
    from fashionlab.models import get_model_spec

    run_dir = Path(runs_dir) / config.run_name()
    spec = get_model_spec(config.model)
    dist_ctx = init_distributed(config.device)
    if spec.framework == "numpy":
        if dist_ctx.enabled:
            raise ConfigError("numpy-mlp trains in one process; run it without torchrun/--nproc")
        prepare_run_dir(run_dir, overwrite)
        from fashionlab.numpy_train import train_numpy_run

        return train_numpy_run(config, run_dir, quiet=quiet, data_dir=data_dir)
    try:
        # Rank 0 alone creates (or clears) the folder; the others wait, then share its outcome.
        error = None
        if dist_ctx.is_main:
            try:
                prepare_run_dir(run_dir, overwrite)
            except FashionlabError as exc:
                error = exc
        error = dist_ctx.broadcast_object(str(error) if error else None)
        if error:
            raise RunError(error)
        trainer = _start(config, run_dir, quiet, data_dir, epoch_callback, dist_ctx, stop_after)
        return _execute_and_release(trainer)
    finally:
        shutdown_distributed()


def resume(
    run_dir: str | Path,
    quiet: bool = False,
    data_dir: str | Path | None = None,
    epoch_callback: EpochCallback | None = None,
    expected_config: TrainConfig | None = None,
    stop_after: int | None = None,
) -> Path:
    """Continue an interrupted run from its last finished epoch (a finished run is left as is).
    A data-parallel run resumes under torchrun with the same number of processes."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    if expected_config is not None and expected_config != config:
        changed = sorted(
            k for k, v in expected_config.model_dump().items() if config.model_dump().get(k) != v
        )
        raise RunError(
            f"{run_dir}: cannot resume with a changed config ({', '.join(changed)}); "
            "drop those options or start again with --overwrite"
        )
    if (run_dir / "complete").exists():
        if not quiet:
            print(f"{run_dir} is already complete", file=sys.stderr)
        return run_dir
    from fashionlab.models import get_model_spec

    if get_model_spec(config.model).framework == "numpy":
        # The NumPy MLP keeps no per-epoch checkpoint; it is fast and deterministic, so an
        # interrupted run is trained again from the start with the same config.
        from fashionlab.numpy_train import train_numpy_run

        prepare_run_dir(run_dir, overwrite=True)
        return train_numpy_run(config, run_dir, quiet=quiet, data_dir=data_dir)
    dist_ctx = init_distributed(config.device)
    try:
        trainer = Trainer(
            config,
            run_dir,
            quiet=quiet,
            data_dir=data_dir,
            epoch_callback=epoch_callback,
            dist_ctx=dist_ctx,
            stop_after=stop_after,
        )
        if (run_dir / "checkpoint.pt").exists():
            trainer.load_checkpoint()
        return _execute_and_release(trainer)
    finally:
        shutdown_distributed()


def run_is_complete(run_dir: str | Path) -> bool:
    return (Path(run_dir) / "complete").exists()


def evaluate_run(run_dir: str | Path, data_dir: str | Path | None = None) -> dict[str, Any]:
    """Reload the saved weights, recompute the test metrics, and compare with the stored ones."""
    from fashionlab.model_io import load_model
    from fashionlab.models import get_model_spec

    config = load_config(run_dir)
    if get_model_spec(config.model).framework == "numpy":
        from fashionlab.numpy_train import recompute_logits

        labels, logits = recompute_logits(run_dir, config, data_dir)
        return _compare_with_stored(run_dir, labels, logits)
    loaded = load_model(run_dir)
    split, _ = prepare_data(loaded.config, data_dir)
    logits = predict_logits(
        loaded.model,
        split.test_images,
        loaded.normalizer,
        torch.device("cpu"),
        precision=loaded.config.precision,
        tta_flip=loaded.config.tta_flip,
        tta_shift=loaded.config.tta_shift,
    )
    return _compare_with_stored(run_dir, split.test_labels.numpy(), logits.numpy())


def _compare_with_stored(run_dir, labels: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    from fashionlab.evaluation import summarize
    from fashionlab.runs import load_metrics

    metrics = summarize(labels, logits, CLASS_NAMES)
    stored = load_metrics(run_dir)
    mismatches = {
        k: (stored.get(k), metrics[k])
        for k in ("test_accuracy", "test_loss", "macro_f1", "weighted_f1")
        if k in stored and not np.isclose(stored[k], metrics[k], rtol=0, atol=1e-6)
    }
    metrics["matches_stored"] = not mismatches
    metrics["mismatches"] = mismatches
    return metrics


with contextlib.suppress(Exception):
    # Deterministic kernels where PyTorch has them, so that one seed gives one history on CPU.
    torch.use_deterministic_algorithms(True, warn_only=True)
    # ...but without its debugging aid of filling every new tensor with NaN: each step's
    # fresh activations and gradients were written twice (s2-cnn bf16 steps ~10% slower).
    # Every kernel writes its whole output, so no result depends on that fill.
    torch.utils.deterministic.fill_uninitialized_memory = False
