"""DDP under torchrun: 2 processes (gloo, CPU) give the weights one process gets on the global batch."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

WORKER = Path(__file__).with_name("ddp_worker.py")
ROOT = Path(__file__).resolve().parents[1]


def run_worker(out_dir, mode, nproc):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        cmd = [sys.executable, str(WORKER), str(out_dir), mode]
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--nnodes", "1",
               "--master_addr", "127.0.0.1", "--master_port", str(port), str(WORKER), str(out_dir), mode]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_two_process_ddp_equals_one_process_on_the_global_batch(tmp_path):
    run_worker(tmp_path, "mlp", 1)
    run_worker(tmp_path, "mlp", 2)
    single = torch.load(tmp_path / "mlp_world1_rank0.pt")
    ranks = [torch.load(tmp_path / f"mlp_world2_rank{r}.pt") for r in (0, 1)]
    for who in ("teacher", "student"):
        for k, v in single[who].items():
            for r, ranked in enumerate(ranks):
                assert torch.allclose(ranked[who][k], v, atol=1e-6, rtol=1e-5), f"rank {r} {who}.{k}"


def test_ganomaly_schedule_under_torchrun_keeps_ranks_identical(tmp_path):
    """GANomaly (batch norm) P-KDGAN-II-24 on digits shards; ranks start from different inits."""
    run_worker(tmp_path, "ganomaly", 2)
    r0, r1 = (torch.load(tmp_path / f"ganomaly_world2_rank{r}.pt") for r in (0, 1))
    assert (tmp_path / "ganomaly_world2_history_from_rank0.json").exists()
    assert not (tmp_path / "ganomaly_world2_history_from_rank1.json").exists()
    for who in ("teacher", "student"):
        for k, v in r0[who].items():
            if "running_" in k or "num_batches" in k:
                continue  # batch-norm statistics are per process on CPU (no SyncBatchNorm for gloo)
            assert torch.equal(r1[who][k], v), f"{who}.{k} differs between ranks"
