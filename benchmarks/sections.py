"""The benchmark sections. Each returns ``(payload, text)``: the JSON document and the printed table(s)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from gankd_ganomaly.deploy.export import default_layout
from gankd_ganomaly.evaluation.flops import compression_report
from gankd_ganomaly.hooks import GanomalyHooks
from gankd_ganomaly.data import dataset_spec
from gankd_ganomaly.networks import TEACHER_WIDTHS

from harness import (Budget, alternate, calibrate, count_macs, machine_info, onednn_primitive_times, paired_ratio,
                     set_threads, table)
from workloads import (STAGES, BatchSource, Models, adam_step_runners, bare_matches_engine, bare_runner, build_models,
                       engine_runner, flops_per_step, random_images, teacher_forward_runner)

MS = 1e3


@dataclass
class Config:
    quick: bool
    budget: Budget
    threads: list[int]
    train_datasets: list[str] = field(default_factory=lambda: ["cifar10", "mnist"])
    score_datasets: list[str] = field(default_factory=lambda: ["cifar10", "mnist", "fmnist"])
    batches: list[int] = field(default_factory=lambda: [1, 16, 64])
    overhead_batch: int = 64
    overhead_stages: list[str] = field(default_factory=lambda: ["KDGAN-2", "KDGAN-4", "teacher"])
    teacher_batch: int = 64       # teacher step of the peak/profile sections
    score_batches: list[int] = field(default_factory=lambda: [1, 256])
    matmul_n: int = 2048
    channels_last: bool = False
    compile: bool = False
    log: Callable[[str], None] = print

    def settings(self) -> dict:
        return {"mode": "quick" if self.quick else "full", "budget": self.budget.to_dict(), "threads": self.threads,
                "train_datasets": self.train_datasets, "score_datasets": self.score_datasets,
                "batches": self.batches, "overhead_batch": self.overhead_batch,
                "overhead_stages": self.overhead_stages, "teacher_batch": self.teacher_batch,
                "score_batches": self.score_batches, "matmul_n": self.matmul_n,
                "channels_last": self.channels_last, "compile": self.compile,
                "timing": "seconds per step: median over repeats (min and all samples kept); compared contenders "
                          "measured alternately in one process, order rotated per round"}


def _doc(name: str, description: str, cfg: Config, **extra: Any) -> dict:
    return {"benchmark": name, "description": description, "settings": cfg.settings(),
            "machine": machine_info(), **extra}


def _finish(doc: dict) -> dict:
    doc["machine_at_end"] = machine_info()
    return doc


# --- 1. training throughput -----------------------------------------------------------------------------------------


def train_throughput(cfg: Config) -> tuple[dict, str]:
    doc = _doc("train_throughput", "Training images/s per stage kind through DistillationEngine's epoch loop "
               "(ShuffledBatches over an in-memory tensor, train_step, loss logging), teacher 64-128-256 and the "
               "dataset's student; images/s = batch / median step time.", cfg, results=[])
    for threads in cfg.threads:
        set_threads(threads)
        for ds in cfg.train_datasets:
            base = build_models(ds)
            for batch in cfg.batches:
                source = BatchSource(base.channels, batch)
                for stage in STAGES:
                    m = alternate({"engine": engine_runner(base.copy(), stage, source)}, cfg.budget)["engine"]
                    row = {"threads": threads, "dataset": ds, "shape": [base.channels, 32, 32], "stage": stage,
                           "batch": batch, "step_s": m, "images_per_s": batch / m["median"],
                           "images_per_s_best": batch / m["min"]}
                    doc["results"].append(row)
                    cfg.log(f"  train {ds} t={threads} b={batch:<3d} {stage:13s} {m['median'] * MS:9.2f} ms/step "
                            f"{row['images_per_s']:9.1f} img/s")
    _finish(doc)
    texts = []
    cols = [(t, b) for t in cfg.threads for b in cfg.batches]
    for ds in cfg.train_datasets:
        rows = []
        for stage in STAGES:
            r = [stage]
            for t, b in cols:
                hit = [x for x in doc["results"]
                       if (x["dataset"], x["stage"], x["threads"], x["batch"]) == (ds, stage, t, b)]
                r.append(hit[0]["images_per_s"] if hit else "-")
            rows.append(r)
        shape = "3x32x32" if ds == "cifar10" else "1x32x32"
        texts.append(table(["stage"] + [f"b{b}/t{t}" for t, b in cols], rows,
                           title=f"Training throughput, images/s ({ds} {shape}; b=batch, t=threads)"))
    return doc, "\n\n".join(texts)


# --- 2. engine overhead vs a bare loop ------------------------------------------------------------------------------


def engine_overhead(cfg: Config) -> tuple[dict, str]:
    doc = _doc("engine_overhead", "The same KDGAN-2 / KDGAN-4 (and teacher) step through DistillationEngine (its "
               "epoch loop) and as a bare hand-written PyTorch loop (benchmarks/workloads.py: same math, same data "
               "pipeline), measured "
               "alternately in one process. ratio = engine images/s / bare images/s (per-round paired median). "
               "'bare' does the engine's math (backward into the stepping parameters only, fused Adam); "
               "'bare_full_backward' and 'bare_loop_adam' each undo one of those, to show what it buys.",
               cfg, results=[])
    # the comparison is only fair if the bare loop does the engine's work: check it reproduces the
    # engine's weights exactly (tiny networks, 3 steps from the same init on the same batches)
    doc["bare_loop_max_weight_difference_vs_engine"] = {st: bare_matches_engine(st) for st in cfg.overhead_stages}
    rows = []
    for threads in cfg.threads:
        set_threads(threads)
        for ds in cfg.train_datasets:
            base = build_models(ds)
            source = BatchSource(base.channels, cfg.overhead_batch)
            for stage in cfg.overhead_stages:
                contenders = {
                    "engine": engine_runner(base.copy(), stage, source),
                    "bare": bare_runner(base.copy(), stage, source, lean=True, fused_adam=True),
                    "bare_full_backward": bare_runner(base.copy(), stage, source, fused_adam=True),
                    "bare_loop_adam": bare_runner(base.copy(), stage, source, lean=True),
                }
                flops = {k: flops_per_step(f) for k, f in contenders.items()}
                steps = calibrate(contenders["engine"], cfg.budget)
                m = alternate(contenders, cfg.budget, steps=steps)
                ratio = paired_ratio(m["bare"], m["engine"])  # t_bare / t_engine = engine thr / bare thr
                lean = paired_ratio(m["bare_full_backward"], m["bare"])  # what the lean backward buys
                fused = paired_ratio(m["bare_loop_adam"], m["bare"])  # what fused Adam buys
                row = {"threads": threads, "dataset": ds, "stage": stage, "batch": cfg.overhead_batch,
                       "measurements": m, "flops_per_step": flops,
                       "images_per_s": {k: cfg.overhead_batch / v["median"] for k, v in m.items()},
                       "ratio_engine_over_bare": ratio, "passes_0.95": ratio["median"] >= 0.95,
                       "speedup_lean_backward": lean, "speedup_fused_adam": fused}
                doc["results"].append(row)
                rows.append([threads, ds, stage, cfg.overhead_batch, m["engine"]["median"] * MS,
                             m["bare"]["median"] * MS, ratio["median"], "yes" if row["passes_0.95"] else "NO",
                             flops["engine"] / 1e9, flops["bare"] / 1e9, lean["median"],
                             f"{100 * (1 - flops['bare'] / flops['bare_full_backward']):.1f}%", fused["median"]])
                cfg.log(f"  overhead {ds} t={threads} {stage}: engine {m['engine']['median'] * MS:.1f} ms, bare "
                        f"{m['bare']['median'] * MS:.1f} ms, ratio {ratio['median']:.3f}")
        # the optimizer's share: one Adam step over the teacher's G+D parameters, per implementation
        teacher_models = build_models(cfg.train_datasets[0])
        adam = alternate(adam_step_runners(teacher_models), cfg.budget)
        doc.setdefault("adam_step_teacher_params", []).append(
            {"threads": threads, "params": sum(p.numel() for p in teacher_models.teacher.parameters()),
             "step_s": adam})
        cfg.log("  adam step (teacher G+D): " + ", ".join(f"{k} {v['median'] * MS:.2f} ms" for k, v in adam.items()))
        # where the optimizer matters: the teacher step at small batches, bare loop with and without fused Adam
        for batch in (1, 16):
            source = BatchSource(teacher_models.channels, batch)
            m = alternate({"bare": bare_runner(teacher_models.copy(), "teacher", source),
                           "bare_fused_adam": bare_runner(teacher_models.copy(), "teacher", source, fused_adam=True)},
                          cfg.budget)
            doc.setdefault("fused_adam_teacher_small_batches", []).append(
                {"threads": threads, "dataset": teacher_models.dataset, "batch": batch, "measurements": m,
                 "speedup": paired_ratio(m["bare"], m["bare_fused_adam"])})
    _finish(doc)
    text = table(["thr", "dataset", "stage", "batch", "engine ms", "bare ms", "ratio", ">=0.95", "engine GFLOP",
                  "bare GFLOP", "lean-bwd x", "lean saves", "fused-adam x"], rows,
                 title="Engine overhead: engine/bare throughput ratio (alternating). GFLOP per step counted by "
                       "torch's FlopCounterMode; lean-bwd / fused-adam: speedup of the bare loop with that change, "
                       "'lean saves': FLOPs it removes")
    for a in doc["adam_step_teacher_params"]:
        text += (f"\nAdam step over the teacher's {a['params'] / 1e6:.2f}M parameters, {a['threads']} thread(s): "
                 + ", ".join(f"{k} {v['median'] * MS:.2f} ms" for k, v in a["step_s"].items()))
    for f in doc["fused_adam_teacher_small_batches"]:
        text += (f"\nteacher step, {f['dataset']} batch {f['batch']}, {f['threads']} thread(s): bare "
                 f"{f['measurements']['bare']['median'] * MS:.1f} ms, with fused Adam "
                 f"{f['measurements']['bare_fused_adam']['median'] * MS:.1f} ms ({f['speedup']['median']:.2f}x)")
    same = doc["bare_loop_max_weight_difference_vs_engine"]
    text += "\nbare loop vs engine, max weight difference after 3 steps from one init: " + ", ".join(
        f"{st} {d['bare']:g} (full backward {d['bare_full_backward']:g})" for st, d in same.items())
    return doc, text


# --- 3. KDGAN-2 cost vs student-alone + teacher forward -------------------------------------------------------------


def kdgan2_cost(cfg: Config) -> tuple[dict, str]:
    doc = _doc("kdgan2_cost", "KDGAN-2 step time vs student-alone step time + 1.2 x the frozen teacher's forward "
               "(eval, no_grad, as the engine runs it), all measured alternately; check: "
               "kdgan2 <= student_alone + 1.2 * teacher_forward (medians).", cfg, results=[])
    rows = []
    batches = sorted({16, cfg.overhead_batch})
    for threads in cfg.threads:
        set_threads(threads)
        for ds in cfg.train_datasets:
            base = build_models(ds)
            for batch in batches:
                source = BatchSource(base.channels, batch)
                contenders = {
                    "student_alone": engine_runner(base.copy(), "student-alone", source),
                    "teacher_forward": teacher_forward_runner(base.copy(), source),
                    "teacher_forward_inference_mode": teacher_forward_runner(base.copy(), source, inference_mode=True),
                    "kdgan2": engine_runner(base.copy(), "KDGAN-2", source),
                }
                m = alternate(contenders, cfg.budget)
                s, t, k = (m[n]["median"] for n in ("student_alone", "teacher_forward", "kdgan2"))
                bound = s + 1.2 * t
                s_min, t_min, k_min = (m[n]["min"] for n in ("student_alone", "teacher_forward", "kdgan2"))
                row = {"threads": threads, "dataset": ds, "batch": batch, "measurements": m,
                       "kdgan2_s": k, "student_alone_s": s, "teacher_forward_s": t, "bound_s": bound,
                       "passes": k <= bound, "kdgan2_minus_student_over_teacher_forward": (k - s) / t,
                       "passes_on_min_times": k_min <= s_min + 1.2 * t_min,
                       "kdgan2_minus_student_over_teacher_forward_min": (k_min - s_min) / t_min}
                doc["results"].append(row)
                rows.append([threads, ds, batch, s * MS, t * MS, k * MS, bound * MS, (k - s) / t,
                             "yes" if k <= bound else "NO"])
    _finish(doc)
    text = table(["thr", "dataset", "batch", "student ms", "T fwd ms", "KDGAN-2 ms", "bound ms",
                  "(K2-S)/Tfwd", "K2<=S+1.2T"], rows,
                 title="KDGAN-2 step vs student-alone step + 1.2 x teacher forward (medians)")
    return doc, text


# --- 4. scoring -----------------------------------------------------------------------------------------------------


def _settle_bn(gan, channels: int, seed: int) -> None:
    """Give batch norm realistic running statistics (a few train-mode forwards on random images)."""
    gan.train()
    with torch.no_grad():
        for i in range(3):
            gan.generator(random_images(64, channels, seed + i))
    gan.eval()


def _scoring_models(ds: str) -> tuple[dict, GanomalyHooks, dict]:
    """The dataset's compression report, hooks, and {"teacher", "student"} GANs (seeded, batch norm settled)."""
    report = compression_report(ds)
    channels = report["in_channels"]
    hooks = GanomalyHooks(in_channels=channels)
    torch.manual_seed(0)
    gans = {"teacher": hooks.build_gan(TEACHER_WIDTHS), "student": hooks.build_gan(dataset_spec(ds).student_widths)}
    for gan in gans.values():
        _settle_bn(gan, channels, 1)
    return report, hooks, gans


