"""gankd: knowledge distillation between GANs.

The engine knows nothing of any GAN family: a family subclasses :class:`GANHooks`,
picks a :class:`Structure` (the paper's loss-set flags) or a :class:`Schedule` of them,
and :class:`DistillationEngine` trains.
"""
from .batches import ShardedBatches, ShuffledBatches, iterate_batches
from .callbacks import (Callback, CheckpointCallback, CSVLogger, EvaluationCallback, JSONHistory, ProgressLogger,
                        TensorBoardLogger, TqdmProgress, auto_progress)
from .checkpoint import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from .distill import (ADAPTORS, DERIVED_OUTPUTS, DISTILL_LOSSES, INPUT_TRANSFORMS, DistillationLoss, DistillTerm,
                      register_adaptor, register_derived_output, register_distill_loss, register_input_transform)
from .engine import DistillationEngine, NonFiniteLossError, StageState
from .hooks import GAN, GANHooks, Losses
from .registry import Registry
from .schedule import SCHEDULES, OptimizerConfig, Recipe, Schedule, Stage, get_schedule, teacherless
from .structure import STRUCTURES, Structure, get_structure
from .utils import (FolderLock, FolderLockedError, MissingDependencyError, atomic_write, atomic_write_bytes,
                    atomic_write_text, remove_stale_temporaries, seed_everything)
from .width_rule import LR_RULES, register_lr_rule

__version__ = "0.2.0"

__all__ = [
    "ShardedBatches", "ShuffledBatches", "iterate_batches", "CheckpointError", "load_checkpoint", "load_weights", "save_checkpoint",
    "Callback", "CheckpointCallback", "CSVLogger", "EvaluationCallback", "JSONHistory", "ProgressLogger",
    "TensorBoardLogger", "TqdmProgress", "auto_progress",
    "ADAPTORS", "DERIVED_OUTPUTS", "DISTILL_LOSSES", "DistillationLoss", "DistillTerm", "register_adaptor",
    "register_derived_output", "register_distill_loss", "INPUT_TRANSFORMS", "register_input_transform",
    "DistillationEngine", "NonFiniteLossError", "StageState",
    "GAN", "GANHooks", "Losses", "Registry",
    "SCHEDULES", "OptimizerConfig", "Recipe", "Schedule", "Stage", "get_schedule", "teacherless", "LR_RULES", "register_lr_rule",
    "STRUCTURES", "Structure", "get_structure",
    "FolderLock", "FolderLockedError", "MissingDependencyError", "atomic_write", "atomic_write_bytes",
    "atomic_write_text",
    "remove_stale_temporaries", "seed_everything", "__version__",
]
