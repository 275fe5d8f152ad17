"""Development probe: is the narrow student held back by its learning rate or by its initialisation?

On cases whose teachers a sweep trained at the cpu budget (``--sweep-out``; the Figure-2 classes at seeds
100-102, which no reported run uses), trains for 10 epochs at the cpu budget:

- ``alone`` / ``xhat30``: the student alone, and KDGAN-2 with K = 30 * l1(x_hat) (the `recommended` recipe);
  ``xhat10`` / ``xhat100``: other weights of that term; ``paperK``: KDGAN-2 with the paper's K (Eq. 6);
- suffix ``-lr1e-3``: every network at lr 1e-3 instead of 2e-4; ``-glr5e-4`` / ``-glr1e-3`` / ``-glr2e-3``:
  only the student's generator (its discriminator stays at 2e-4), through ``Stage(optimizers=...)``;
- prefix ``ws-``: the student's generator and discriminator start from the teacher's weights by uniform
  weight selection (Xu et al. 2023, "Initializing Models with Larger Ones": of each dimension of each
  teacher tensor, every (D_teacher / D_student)-th entry); ``wsf-``: the same, with each conv / linear weight
  scaled by the ratio of the fan-ins, so that a layer's output keeps the teacher's scale.

Weight selection was rejected here, so it is not a library feature: this script puts it in by wrapping the
run's network builder. Appends one row per run to ``--out`` (re-running skips rows already there). Example:

    PYTHONPATH=. python scripts/student_lr_probe.py --sweep-out DEV_SWEEP --cases mnist:5:100,fmnist:8:100 \
        --candidates alone,xhat30,alone-glr1e-3,xhat30-glr1e-3 --out results/student_lr_probe.json
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gankd_ganomaly.experiment.train as train  # noqa: E402
from gankd import OptimizerConfig, Schedule, Stage  # noqa: E402
from dev_cases import append_row, BUDGET as budget, case_parser, load_case, parse_cases, read_rows  # noqa: E402

BASES = {"alone": ("student-alone", None), "paperK": ("KDGAN-2", None),  # None: the family's K (Eq. 6)
         **{f"xhat{w}": ("KDGAN-2", {"terms": [{"output": "x_hat", "loss": "l1", "weight": float(w)}]})
            for w in (10, 30, 100)}}
GENERATOR_LR = {"-glr5e-4": 5e-4, "-glr1e-3": 1e-3, "-glr2e-3": 2e-3}


@torch.no_grad()
def select_weights(teacher: torch.nn.Module, student: torch.nn.Module) -> None:
    """Uniform weight selection: student[name] = teacher[name][::D_t/D_s, ...] for every parameter."""
    teacher_params = dict(teacher.named_parameters())
    for name, p in student.named_parameters():
        q = teacher_params[name]
        index = [torch.arange(s) * d // s for s, d in zip(p.shape, q.shape)]
        p.copy_(q[torch.meshgrid(*index, indexing="ij")] if p.ndim else q)


@torch.no_grad()
def rescale_fan_in(teacher: torch.nn.Module, student: torch.nn.Module) -> None:
    """Scale each conv / linear weight by fan_in(teacher) / fan_in(student) (ConvTranspose: dim 0 is the input)."""
    teacher_modules = dict(teacher.named_modules())
    for name, m in student.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
            d = 0 if isinstance(m, torch.nn.ConvTranspose2d) else 1
            m.weight.mul_(teacher_modules[name].weight.shape[d] / m.weight.shape[d])


def parse(name: str) -> tuple[str, str | None, float, float | None]:
    """``"wsf-xhat30-glr1e-3"`` -> (base, init "ws"/"wsf"/None, lr of every network, student generator lr)."""
    init = next((p for p in ("ws", "wsf") if name.startswith(p + "-")), None)
    base = name[len(init) + 1:] if init else name
    lr, generator_lr = budget.lr, None
    if base.endswith("-lr1e-3"):
        base, lr = base[:-len("-lr1e-3")], 1e-3
    for suffix, value in GENERATOR_LR.items():
        if base.endswith(suffix):
            base, generator_lr = base[:-len(suffix)], value
    if base not in BASES:
        raise SystemExit(f"unknown candidate {name!r}")
    return base, init, lr, generator_lr


def main() -> None:
    p = case_parser(__doc__)
    p.add_argument("--candidates", required=True)
    p.add_argument("--student-widths", default=None, metavar="C1,C2,C3",
                   help="students of these widths instead of the dataset's default (the paper's)")
    args = p.parse_args()
    widths = tuple(int(w) for w in args.student_widths.split(",")) if args.student_widths else None
    torch.set_num_threads(1)
    out = Path(args.out)
    rows = read_rows(out)
    done = {(r["candidate"], r["dataset"], r["normal_class"], r["seed"], tuple(r.get("student_widths") or ()) or None)
            for r in rows}
    names = args.candidates.split(",")
    parsed = {name: parse(name) for name in names}  # unknown names fail before any run
    build_gan = train.build_gan
    for dataset, c, seed in parse_cases(args.cases):
        data, cfg, teacher, trecord = load_case(args.sweep_out, dataset, c, seed, args.data_root,
                                                args.cifar_root, args.budget)
        if widths:
            cfg = cfg.replace(student_widths=widths)
        for name in names:
            if (name, dataset, c, seed, widths) in done:
                continue
            base, init, lr, generator_lr = parsed[name]
            structure, k = BASES[base]
            optimizers = {"student.generator": OptimizerConfig(lr=generator_lr)} if generator_lr else {}
            schedule = Schedule((Stage(structure, budget.student_epochs, OptimizerConfig(lr=lr), distillation=k,
                                       optimizers=optimizers),), name="probe")

            def build(hooks, net_widths, s):
                gan = build_gan(hooks, net_widths, s)
                if init and tuple(net_widths) == tuple(cfg.student_widths):
                    for t_net, s_net in ((teacher.generator, gan.generator), (teacher.discriminator, gan.discriminator)):
                        select_weights(t_net, s_net)
                        if init == "wsf":
                            rescale_fan_in(t_net, s_net)
                return gan

            train.build_gan = build
            t0 = time.perf_counter()
            try:
                record, _ = train.run(cfg, data, teacher, verbose=False, schedule=schedule)
            finally:
                train.build_gan = build_gan
            append_row(out, rows, {"candidate": name, "dataset": dataset, "normal_class": c, "seed": seed,
                                   **({"student_widths": list(widths)} if widths else {}),
                                   "auroc_last": record["auroc_last"], "teacher_auroc": trecord["auroc_last"]}, t0)

if __name__ == "__main__":
    main()
