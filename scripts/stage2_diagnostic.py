"""Why P-KDGAN-II-23 falls in its KDGAN-3 stage on digits: per-epoch AUROC, the distillation terms
K_z1/K_z2 and the teacher's and student's own |z1 - z2|^2 (enc) for P-KDGAN-II-23 and -II-24 from one teacher.

    python scripts/stage2_diagnostic.py      # writes results/stage2_diagnostic.json (about 5 min, 1 thread)
"""
import json

import torch

import gankd
torch.set_num_threads(1)
from gankd_ganomaly.data import load_one_class
from gankd_ganomaly.experiment import RunConfig, run
data = load_one_class("digits", 3)
base = RunConfig(dataset="digits", normal_class=3, method="teacher", epochs=15, batch_size=16, lr=2e-4)
rec_t, teacher = run(base, data, verbose=False)
out = {"teacher_auroc": rec_t["auroc_last"],
       "teacher_enc_last": rec_t["history"][-1]["losses"]["L_g^T/enc"]}
for m in ("P-KDGAN-II-23", "P-KDGAN-II-24"):
    r, _ = run(base.replace(method=m), data, teacher, verbose=False)
    out[m] = [{"epoch": h["global_epoch"], "structure": h["structure"], "auroc": round(h["metrics"]["auroc"], 3),
               "K_z1": round(h["losses"]["K/K_z1"], 4), "K_z2": round(h["losses"]["K/K_z2"], 4),
               "teacher_enc": round(h["losses"].get("L_g^T/enc", float("nan")), 4),
               "student_enc": round(h["losses"].get("L_g^S/enc", float("nan")), 4)} for h in r["history"]]
gankd.atomic_write_text("results/stage2_diagnostic.json", json.dumps(out, indent=1) + "\n")
print("done")
