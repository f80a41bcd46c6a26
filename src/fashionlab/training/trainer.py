"""The PyTorch training loop for one run: epochs, validation, early stopping, checkpoints.

One epoch = shuffle (seeded generator) -> per batch: gather uint8 -> normalise -> augment ->
forward/backward -> step. After each epoch the validation loss decides the best weights, the
scheduler and early stopping, and `checkpoint.pt` is rewritten atomically, so an interrupted run
resumes from the last finished epoch and ends with the same weights as an uninterrupted one.
The loop runs `accel.training_view(model)`; validation, the test pass and the saved weights use
the model as built. Use `fashionlab.training.train()` / `resume()` rather than the class itself.
"""

from __future__ import annotations

import copy
import gc
import math
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm  # a widget in Jupyter, a text bar in a terminal

from fashionlab.accel import training_view
from fashionlab.allocator import retain_freed_memory
from fashionlab.config import TrainConfig
from fashionlab.data import CLASS_NAMES, BatchIterator, augment_batch, prepare_data
from fashionlab.data.corruptions import corrupt_random, get_corruption
from fashionlab.data.transforms import shrink
from fashionlab.errors import ConfigError, FashionlabError, RunError, TrainingDiverged
from fashionlab.evaluation import calibration_metrics, summarize_predictions
from fashionlab.models import create_model
from fashionlab.models.memory_format import apply_memory_format
from fashionlab.runs import RunWriter
from fashionlab.runs.weights import WEIGHTS_FILE, model_info, save_weights
from fashionlab.training.callbacks import Callback, TrainingRun
from fashionlab.training.checkpoint import CHECKPOINT, read_checkpoint, write_checkpoint
from fashionlab.training.conv_init import WHITENING_IMAGES, dirac_init, whiten_first_conv
from fashionlab.training.device import autocast, resolve_device, resolve_precision
from fashionlab.training.distributed import DistContext, is_peer_failure, peer_lost
from fashionlab.training.optim import build_optimizer, build_scheduler, parameter_groups
from fashionlab.training.predict import PredictSettings, predict_logits

if TYPE_CHECKING:  # the budget module builds a Trainer to measure with: a type-only import
    from fashionlab.training.budget import BudgetPlan

EpochCallback = Callable[[dict[str, Any]], None]