def _onnxruntime_why_not() -> str | None:
    from gankd_ganomaly.deploy.export import onnx_available

    ok, why = onnx_available()
    if not ok:
        return why
    try:
        import onnxruntime  # noqa: F401  (only: is it importable)
    except Exception as exc:  # noqa: BLE001
        return f"onnxruntime not importable ({type(exc).__name__}: {exc})"
    return None


# the hand-written scoring graphs of gankd_ganomaly/deploy (folded / batch-last, then scripted and frozen), and the
# libraries that could replace them: torch.jit.freeze of the plain layers (its frozen-graph passes fold batch norm
# into the convolutions) and onnxruntime on the plain ONNX graph
HAND_WRITTEN = "torchscript"
LIBRARY_VARIANTS = ("jit_freeze", "onnxruntime")


def _scorers(hooks: GanomalyHooks, gan, channels: int, variant: str, threads: int):
    """fn(x) -> scores, for one deployment variant."""
    if variant == "eager":
        return lambda x: hooks.score(gan, x)
    if variant in ("torchscript", "jit_freeze"):
        from gankd_ganomaly.deploy.export import to_torchscript

        return to_torchscript(gan, channels, optimize=variant == "torchscript")
    if variant == "onnxruntime":
        import tempfile

        from gankd_ganomaly.deploy import OnnxScorer
        from gankd_ganomaly.deploy.export import export_onnx

        with tempfile.TemporaryDirectory() as tmp:
            scorer = OnnxScorer(export_onnx(gan, channels, Path(tmp) / "model.onnx"), threads=threads)
        return lambda x: scorer(x, batch_size=len(x))  # one session run per call, as the other variants
    raise ValueError(variant)


