"""Submit a training run to SLURM: `python launch/submit.py [--dry-run] +experiment=NAME [key=value ...]`.

Composes the same config as `launch/train.py` (so a wrong override fails here, not in the queue), renders an sbatch
script from its `launcher` group (one task per GPU, `srun` launch, USR1 before the time limit, requeue) and submits
it. The run name is fixed at submission, so every rank and every requeue of the job uses the same run directory
and resumes from its `last.ckpt`. Example, 2 nodes x 8 GPUs:

    python launch/submit.py +experiment=vjepa2_large trainer=ddp launcher.nodes=2 launcher.gpus_per_node=8 \
        launcher.partition=gpu launcher.time=72:00:00 run_name=vitl-2x8
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig

from launch import train as train_launcher  # same resolvers and PROJECT_ROOT as the training entry point
from launch.config_check import ConfigError, check_config

ROOT = Path(__file__).resolve().parents[1]


def sbatch_options(launcher: DictConfig) -> list[str]:
    """The `#SBATCH` options of a launcher config, in sbatch's own spelling."""
    tasks = launcher.tasks_per_node or max(int(launcher.gpus_per_node or 0), 1)
    options = {
        "job-name": launcher.job_name,
        "nodes": launcher.nodes,
        "ntasks-per-node": tasks,  # never --ntasks: Lightning requires --ntasks-per-node (SLURM_LOCAL.md item 8)
        "gpus-per-node": launcher.gpus_per_node or None,  # not --gpus-per-task: "invalid device ordinal" (PITFALLS 9)
        "cpus-per-task": launcher.cpus_per_task,
        "mem": launcher.mem,
        "time": launcher.time,
        "partition": launcher.partition,
        "account": launcher.account,
        "qos": launcher.qos,
        "constraint": launcher.constraint,
        # no "B:": the signal goes to the srun'd training tasks, where the handler lives (SLURM_LOCAL.md item 3)
        "signal": f"{launcher.signal}@{launcher.signal_delay_s}" if launcher.signal else None,
        "output": launcher.output,
        "open-mode": "append",  # one log across requeues
    }
    lines = [f"--{key}={value}" for key, value in options.items() if value is not None]
    return [*lines, "--requeue", *launcher.extra_sbatch]


def render_script(cfg: DictConfig, overrides: list[str]) -> str:
    """The sbatch script that runs `launch/train.py` with `overrides` on every task of the allocation."""
    launcher = cfg.launcher
    python = launcher.python or sys.executable
    command = [
        "srun",
        *launcher.srun_args,
        python,
        str(ROOT / "launch" / "train.py"),
        *overrides,
    ]
    lines = [
        "#!/bin/bash",
        *(f"#SBATCH {option}" for option in sbatch_options(launcher)),
        f"# rendered by launch/submit.py at {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"cd {shlex.quote(str(ROOT))}",
        f"export PROJECT_ROOT={shlex.quote(str(ROOT))} PYTHONUNBUFFERED=1",
        *launcher.setup,
        'echo "job $SLURM_JOB_ID restart ${SLURM_RESTART_COUNT:-0} on $SLURM_JOB_NODELIST"',
        # exec: srun's exit code is the job's, and a USR1 sent to the batch shell reaches the tasks
        "exec " + " ".join(shlex.quote(str(part)) for part in command),
    ]
    return "\n".join(lines) + "\n"


def with_run_name(overrides: list[str]) -> list[str]:
    """Pin the run name now (a requeued job, and every rank, must resolve the same run directory)."""
    if any(o.lstrip("+~").startswith("run_name=") for o in overrides):
        return overrides
    experiment = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("experiment=")), "run")
    return [*overrides, f"run_name={experiment}-{time.strftime('%Y%m%d-%H%M%S')}"]


def submit(script: str, run_dir: Path) -> str:
    """Write the script into the run directory and `sbatch` it; returns the job id."""
    if shutil.which("sbatch") is None:
        raise RuntimeError("sbatch not found: submit from a SLURM login node, or use --dry-run to see the script")
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"submit-{time.strftime('%Y%m%d-%H%M%S')}.sbatch"
    path.write_text(script)
    result = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"sbatch {path} failed: {result.stderr.strip()}")
    return result.stdout.strip().split(";")[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="print the sbatch script instead of submitting it")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for launch/train.py")
    args = parser.parse_args(argv)
    overrides = with_run_name(args.overrides)
    train_launcher.register_resolvers()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        # types and ranges now, not in the queue; files may live only on the cluster's file system
        check_config(cfg, files=False)
        script = render_script(cfg, overrides)
        if args.dry_run:
            print(script, end="")
            return 0
        job_id = submit(script, Path(cfg.paths.run_dir))
    except (HydraException, RuntimeError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"submitted job {job_id}: run directory {cfg.paths.run_dir}, log {cfg.launcher.output}", file=sys.stderr)
    print(job_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