class RunInterrupted(FashionlabError):
    """Ctrl-C during training: the last finished epoch is checkpointed."""

    exit_code = 130


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
        callbacks: Sequence[Callback] = (),
        budget_plan: BudgetPlan | None = None,
        started: float | None = None,
    ) -> None:
        # Train at most this many epochs in this invocation, checkpoint and return unfinished:
        # for wall-time-limited (cluster, preemptible) jobs that continue with --resume.
        self.stop_after = stop_after
        # How a --budget chose config.epochs, and when the command started (time.monotonic()),
        # for metrics.json: the plan beside the time it took.
        self.budget_plan, self.started = budget_plan, started
        self.paused = False
        self.dist = dist_ctx or DistContext()
        self.config, self.run_dir = config, run_dir
        self.quiet = quiet or not self.dist.is_main  # one progress stream per job
        self.epoch_callback = epoch_callback
        self.callbacks = list(callbacks) if self.dist.is_main else []  # rank 0 reports
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
        self.has_validation = len(self.split.val.labels) > 0
        for name in config.corruption_augment:
            get_corruption(name)  # an unknown name fails now, not after the first batch
        if len(self.split.train.labels) == 0:
            raise ConfigError("the training split is empty; check train_subset / val_fraction")
        if self.dist.enabled and config.batch_size < self.dist.world_size:
            raise ConfigError(
                f"batch_size {config.batch_size} is smaller than the {self.dist.world_size} "
                "processes; batch_size is the global batch, split across processes"
            )
        self.model = create_model(config.model, **config.model_args).to(self.device)
        self._initialise(self.model)
        self.channels_last = apply_memory_format(self.model, config.memory_format)
        self.precision = resolve_precision(config.precision, self.device)
        self.predict_settings = PredictSettings(self.precision, config.tta_flip, config.tta_shift)
        if self.dist.enabled:
            torch.manual_seed(self._rank_seed())  # after the (identical) init: dropout masks
        # The training loop runs an exact rewrite of the model (same values and gradients,
        # same parameters; see accel.training_view); everything else sees the model as built.
        self.train_model = self._wrap_for_data_parallel(training_view(self.model))
        self.ema = None
        if config.ema_decay > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(
                self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True
            )
        self.batches = BatchIterator(
            self.split.train.images,
            self.split.train.labels,
            config.batch_size,
            shuffle=True,
            generator=self.generator,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            with_indices=True,
        )
        # Alternating flips: which images start mirrored, the same on every rank and on resume.
        self.flip_parity = None
        if config.hflip and config.hflip_mode == "alternate":
            coin = torch.Generator().manual_seed(config.seed)
            self.flip_parity = torch.rand(len(self.split.train.labels), generator=coin) < 0.5
        self.optimizer = build_optimizer(config, parameter_groups(config, self.model))
        self.scheduler = build_scheduler(config, self.optimizer, len(self.batches))
        self.state = _State()
        self.view = TrainingRun(run_dir, config, self.state.history)
        self.writer = RunWriter(run_dir)

    def _initialise(self, model: torch.nn.Module) -> None:
        """The configured data-aware and identity initialisations (before the EMA copies the
        weights; a resumed run then loads its checkpoint over them)."""
        try:
            if self.config.dirac_init:
                dirac_init(model, skip_first=True)
            if self.config.whiten_init:
                images = self.normalizer(self.split.train.images[:WHITENING_IMAGES])
                whiten_first_conv(model, images.to(self.device))
        except ValueError as exc:
            raise ConfigError(f"{exc}; model {self.config.model!r}") from None

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
        write_checkpoint(self.run_dir / CHECKPOINT, payload)

    def load_checkpoint(self) -> None:
        path = self.run_dir / CHECKPOINT
        payload = read_checkpoint(path, self.device)
        try:
            self._restore(payload)
        except FashionlabError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            # A payload of the right kind with the wrong contents (another model's weights, a
            # hand-made file): nothing of it is used.
            raise RunError(
                f"{path}: not a usable checkpoint for this run ({type(exc).__name__}); start "
                "again with --overwrite"
            ) from None

    def _restore(self, payload: dict[str, Any]) -> None:
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
            disable=True if self.quiet else None,  # None: off when not a terminal (or notebook)
            unit="batch",
            dynamic_ncols=True,
        )
        for images, labels, indices in bar:
            flip_mask = None
            if self.flip_parity is not None:
                flip_mask = self.flip_parity[indices] ^ (epoch % 2 == 0)
            if cfg.corruption_augment:
                images = self._corrupted(images)
            x = augment_batch(
                self.normalizer(images),
                self.augment_generator,
                cfg.crop_padding,
                cfg.crop_mode,
                cfg.hflip,
                cfg.erasing,
                flip_mask,
            ).to(self.device)
            if cfg.low_res is not None and epoch <= cfg.low_res_epochs:
                x = shrink(x, cfg.low_res)
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

    def _corrupted(self, images: torch.Tensor) -> torch.Tensor:
        """The batch with `corruption_prob` of its images corrupted (uint8 in, uint8 out).
        The NumPy generator is seeded from the augmentation generator, whose state the
        checkpoint keeps, so a resumed run corrupts the same images the same way."""
        cfg = self.config
        seed = int(torch.randint(0, 2**62, (1,), generator=self.augment_generator))
        rng = np.random.default_rng(seed)
        chosen = np.flatnonzero(rng.random(len(images)) < cfg.corruption_prob)
        if not len(chosen):
            return images
        out = images.numpy().copy()
        out[chosen] = corrupt_random(
            out[chosen], cfg.corruption_augment, cfg.corruption_max_severity, rng
        )
        return torch.from_numpy(out)

    def validation_loss_and_accuracy(self) -> tuple[float, float]:
        """On one process, the whole validation split; with several, each rank scores its
        shard and the sums are all-reduced, so every rank gets the same numbers (and makes the
        same early-stopping and scheduler decisions)."""
        if not self.dist.enabled:
            val_logits = predict_logits(
                self.eval_model, self.split.val.images, self.normalizer, self.device,
                self.predict_settings,
            )  # fmt: skip
            return _loss_and_accuracy(val_logits, self.split.val.labels)
        images = self.dist.shard(self.split.val.images)
        labels = self.dist.shard(self.split.val.labels)
        logits = predict_logits(
            self.eval_model, images, self.normalizer, self.device, self.predict_settings
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
        self.view.history = st.history  # a resumed run's restored history
        for callback in self.callbacks:
            callback.on_train_start(self.view)
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
            for callback in self.callbacks:
                callback.on_epoch_end(self.view, row)
            if self._stop_requested():
                if not self.quiet:
                    print(f"stopping after epoch {epoch}: {self.view.stop_reason}", file=sys.stderr)
                break
            if cfg.early_stopping_patience and st.bad_epochs >= cfg.early_stopping_patience:
                if not self.quiet:
                    print(
                        f"early stopping: no val-loss improvement for {st.bad_epochs} epochs",
                        file=sys.stderr,
                    )
                break

    def _stop_requested(self) -> bool:
        """Whether a callback asked to stop; under torchrun every rank learns rank 0's answer,
        so that all of them leave the loop together."""
        reason = self.view.stop_reason
        if self.dist.enabled:
            reason = self.dist.broadcast_object(reason)
        self.view.stop_reason = reason
        return reason is not None

    def finish(self) -> dict[str, Any]:
        """Evaluate on the test split with the chosen weights and write the remaining files."""
        cfg, st = self.config, self.state
        model = self.eval_model
        if cfg.use_best_weights and st.best_state is not None:
            model.load_state_dict(st.best_state)
        if not self.dist.is_main:  # rank 0 alone evaluates the test split and writes
            return {}
        logits = predict_logits(
            model, self.split.test.images, self.normalizer, self.device, self.predict_settings
        )
        labels = self.split.test.labels.numpy()
        val = None
        if self.has_validation:  # with the tested weights: what temperature scaling fits on
            val_part = self.split.val
            val_logits = predict_logits(
                model, val_part.images, self.normalizer, self.device, self.predict_settings
            )
            val = (val_part.labels.numpy(), val_logits.numpy(), val_part.indices)
        self.writer.write_predictions(
            labels, logits.numpy(), self.split.test.indices, self.split.test_pool, val
        )
        metrics = summarize_predictions(labels, logits.numpy(), CLASS_NAMES)
        metrics.update(calibration_metrics(labels, logits.numpy(), *(val or ())[:2]))
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
                "stopped_by_callback": self.view.stop_reason,
            }
        )
        if self.budget_plan is not None and self.started is not None:
            used = time.monotonic() - self.started  # all but writing the last files
            metrics["budget"] = {**self.budget_plan.as_dict(), "seconds_used": used}
        save_weights(model, self.run_dir / WEIGHTS_FILE)
        self.writer.write_model_info(model_info(cfg, model, self.normalizer))
        self.writer.write_metrics(metrics)
        self.writer.mark_complete()
        for callback in self.callbacks:
            callback.on_train_end(self.view, metrics)
        return metrics

    def _tell_incomplete(self, outcome: str) -> None:
        for callback in self.callbacks:
            callback.on_train_incomplete(self.view, outcome)

    def execute(self) -> Path:
        try:
            self.run()
        except KeyboardInterrupt:
            self._tell_incomplete("interrupted")
            raise RunInterrupted(
                f"interrupted; epochs 1..{self.state.epoch} are checkpointed. "
                f"Continue with: fashionlab train --resume {self.run_dir}"
            ) from None
        except Exception as exc:
            self._tell_incomplete("failed")
            if self.dist.enabled and is_peer_failure(exc):
                raise peer_lost(exc, self.run_dir, self.state.epoch) from None
            raise
        if self.paused:
            self._tell_incomplete("paused")
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
        try:
            metrics = self.finish()
        except Exception:
            self._tell_incomplete("failed")
            raise
        self.dist.barrier()  # the other ranks leave only once rank 0 has written everything
        if not self.quiet:
            print(
                f"test accuracy {metrics['test_accuracy']:.4f}  macro-F1 "
                f"{metrics['macro_f1']:.4f}  ->  {self.run_dir}",
                file=sys.stderr,
            )
        return self.run_dir


def execute_and_release(trainer: Trainer) -> Path:
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