def scoring(cfg: Config) -> tuple[dict, str]:
    doc = _doc("scoring", "Anomaly scoring (mean over the latent of (z1-z2)^2), eval mode, under inference_mode, "
               "teacher 64-128-256 vs the dataset's student at the same channel count. 'eager' = "
               "GanomalyHooks.score on the nn.Modules; 'torchscript' = the exported deployment model, the "
               "hand-written graphs of gankd_ganomaly/deploy "
               "(to_torchscript(optimize=True): batch norm folded, matrix-product head, fast transposed "
               "convs, phase-domain last layer; layout from default_layout: channels_last for widths >= 8, "
               "batch_last for widths <= 8, else standard; the row's 'layouts'), scripted and frozen; "
               "'jit_freeze' = the generator's own layers scripted and frozen (to_torchscript(optimize=False): "
               "torch.jit.freeze's passes fold batch norm); 'onnxruntime' = export_onnx (the plain graph) run by "
               "onnxruntime (OnnxScorer, when installed) with intra_op_num_threads = threads. Every variant and "
               "both models of one (threads, dataset, batch) are measured alternately in one process. "
               "speedup = teacher time / student time (paired per round); vs_hand_written = the variant's time / "
               "the torchscript variant's time (paired per round; <= 1.10: within 10% of the hand-written "
               "graphs); flops_ratio from gankd_ganomaly.evaluation.flops.compression_report.", cfg, results=[])
    rows = []
    why_not_ort = _onnxruntime_why_not()
    variants = ["eager", "torchscript", "jit_freeze"] + (["onnxruntime"] if why_not_ort is None else [])
    doc["variants"] = variants
    doc["onnxruntime"] = "measured" if why_not_ort is None else f"not measured: {why_not_ort}"
    for threads in cfg.threads:
        set_threads(threads)
        for ds in cfg.score_datasets:
            report, hooks, gans = _scoring_models(ds)
            channels = report["in_channels"]
            fns = {(variant, who): _scorers(hooks, gan, channels, variant, threads)
                   for variant in variants for who, gan in gans.items()}
            for batch in cfg.score_batches:
                x = random_images(batch, channels, seed=7)

                def runner(f):
                    def run(n: int) -> None:
                        with torch.inference_mode():
                            for _ in range(n):
                                f(x)
                    return run
                measured = alternate({f"{v}:{w}": runner(f) for (v, w), f in fns.items()}, cfg.budget)
                for variant in variants:
                    m = {who: measured[f"{variant}:{who}"] for who in gans}
                    speed = paired_ratio(m["teacher"], m["student"])
                    row = {"threads": threads, "dataset": ds, "channels": channels, "variant": variant,
                           "batch": batch, "teacher": m["teacher"], "student": m["student"],
                           "teacher_images_per_s": batch / m["teacher"]["median"],
                           "student_images_per_s": batch / m["student"]["median"],
                           "speedup": speed, "flops_ratio": report["flops_ratio"],
                           "params_ratio": report["params_ratio"],
                           "teacher_flops": report["teacher"]["flops"], "student_flops": report["student"]["flops"],
                           "student_widths": report["student_widths"]}
                    if variant == "torchscript":
                        row["layouts"] = {who: default_layout(gan.generator) for who, gan in gans.items()}
                    if variant in LIBRARY_VARIANTS:
                        row["vs_hand_written"] = {who: paired_ratio(m[who], measured[f"{HAND_WRITTEN}:{who}"])
                                                  for who in gans}
                    doc["results"].append(row)
                    versus = " ".join(f"{who[0]} {row['vs_hand_written'][who]['median']:.2f}" for who in gans) \
                        if "vs_hand_written" in row else "-"
                    rows.append([threads, ds, variant, batch, m["teacher"]["median"] * MS,
                                 m["student"]["median"] * MS, row["student_images_per_s"],
                                 _ratio_text(speed), f"{report['flops_ratio']:.1f}x", versus])
                    cfg.log(f"  scoring {ds} t={threads} {variant} b={batch}: teacher "
                            f"{m['teacher']['median'] * MS:.2f} ms, student {m['student']['median'] * MS:.3f} ms, "
                            f"speedup {speed['median']:.1f}x (FLOP ratio {report['flops_ratio']:.1f}x)"
                            + (f", time / hand-written: {versus}" if versus != "-" else ""))
    _finish(doc)
    text = table(["thr", "dataset", "variant", "batch", "teacher ms", "student ms", "student img/s",
                  "speedup [95% CI]", "FLOP ratio", "time / hand-written (t, s)"], rows,
                 title="Scoring latency/throughput, student vs teacher")
    return doc, text


