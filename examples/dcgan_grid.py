"""DCGAN distillation measured like a paper: datasets x seeds x methods, one JSON record per run.

Per (dataset, seed) one teacher is trained, and every student method starts from the same initial student
weights and is scored on the same evaluation latents (FD, KID, precision/recall in the penultimate
features of a classifier trained on the dataset's real training subset, ``gankd.generation_metrics``):

- ``teacher``; ``student-alone`` (2M epochs at the default lr); ``student-alone-tuned`` (2M epochs at the
  lr of a small grid that gave the lowest FD on the development seed);
- ``paper`` (P-KDGAN-II-23, M + M epochs) and ``recommended`` (the recipe of ``dcgan_family.RECIPES``
  with the lowest mean FD rank over the datasets on the development seed).

Phases (each run is skipped when its record exists, so a killed driver resumes where it stopped):
1. one classifier per dataset; 2. the development seed: teacher, the lr grid, every candidate recipe;
3. the choice (``dcgan/choice.json``); 4. the evaluation seeds. Example::

    python examples/dcgan_grid.py --data-root ../shared/datasets --out results/generators
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dcgan_family import LATENT_DIM, RECIPES, STUDENT_WIDTHS, DCGANHooks, generate  # noqa: E402
from dcgan_quality import Classifier, classify, count_generator, feature_scale, load_images, train_classifier  # noqa: E402
from gankd import DistillationEngine, OptimizerConfig, atomic_write_text, get_schedule, seed_everything  # noqa: E402
from gankd.batches import ShuffledBatches  # noqa: E402
from gankd.generation_metrics import generation_metrics  # noqa: E402

# (recipe, learning rate) pairs tried on the development seeds; the lr of a recipe is part of the choice
CANDIDATES = (("paper", 2e-4), ("joint", 2e-4), ("k-only", 2e-4), ("paper", 5e-4), ("joint", 5e-4), ("joint", 1e-3),
              ("k-only", 1e-3))
EVAL_LATENT_SEED = 12345  # one latent set for every model, dataset and seed
SAMPLE_COLUMNS = 16


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


class Grid:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = args.out / "dcgan"
        self.weights = args.out / "teachers"  # gitignored (results/*/teachers/): weights never committed
        self.data: dict[str, tuple] = {}
        self.scales: dict[str, float] = {}
        self.judges: dict[str, tuple[Classifier, torch.Tensor, float]] = {}  # classifier, scaled real features, accuracy
        self.z = torch.randn(args.samples, LATENT_DIM, 1, 1, generator=torch.Generator().manual_seed(EVAL_LATENT_SEED))

    # --- data and the judge ----------------------------------------------------------------------------------
    def dataset(self, name: str) -> tuple:
        if name not in self.data:
            self.data[name] = load_images(name, self.args.train_size, 0, self.args.data_root)
        return self.data[name]

    def steps_per_epoch(self, name: str) -> int:
        return len(self.dataset(name)[0]) // self.args.batch_size

    def epochs(self, name: str, steps: int) -> int:
        return max(1, round(steps / self.steps_per_epoch(name)))

    def judge(self, name: str) -> tuple[Classifier, torch.Tensor, float]:
        if name not in self.judges:
            tr_x, tr_y, te_x, te_y = self.dataset(name)
            path = self.weights / f"classifier-{name}.pt"
            clf = Classifier(tr_x.shape[1])
            if path.is_file():
                clf.load_state_dict(torch.load(path, weights_only=True))
                clf.eval()
            else:
                clf = train_classifier(tr_x, tr_y, self.args.classifier_epochs, seed=0)
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(clf.state_dict(), path.with_suffix(".tmp"))
                os.replace(path.with_suffix(".tmp"), path)
            feats = classify(clf, te_x[:self.args.samples])[1]
            self.scales[name] = feature_scale(feats)
            acc = float((classify(clf, te_x)[0].argmax(1) == te_y).double().mean())
            self.judges[name] = (clf, feats / self.scales[name], acc)
            record = self.out / f"{name}-real.json"
            if not record.is_file():  # the floor: real training images against the real test images
                real = tr_x[torch.randperm(len(tr_x), generator=torch.Generator().manual_seed(1))[:self.args.samples]]
                write_json(record, {"family": "dcgan", "dataset": name, "seed": None, "method": "real-train",
                                    "recipe": None, **self.metrics(name, real), "classifier_test_accuracy": acc,
                                    "n_real": len(feats), "n_generated": len(real)})
        return self.judges[name]

    def metrics(self, name: str, images: torch.Tensor) -> dict:
        clf, real_feats, _ = self.judge(name)
        return {**generation_metrics(classify(clf, images)[1] / self.scales[name], real_feats,
                                     kid_subsets=self.args.kid_subsets), "feature_scale": self.scales[name]}

    # --- one run ------------------------------------------------------------------------------------------
    def run(self, name: str, seed: int, method: str, tag: str = "") -> dict:
        path = self.out / ("dev" if tag else "") / f"{name}-s{seed}-{method}{tag}.json"
        if path.is_file():
            return json.loads(path.read_text())
        a = self.args
        M = self.epochs(name, a.student_steps // 2)
        hooks = DCGANHooks(channels=1, teacher_widths=self.args.teacher_widths, seed=seed)
        torch.manual_seed(seed + 1)
        student = hooks.build_gan(STUDENT_WIDTHS)  # every student method of a seed starts from these weights
        lr, recipe, teacher = a.lr, None, None
        if method == "student-alone":
            schedule = get_schedule("student-alone", 2 * M, OptimizerConfig(lr=lr))
        elif method.startswith("student-alone-lr"):
            lr = float(method[len("student-alone-lr"):])
            schedule = get_schedule("student-alone", 2 * M, OptimizerConfig(lr=lr))
        elif method == "student-alone-tuned":
            lr = self.choice()["tuned_lr"][name]
            schedule = get_schedule("student-alone", 2 * M, OptimizerConfig(lr=lr))
        else:
            if method == "recommended":
                recipe, lr = self.choice()["recommended"], self.choice()["recommended_lr"]
            elif method == "paper":  # the paper's recipe at the default lr, as the paper gives it
                recipe = "paper"
            else:  # a development candidate, "RECIPE-lrLR"
                recipe, _, rate = method.rpartition("-lr")
                lr = float(rate)
            schedule = RECIPES[recipe].schedule(M, OptimizerConfig(lr=lr))
            teacher = copy.deepcopy(self.teacher(name, seed))  # paper's KDGAN-3 stage trains its copy further
        gan = student
        start = time.perf_counter()
        history = self.fit(hooks, schedule, name, seed, teacher=teacher, student=student)
        seconds = time.perf_counter() - start
        record = self.score(name, seed, method, recipe, gan.generator, STUDENT_WIDTHS, lr, schedule, history, seconds)
        write_json(path, record)
        return record

    def fit(self, hooks, schedule, name, seed, teacher=None, student=None) -> list[dict]:
        seed_everything(seed)
        batches = ShuffledBatches(self.dataset(name)[0], self.args.batch_size, seed=seed, drop_last=True)
        history = DistillationEngine(hooks, teacher, student).fit(schedule, batches)
        return [{"structure": h["structure"], "epoch": h["epoch"],
                 "losses": {k: round(v, 4) for k, v in h["losses"].items() if "/" not in k}} for h in history]

    def teacher(self, name: str, seed: int):
        """The (dataset, seed) teacher: trained once, its weights cached, its record written."""
        a = self.args
        path = self.weights / f"dcgan-{name}-s{seed}.pt"
        hooks = DCGANHooks(channels=1, teacher_widths=self.args.teacher_widths, seed=seed)
        torch.manual_seed(seed)
        gan = hooks.build_gan(a.teacher_widths)
        if path.is_file():
            gan.load_state_dict(torch.load(path, weights_only=True))
            record_path = self.out / ("dev" if seed in a.dev_seeds else "") / f"{name}-s{seed}-teacher.json"
            record = json.loads(record_path.read_text())
            if "feature_scale" not in record:  # scored before the features were scaled: score again
                write_json(record_path, {**record, **self.metrics(name, generate(gan.generator, self.z))})
            return gan
        schedule = get_schedule("teacher", self.epochs(name, a.teacher_steps), OptimizerConfig(lr=a.lr))
        start = time.perf_counter()
        history = self.fit(hooks, schedule, name, seed, teacher=gan)
        seconds = time.perf_counter() - start
        record = self.score(name, seed, "teacher", None, gan.generator, a.teacher_widths, a.lr, schedule, history, seconds)
        write_json(self.out / ("dev" if seed in a.dev_seeds else "") / f"{name}-s{seed}-teacher.json", record)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(gan.state_dict(), path.with_suffix(".tmp"))
        os.replace(path.with_suffix(".tmp"), path)  # a second driver never reads half a file
        return gan

    def score(self, name, seed, method, recipe, generator, widths, lr, schedule, history, seconds) -> dict:
        images = generate(generator, self.z)
        samples = ((images[:SAMPLE_COLUMNS, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return {"family": "dcgan", "dataset": name, "seed": seed, "method": method, "recipe": recipe,
                **self.metrics(name, images), **count_generator(generator), "widths": list(widths), "lr": lr,
                "schedule": schedule.to_dict(), "steps": schedule.total_epochs * self.steps_per_epoch(name),
                "train_seconds": round(seconds, 1), "classifier_test_accuracy": self.judge(name)[2],
                "n_generated": len(images), "n_real": len(self.judge(name)[1]),
                "eval_latents": f"torch.randn({len(self.z)}, {LATENT_DIM}, 1, 1), generator seed {EVAL_LATENT_SEED}",
                "samples_uint8": samples.tolist(), "history": history, "command": self.args.command}

    # --- the development choice -----------------------------------------------------------------------------
    def develop(self) -> dict:
        a = self.args
        for seed in a.dev_seeds:
            for name in a.dev_datasets:
                self.teacher(name, seed)
                for lr in a.lr_grid:
                    self.run(name, seed, f"student-alone-lr{lr:g}", tag="-dev")
                for recipe, lr in CANDIDATES:
                    self.run(name, seed, f"{recipe}-lr{lr:g}", tag="-dev")
        return self.choice()

    def choice(self) -> dict:
        path = self.out / "choice.json"
        if path.is_file():
            return json.loads(path.read_text())
        a = self.args
        load = lambda n, s, m: json.loads((self.out / "dev" / f"{n}-s{s}-{m}-dev.json").read_text())  # noqa: E731
        names = [f"{r}-lr{lr:g}" for r, lr in CANDIDATES]
        tuned, ranks = {}, {r: [] for r in names}
        for name in a.dev_datasets:
            fd_by_lr = {lr: sum(load(name, s, f"student-alone-lr{lr:g}")["fd"] for s in a.dev_seeds) for lr in a.lr_grid}
            tuned[name] = min(fd_by_lr, key=fd_by_lr.get)
            fds = {r: sum(load(name, s, r)["fd"] for s in a.dev_seeds) for r in names}
            for rank, r in enumerate(sorted(fds, key=fds.get), 1):
                ranks[r].append(rank)
        mean_rank = {r: sum(v) / len(v) for r, v in ranks.items()}
        votes = list(tuned.values())
        for name in a.datasets:  # datasets without development runs take the most common tuned lr
            tuned.setdefault(name, max(a.lr_grid, key=lambda lr: (votes.count(lr), -a.lr_grid.index(lr))))
        best = min(names, key=lambda r: (mean_rank[r], names.index(r)))
        best_recipe, best_lr = CANDIDATES[names.index(best)]
        choice = {"dev_seeds": a.dev_seeds, "dev_datasets": a.dev_datasets, "lr_grid": a.lr_grid, "tuned_lr": tuned, "candidates": names,
                  "mean_fd_rank": mean_rank, "recommended": best_recipe, "recommended_lr": best_lr,
                  "rule": "tuned lr: lowest FD of student-alone on the development seeds, per development dataset (the "
                          "others: the most common of those, ties to the first in the grid); recommended: lowest mean "
                          "FD rank over the development datasets (ties: listed order)"}
        write_json(path, choice)
        return choice

    def evaluate(self, methods: tuple[str, ...], with_teacher: bool = True) -> None:
        for seed in self.args.seeds:
            for name in self.args.datasets:
                if with_teacher:
                    self.teacher(name, seed)
                for method in methods:
                    r = self.run(name, seed, method)
                    print(f"{name} seed {seed} {method:>20}: fd {r['fd']:.3f} kid {r['kid']:.4f} "
                          f"P {r['precision']:.3f} R {r['recall']:.3f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=["digits", "mnist", "fmnist"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--dev-seeds", nargs="+", type=int, default=[100])
    p.add_argument("--dev-datasets", nargs="+", default=["digits", "mnist"],
                   help="datasets of the development runs; the tuned lr of the others is the most common choice")
    p.add_argument("--lr-grid", nargs="+", type=float, default=[2e-4, 5e-4, 1e-3])
    p.add_argument("--teacher-widths", nargs=3, type=int, default=[32, 64, 128])
    p.add_argument("--teacher-steps", type=int, default=1000, help="teacher updates (epochs = steps / batches)")
    p.add_argument("--student-steps", type=int, default=1000, help="student updates in all (2M epochs)")
    p.add_argument("--train-size", type=int, default=6400, help="training images kept (a seeded subset)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--classifier-epochs", type=int, default=5)
    p.add_argument("--samples", type=int, default=2000, help="generated (and real test) images scored")
    p.add_argument("--kid-subsets", type=int, default=50)
    p.add_argument("--data-root", default="../shared/datasets")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--phase", choices=("all", "dev", "base", "chosen"), default="all",
                   help="all; or, for two processes: dev then chosen (tuned and recommended: they need the "
                        "development choice) beside base (teachers, student-alone, paper: they do not)")
    p.add_argument("--out", type=Path, default=Path("results/generators"))
    args = p.parse_args(argv)
    args.teacher_widths = tuple(args.teacher_widths)
    args.command = "python " + " ".join(shlex.quote(x) for x in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    torch.set_num_threads(args.threads)
    grid = Grid(args)
    if args.phase in ("all", "base"):
        grid.evaluate(("student-alone", "paper"))
    if args.phase in ("all", "dev", "chosen"):
        grid.develop()
        grid.evaluate(("student-alone-tuned",), with_teacher=False)
        grid.evaluate(("recommended",))


if __name__ == "__main__":
    main()
