"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node 2`` (gloo, CPU), or alone.

``mlp``: a batch-norm-free GAN family through KDGAN-4 (every network trains), fed either the
global batches (one process) or this rank's shard of each. ``ganomaly``: GANomaly KDGAN-2 steps
on digits shards; saves each rank's weights so the test can check the ranks agree.
"""
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from gankd import DistillationEngine, DistillationLoss, DistillTerm, GANHooks, Losses, OptimizerConfig, get_schedule


class MLPGenerator(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.enc, self.dec = nn.Linear(8, width), nn.Linear(width, 8)

    def forward(self, x):
        h = torch.tanh(self.enc(x))
        return h, self.dec(h)


class MLPDiscriminator(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body, self.head = nn.Linear(8, width), nn.Linear(width, 1)

    def forward(self, x):
        feature = torch.tanh(self.body(x))
        return self.head(feature).squeeze(1), feature


class MLPHooks(GANHooks):
    """Autoencoder-GAN on 8-D vectors, no batch norm: per-shard DDP equals one process exactly."""

    def build_generator(self, width):
        return MLPGenerator(width)

    def build_discriminator(self, width):
        return MLPDiscriminator(width)

    def distillation_loss(self):
        return DistillationLoss([DistillTerm("x_hat", "l2")])

    def generator_forward(self, generator, inputs):
        h, x_hat = generator(inputs)
        return {"h": h, "x_hat": x_hat}

    def generator_loss(self, gan, batch, outputs):
        logit, _ = gan.discriminator(outputs["x_hat"])
        rec = F.mse_loss(outputs["x_hat"], batch)
        adv = F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))
        return Losses(rec + 0.1 * adv, {"rec": rec, "adv": adv})

    def discriminator_loss(self, gan, batch, outputs):
        real, _ = gan.discriminator(batch)
        fake, _ = gan.discriminator(outputs["x_hat"].detach())
        loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + \
            F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        return Losses(loss, {})


def build(hooks, width, seed):
    torch.manual_seed(seed)
    return hooks.build_gan(width)


def global_batches():
    g = torch.Generator().manual_seed(123)
    return [torch.randn(8, 8, generator=g) for _ in range(3)]


def main(out_dir: str, mode: str) -> None:
    torch.set_num_threads(1)
    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        dist.init_process_group("gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if mode == "mlp":
        hooks = MLPHooks()
        teacher, student = build(hooks, 16, 0), build(hooks, 4, 1)
        batches = [b.tensor_split(world)[rank] for b in global_batches()]
        schedule = get_schedule("KDGAN-4", 2, OptimizerConfig(lr=1e-2))
    else:
        from gankd.batches import ShuffledBatches
        from gankd_ganomaly.data import load_one_class
        from gankd_ganomaly.hooks import GanomalyHooks

        hooks = GanomalyHooks(in_channels=1)
        torch.manual_seed(rank)  # different init per rank: DDP must broadcast rank 0's weights
        teacher, student = hooks.build_gan((4, 8, 16)), hooks.build_gan((1, 2, 4))
        batches = ShuffledBatches(load_one_class("digits", 3).train[:64], 16, seed=0, rank=rank, world_size=world)
        schedule = get_schedule("P-KDGAN-II-24", 1, OptimizerConfig(lr=2e-3))
    from gankd import JSONHistory

    # a file writer: runs in rank 0 only (main_process_only), so ranks never race on one file
    history_file = os.path.join(out_dir, f"{mode}_world{world}_history_from_rank{rank}.json")
    engine = DistillationEngine(hooks, teacher, student, callbacks=[JSONHistory(history_file)])
    engine.fit(schedule, batches)
    torch.save({"teacher": teacher.state_dict(), "student": student.state_dict(), "world": world},
               os.path.join(out_dir, f"{mode}_world{world}_rank{rank}.pt"))
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