def _ratio_text(ratio: dict) -> str:
    """A paired ratio as "14.8x [14.1-16.0]": the median and its 95% interval (when there are enough rounds)."""
    ci = ratio.get("ci95")
    return f"{ratio['median']:.1f}x" + (f" [{ci[0]:.1f}-{ci[1]:.1f}]" if ci else "")


# --- 5. peak and achieved GFLOP/s -----------------------------------------------------------------------------------


def peak(cfg: Config) -> tuple[dict, str]:
    n = cfg.matmul_n
    formula = ("train FLOPs per step = 2 (FLOPs per multiply-add) x 3 (forward + backward ~ 3 x forward) x "
               "batch x (MACs_G + 3 x MACs_D), MACs per 32x32 image counted by fvcore (eval mode); the teacher "
               "step runs G once and D three times: D(x), D(x_hat) in L_g, D(x_hat.detach()) in L_d. "
               "'(torch count)': torch.utils.flop_counter on one real step (convs and matmuls, fwd + bwd)")
    doc = _doc("peak", f"Peak fp32 GFLOP/s of a {n}x{n} matrix multiply (torch.mm) vs the GFLOP/s achieved by the "
               "teacher's training step (engine, 'teacher' stage).", cfg, results=[], flops_formula=formula)
    rows = []
    for threads in cfg.threads:
        set_threads(threads)
        a = torch.randn(n, n)
        b = torch.randn(n, n)
        out = torch.empty(n, n)

        def mm(k: int) -> None:
            for _ in range(k):
                torch.mm(a, b, out=out)
        m = alternate({"mm": mm}, cfg.budget)["mm"]
        peak_gflops = 2 * n ** 3 / m["median"] / 1e9
        peak_best = 2 * n ** 3 / m["min"] / 1e9
        entry = {"threads": threads, "matmul_n": n, "matmul_s": m, "peak_gflops": peak_gflops,
                 "peak_gflops_best": peak_best, "teacher_step": []}
        for ds in cfg.train_datasets:
            models = build_models(ds)
            x1 = random_images(1, models.channels)
            macs_g = count_macs(models.teacher.generator, x1)
            macs_d = count_macs(models.teacher.discriminator, x1)
            batch = cfg.teacher_batch
            flops = 2 * 3 * batch * (macs_g + 3 * macs_d)
            run = engine_runner(models, "teacher", BatchSource(models.channels, batch))
            counted = flops_per_step(run)  # cross-check of the formula: torch's FLOP counter on one real step
            step = alternate({"teacher": run}, cfg.budget)["teacher"]
            achieved = flops / step["median"] / 1e9
            entry["teacher_step"].append({"dataset": ds, "batch": batch, "macs_generator": macs_g,
                                          "macs_discriminator": macs_d, "flops_per_step": flops,
                                          "flops_per_step_counted_by_torch": counted, "step_s": step,
                                          "achieved_gflops": achieved, "fraction_of_peak": achieved / peak_gflops})
            rows.append([threads, ds, batch, step["median"] * MS, flops / 1e9, counted / 1e9, achieved, peak_gflops,
                         f"{100 * achieved / peak_gflops:.0f}%"])
        doc["results"].append(entry)
    _finish(doc)
    text = table(["thr", "dataset", "batch", "step ms", "GFLOP/step", "(torch count)", "achieved GFLOP/s",
                  "peak GFLOP/s", "of peak"], rows, title=f"Teacher training step vs peak ({n}x{n} fp32 matmul)")
    return doc, text + "\n" + formula


