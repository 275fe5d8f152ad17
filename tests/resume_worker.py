"""Subprocess used by test_checkpoint.py: a small P-KDGAN-II-23 run on digits that can be
killed (SIGKILL, no clean-up) at a given global epoch and step, and resumed from its checkpoint."""
import json
import os
import signal
import sys

import torch

from gankd import (Callback, CheckpointCallback, DistillationEngine, EvaluationCallback, OptimizerConfig,
                   get_schedule, load_checkpoint)
from gankd.batches import ShuffledBatches
from gankd_ganomaly.data import load_one_class
from gankd_ganomaly.evaluation import evaluate_auroc
from gankd_ganomaly.hooks import GanomalyHooks


class KillAt(Callback):
    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step
        self.global_epoch = 0

    def on_stage_start(self, engine, state):
        self.global_epoch = engine.history[-1]["global_epoch"] if engine.history else 0

    def on_step_end(self, engine, state, step):
        if self.global_epoch + 1 == self.epoch and step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_epoch_end(self, engine, state, record):
        self.global_epoch = record["global_epoch"]


def main(workdir: str, mode: str, kill_epoch: int = 0, kill_step: int = 0) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = load_one_class("digits", 3)
    hooks = GanomalyHooks(in_channels=1)
    teacher, student = hooks.build_gan((4, 8, 16)), hooks.build_gan((1, 2, 4))
    batches = ShuffledBatches(data.train, 32, seed=0)
    ckpt_path = os.path.join(workdir, "ckpt.pt")
    callbacks = [EvaluationCallback(lambda e: {"auroc": evaluate_auroc(hooks, student, data.test, data.test_labels)}),
                 CheckpointCallback(ckpt_path)]
    if mode == "kill":
        callbacks.append(KillAt(kill_epoch, kill_step))
    engine = DistillationEngine(hooks, teacher, student, callbacks=callbacks, metadata={"test": True})
    resume = load_checkpoint(ckpt_path) if mode == "resume" else None
    history = engine.fit(get_schedule("P-KDGAN-II-23", 2, OptimizerConfig(lr=2e-3)), batches, resume=resume)
    torch.save({"teacher": teacher.state_dict(), "student": student.state_dict()}, os.path.join(workdir, "final.pt"))
    with open(os.path.join(workdir, "history.json"), "w") as f:
        json.dump([{k: v for k, v in h.items() if k != "seconds"} for h in history], f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:]))
