"""Why latent imitation hurts the narrow students: what K_l does to the student's score z1 - z2.

For each (dataset, class, seed) case whose teacher a sweep trained (``--sweep-out``; development cases such
as the Figure-2 classes at seeds 100+), trains the student alone and with KDGAN-2 under the paper's K (Eq. 6)
and under K = 10 * l1(x_hat), all at the cpu budget, then measures on the whole test split, separately
for normal and novel images:

- the score |z1 - z2|^2 of teacher and students, and their AUROC;
- the imitation residue |z_s - z_t|^2 of each latent, against the teacher's own score;
- the rank bound: a student's z1 is a linear map (the encoder head) of its c3 x 4 x 4 feature map, so it
  lies in a subspace of dimension <= 16 c3 (MNIST student: 128, Fashion-MNIST: 64; the teacher's latent has
  256 dimensions). The share of the teacher's z1 variance (train images) outside its best subspace of that
  dimension (PCA) is a floor on the relative error of any such student's imitation;
- the Spearman correlation of each student's score with the teacher's.

    python scripts/latent_mechanism.py --sweep-out DEV_SWEEP --cases mnist:5:100,fmnist:8:100,cifar10:1:100 \
        --out results/latent_mechanism.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gankd  # noqa: E402
from gankd import OptimizerConfig, Schedule, Stage  # noqa: E402
from dev_cases import BUDGET as budget, case_parser, load_case, parse_cases, read_rows  # noqa: E402
from gankd_ganomaly.evaluation import auroc, scoring_mode  # noqa: E402
from gankd_ganomaly.experiment import run  # noqa: E402

STUDENTS = {
    "student-alone": ("student-alone", None),
    "paper K (KDGAN-2)": ("KDGAN-2", None),
    "10*l1(x_hat) (KDGAN-2)": ("KDGAN-2", {"terms": [{"output": "x_hat", "loss": "l1", "weight": 10.0}]}),
}


@torch.no_grad()
def latents(gan: gankd.GAN, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z1s, z2s = [], []
    with scoring_mode(gan, "eval"):
        for start in range(0, len(images), 500):
            z1, _, z2 = gan.generator(images[start:start + 500])
            z1s.append(z1.flatten(1)), z2s.append(z2.flatten(1))
    return torch.cat(z1s), torch.cat(z2s)


def outside_share(z: torch.Tensor, k: int) -> float:
    """Share of the variance of rows of z (centred) outside their best rank-k subspace."""
    centred = (z - z.mean(0)).double()
    eig = torch.linalg.svdvals(centred).pow(2)
    return float(eig[k:].sum() / eig.sum()) if k < len(eig) else 0.0


def main() -> None:
    p = case_parser(__doc__)
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    rows = read_rows(out)
    done = {(r["dataset"], r["normal_class"], r["seed"]) for r in rows}
    for dataset, c, seed in parse_cases(args.cases):
        if (dataset, c, seed) in done:
            continue
        data, cfg, teacher, _ = load_case(args.sweep_out, dataset, c, seed, args.data_root,
                                          args.cifar_root, args.budget)
        novel = data.test_labels.bool()
        t_z1, t_z2 = latents(teacher, data.test)
        t_score = (t_z1 - t_z2).pow(2).mean(1)
        train_z1, _ = latents(teacher, data.train)
        k = 16 * cfg.student_widths[2]
        row = {"dataset": dataset, "normal_class": c, "seed": seed, "student_widths": list(cfg.student_widths),
               "student_latent_rank_bound": k, "latent_dim": int(t_z1.shape[1]),
               "teacher_z1_variance_outside_rank_bound": outside_share(train_z1, k),
               "teacher": {"auroc": auroc(t_score, data.test_labels),
                           "score_normal": float(t_score[~novel].mean()), "score_novel": float(t_score[novel].mean())},
               "students": {}}
        for name, (structure, k_spec) in STUDENTS.items():
            schedule = Schedule((Stage(structure, budget.student_epochs, OptimizerConfig(lr=budget.lr),
                                       distillation=k_spec),), name=name)
            _, student = run(cfg, data, teacher, verbose=False, schedule=schedule)
            s_z1, s_z2 = latents(student, data.test)
            s_score = (s_z1 - s_z2).pow(2).mean(1)
            entry = {"auroc": auroc(s_score, data.test_labels),
                     "spearman_with_teacher_score": float(spearmanr(s_score.numpy(), t_score.numpy())[0])}
            for part, mask in (("normal", ~novel), ("novel", novel)):
                entry[f"score_{part}"] = float(s_score[mask].mean())
                entry[f"residue_z1_{part}"] = float((s_z1 - t_z1)[mask].pow(2).mean())
                entry[f"residue_z2_{part}"] = float((s_z2 - t_z2)[mask].pow(2).mean())
                entry[f"z1_rms_{part}"] = float(s_z1[mask].pow(2).mean().sqrt())
            row["students"][name] = entry
            print(f"{dataset}:{c}:{seed} {name:>24} AUROC {entry['auroc']:.4f}", flush=True)
        row["teacher"]["z1_rms"] = float(t_z1.pow(2).mean().sqrt())
        rows.append(row)
        gankd.atomic_write_text(out, json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