# --- 6. profile -----------------------------------------------------------------------------------------------------


def _phase(event) -> str:
    e = event
    while e is not None:
        name = e.name
        if name.startswith("Optimizer.") or name.startswith("Optimizer#"):
            return "optimizer"
        if name.startswith("autograd::engine::evaluate_function") or "Backward" in name:
            return "backward"
        e = e.cpu_parent
    return "forward+loss+other"


def _family(name: str) -> str:
    n = name.lower()
    if "conv" in n:
        return "convolution"
    if "batch_norm" in n:
        return "batch_norm"
    if any(k in n for k in ("relu", "tanh", "sigmoid", "leaky", "threshold")):
        return "activation"
    if any(k in n for k in ("loss", "l1", "mse", "binary_cross", "abs", "sgn", "sign")):
        return "loss"
    if any(k in n for k in ("copy", "empty", "zero", "fill", "clone", "contiguous", "cat", "stack", "index")):
        return "memory/copy"
    return "other"


def profile(cfg: Config) -> tuple[dict, str]:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    ds, batch = cfg.train_datasets[0], cfg.teacher_batch
    doc = _doc("profile", f"torch.profiler of the teacher's training step (engine, 'teacher' stage, {ds}, batch "
               f"{batch}): top ops by self CPU time, and self time by phase (forward / backward / optimizer) and "
               "by op family.", cfg, results=[])
    texts = []
    for threads in cfg.threads:
        set_threads(threads)
        models = build_models(ds)
        run = engine_runner(models, "teacher", BatchSource(models.channels, batch))
        for _ in range(max(2, cfg.budget.warmup)):
            run(1)
        steps = 1 if cfg.quick else 3
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            run(steps)
            wall = time.perf_counter() - start
        events = [e for e in prof.events()]
        total_self = sum(e.self_cpu_time_total for e in events) or 1.0
        phases: dict[str, float] = {}
        families: dict[str, float] = {}
        for e in events:
            phases[_phase(e)] = phases.get(_phase(e), 0.0) + e.self_cpu_time_total
            if e.name.startswith("aten::"):
                family = "optimizer (Adam)" if _phase(e) == "optimizer" else _family(e.name)
                families[family] = families.get(family, 0.0) + e.self_cpu_time_total
        top = sorted(prof.key_averages(), key=lambda k: k.self_cpu_time_total, reverse=True)[:15]
        top_ops = [{"op": k.key, "self_ms_per_step": k.self_cpu_time_total / 1e3 / steps,
                    "self_pct": 100 * k.self_cpu_time_total / total_self, "calls_per_step": k.count / steps}
                   for k in top]
        entry = {"threads": threads, "dataset": ds, "batch": batch, "steps_profiled": steps,
                 "wall_ms_per_step": wall * MS / steps, "profiled_self_ms_per_step": total_self / 1e3 / steps,
                 "phases_pct": {k: 100 * v / total_self for k, v in sorted(phases.items(), key=lambda kv: -kv[1])},
                 "families_pct": {k: 100 * v / total_self for k, v in sorted(families.items(), key=lambda kv: -kv[1])},
                 "top_ops": top_ops}
        doc["results"].append(entry)
        t1 = table(["op", "self ms/step", "self %", "calls/step"],
                   [[o["op"], o["self_ms_per_step"], f"{o['self_pct']:.1f}%", f"{o['calls_per_step']:g}"]
                    for o in top_ops],
                   title=f"Teacher step profile ({ds}, batch {batch}, {threads} thread(s); wall "
                         f"{entry['wall_ms_per_step']:.0f} ms/step under the profiler)")
        t2 = "phases: " + ", ".join(f"{k} {v:.0f}%" for k, v in entry["phases_pct"].items())
        t3 = "op families: " + ", ".join(f"{k} {v:.0f}%" for k, v in entry["families_pct"].items())
        texts.append("\n".join([t1, t2, t3]))
    _finish(doc)
    return doc, "\n\n".join(texts)


def scoring_profile(cfg: Config) -> tuple[dict, str]:
    """Where the exported scorers' time goes: ops (with input shapes) by self CPU time, batch 256."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from gankd_ganomaly.deploy.export import to_torchscript

    batch, calls, tries = 256, (2 if cfg.quick else 10), (1 if cfg.quick else 3)
    doc = _doc("scoring_profile", f"torch.profiler of the exported TorchScript scorers (teacher and each dataset's "
               f"student) at batch {batch}: ops grouped by input shapes, self CPU ms per call; the least-total of "
               f"{tries} profiled runs of {calls} calls is kept (the machine's noise only adds time). "
               "macs_per_s = the model's multiply-adds (fvcore) x batch / profiled self time per call. "
               "onednn_primitives: each oneDNN primitive's least execution time over 8 calls, from oneDNN's own "
               "log (convolutions, transposed convolutions, layout reorders; null where the log is not "
               "available or the scorer runs no oneDNN primitive, as the batch-last students); "
               "onednn_ms_per_call: their sum.", cfg, results=[])
    texts = []
    for threads in cfg.threads:
        set_threads(threads)
        for ds in cfg.score_datasets:
            report, _, gans = _scoring_models(ds)
            channels = report["in_channels"]
            for who, gan in gans.items():
                if who == "teacher" and ds == "fmnist":
                    continue  # the same 1-channel teacher as mnist
                widths, macs = gan.generator.widths, report[who]["flops"]
                scorer = to_torchscript(gan, channels)
                x = random_images(batch, channels, seed=7)
                best = None
                with torch.inference_mode():
                    for _ in range(max(2, cfg.budget.warmup)):
                        scorer(x)
                    for _ in range(tries):
                        with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                            for _ in range(calls):
                                scorer(x)
                        ops = prof.key_averages(group_by_input_shape=True)
                        total = sum(k.self_cpu_time_total for k in ops) / 1e3 / calls
                        if best is None or total < best[0]:
                            best = (total, ops)
                    primitives = onednn_primitive_times(lambda: scorer(x))
                total, ops = best
                top = sorted(ops, key=lambda k: k.self_cpu_time_total, reverse=True)[:12]
                top_ops = [{"op": k.key, "input_shapes": [list(sh) for sh in k.input_shapes if sh],
                            "self_ms_per_call": k.self_cpu_time_total / 1e3 / calls,
                            "self_pct": 100 * k.self_cpu_time_total / 1e3 / calls / total,
                            "calls_per_call": k.count / calls} for k in top]
                entry = {"threads": threads, "dataset": ds, "model": who, "widths": list(widths), "batch": batch,
                         "self_ms_per_call": total, "macs_per_image": macs,
                         "macs_per_s": macs * batch / (total / 1e3), "top_ops": top_ops,
                         "onednn_primitives": primitives,
                         "onednn_ms_per_call": sum(q["ms"] for q in primitives) if primitives else None}
                doc["results"].append(entry)
                texts.append(table(
                    ["op", "input shapes", "self ms/call", "self %", "n"],
                    [[o["op"], " ".join("x".join(map(str, sh)) for sh in o["input_shapes"][:2]),
                      o["self_ms_per_call"], f"{o['self_pct']:.1f}%", f"{o['calls_per_call']:g}"] for o in top_ops],
                    title=f"Exported scorer profile: {ds} {who} {'-'.join(map(str, widths))}, batch {batch}, "
                          f"{threads} thread(s): {total:.2f} ms/call, {entry['macs_per_s'] / 1e9:.1f} G multiply-adds/s"))
                if primitives:
                    texts[-1] += "\n" + table(
                        ["oneDNN primitive", "implementation", "problem", "least ms"],
                        [[q["kind"], q["impl"], q["problem"], q["ms"]] for q in primitives],
                        title=f"oneDNN's own times: {entry['onednn_ms_per_call']:.2f} ms of the {total:.2f} ms call")
    _finish(doc)
    return doc, "\n\n".join(texts)


# --- 7. switches: channels_last and torch.compile -------------------------------------------------------------------


def _compile_models(models: Models) -> Models:
    for gan in (models.teacher, models.student):
        gan.generator = torch.compile(gan.generator)
        gan.discriminator = torch.compile(gan.discriminator)
    return models


def _try_first_call(fn, n: int = 1) -> tuple[float | None, str | None]:
    start = time.perf_counter()
    try:
        fn(n)
    except Exception as exc:  # noqa: BLE001 - report any failure of a switch as 'unsupported'
        return None, f"unsupported: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    return time.perf_counter() - start, None


def switches(cfg: Config) -> tuple[dict, str]:
    batch = cfg.teacher_batch
    doc = _doc("switches", f"channels_last and torch.compile vs eager, alternately measured, per training dataset: "
               f"teacher, student-alone and KDGAN-2 training steps (batch {batch}) and scoring at batch 256 (teacher "
               "and student). 'channels_last': every network channels-last; 'channels_last_auto': only the networks "
               "the library's channels_last='auto' picks (widths all >= 8), measured where that differs from all and "
               "from none. A switch that fails is reported as 'unsupported' with its error.", cfg, results=[])
    rows = []
    for threads in cfg.threads:
        set_threads(threads)
        for ds in cfg.train_datasets:
            base = build_models(ds)
            auto = base.auto_channels_last()
            # training
            for stage in ("teacher", "student-alone", "KDGAN-2"):
                used = {"teacher": ("teacher",), "student-alone": ("student",)}.get(stage, ("teacher", "student"))
                auto_used = tuple(w for w in auto if w in used)
                variants = (["eager"] + (["channels_last"] if cfg.channels_last else [])
                            + (["channels_last_auto"] if cfg.channels_last and 0 < len(auto_used) < len(used) else [])
                            + (["compile"] if cfg.compile else []))
                contenders, notes = {}, {}
                for v in variants:
                    models = base.copy(channels_last={"channels_last": True, "channels_last_auto": auto}.get(v, False))
                    if v == "compile":
                        models = _compile_models(models)
                    source = BatchSource(base.channels, batch)  # standard-layout images, as the library feeds them
                    fn = engine_runner(models, stage, source)
                    first, err = _try_first_call(fn)
                    notes[v] = {"first_call_s": first, "error": err}
                    if err is None:
                        contenders[v] = fn
                    cfg.log(f"  switches {ds} train {stage} {v}: first call "
                            f"{first if first is None else round(first, 2)} s{' ' + err if err else ''}")
                m = alternate(contenders, cfg.budget) if contenders else {}
                for v in variants:
                    res = m.get(v)
                    speed = paired_ratio(m["eager"], res)["median"] if res and "eager" in m else None
                    doc["results"].append({"threads": threads, "workload": f"train {stage}", "dataset": ds,
                                           "batch": batch, "variant": v, "step_s": res, **notes[v],
                                           "channels_last_networks": list(auto_used) if v == "channels_last_auto"
                                           else None, "speedup_over_eager": speed})
                    rows.append([threads, ds, f"train {stage} b{batch}", v,
                                 res["median"] * MS if res else notes[v]["error"], f"{speed:.2f}x" if speed else "-",
                                 notes[v]["first_call_s"] or "-"])
            rows += _switches_scoring(cfg, base, doc, threads)
    _finish(doc)
    text = table(["thr", "dataset", "workload", "variant", "ms", "vs eager", "first call s"], rows,
                 title="Switches: channels_last / torch.compile vs eager")
    return doc, text


def _switches_scoring(cfg: Config, base: Models, doc: dict, threads: int) -> list[list]:
    """Scoring at batch 256: the eager nn.Module with each switch, and the exported model in both layouts."""
    hooks, ds, rows = base.hooks, base.dataset, []
    variants = (["eager"] + (["channels_last"] if cfg.channels_last else []) + (["compile"] if cfg.compile else [])
                + (["export_nchw", "export_channels_last"] if cfg.channels_last else []))
    for who in ("teacher", "student"):
        contenders, notes = {}, {}
        for v in variants:
            cl = v in ("channels_last", "export_channels_last")
            gan = getattr(base.copy(channels_last=(v == "channels_last")), who)
            _settle_bn(gan, base.channels, 1)
            x = random_images(256, base.channels, seed=7, channels_last=cl)
            score: Callable[[torch.Tensor], Any] = lambda x, gan=gan: hooks.score(gan, x)  # noqa: E731
            if v == "compile":
                gan.generator = torch.compile(gan.generator)
            elif v.startswith("export_"):
                from gankd_ganomaly.deploy.export import to_torchscript

                score = to_torchscript(gan, base.channels, layout="channels_last" if cl else "standard")

            def make(score=score, x=x):
                def run(n: int) -> None:
                    with torch.inference_mode():
                        for _ in range(n):
                            score(x)
                return run
            fn = make()
            first, err = _try_first_call(fn)
            notes[v] = {"first_call_s": first, "error": err}
            if err is None:
                contenders[v] = fn
        m = alternate(contenders, cfg.budget) if contenders else {}
        for v in variants:
            res = m.get(v)
            speed = paired_ratio(m["eager"], res)["median"] if res and "eager" in m else None
            doc["results"].append({"threads": threads, "workload": f"score {who}", "dataset": ds, "batch": 256,
                                   "variant": v, "call_s": res, **notes[v], "speedup_over_eager": speed})
            rows.append([threads, ds, f"score {who} b256", v, res["median"] * MS if res else notes[v]["error"],
                         f"{speed:.2f}x" if speed else "-", notes[v]["first_call_s"] or "-"])
    return rows


SECTIONS: dict[str, Callable[[Config], tuple[dict, str]]] = {
    "peak": peak,
    "train_throughput": train_throughput,
    "engine_overhead": engine_overhead,
    "kdgan2_cost": kdgan2_cost,
    "scoring": scoring,
    "profile": profile,
    "scoring_profile": scoring_profile,
    "switches": switches,
}


def headline(docs: dict[str, dict]) -> tuple[dict, str]:
    """The headline acceptance figures, collected from the sections that ran."""
    checks: list[dict] = []
    if "engine_overhead" in docs:
        for r in docs["engine_overhead"]["results"]:
            checks.append({"check": f"engine/bare ratio >= 0.95, {r['stage']} {r['dataset']} b{r['batch']} "
                                    f"t{r['threads']}", "value": round(r["ratio_engine_over_bare"]["median"], 3),
                           "passes": r["passes_0.95"]})
    if "kdgan2_cost" in docs:
        for r in docs["kdgan2_cost"]["results"]:
            checks.append({"check": f"KDGAN-2 <= student-alone + 1.2 x teacher fwd, {r['dataset']} b{r['batch']} "
                                    f"t{r['threads']}",
                           "value": f"{r['kdgan2_s'] * MS:.1f} ms <= {r['bound_s'] * MS:.1f} ms "
                                    f"(on min times: {'yes' if r['passes_on_min_times'] else 'no'})",
                           "passes": r["passes"]})
    if "scoring" in docs:
        need = {"cifar10": 15.0, "mnist": 50.0, "fmnist": 50.0}
        for r in docs["scoring"]["results"]:
            if r["batch"] == 256 and r["dataset"] in need:
                checks.append({"check": f"scoring speedup >= {need[r['dataset']]:g}x, {r['dataset']} {r['variant']} "
                                        f"b256 t{r['threads']}", "value": _ratio_text(r["speedup"]),
                               "passes": r["speedup"]["median"] >= need[r["dataset"]]})
    rows = [[c["check"], c["value"], "yes" if c["passes"] else "NO"] for c in checks]
    text = table(["check", "value", "passes"], rows, title="Headline checks")
    out: dict[str, Any] = {"checks": checks}
    if "train_throughput" in docs:  # the training headline: images/s at the largest batch, per thread count
        res = docs["train_throughput"]["results"]
        batch = max(r["batch"] for r in res)
        threads = sorted({r["threads"] for r in res})
        datasets = list(dict.fromkeys(r["dataset"] for r in res))
        head = [{"dataset": r["dataset"], "stage": r["stage"], "threads": r["threads"], "batch": batch,
                 "images_per_s": r["images_per_s"]} for r in res if r["batch"] == batch]
        out["train_throughput_headline"] = head
        trows = []
        for stage in STAGES:
            row = [stage]
            for ds in datasets:
                for t in threads:
                    hit = [h["images_per_s"] for h in head
                           if (h["dataset"], h["stage"], h["threads"]) == (ds, stage, t)]
                    row.append(hit[0] if hit else "-")
            trows.append(row)
        text = table(["stage"] + [f"{ds} t{t}" for ds in datasets for t in threads], trows,
                     title=f"Training throughput headline, images/s at batch {batch} (t = threads)") + "\n\n" + text
    return out, text

