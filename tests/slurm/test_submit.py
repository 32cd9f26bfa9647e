"""launch/submit.py renders the sbatch script from config; trainer presets and the submitit launcher compose."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from launch import submit
from launch import train as train_launcher

REPO = Path(__file__).resolve().parents[2]

train_launcher.register_resolvers()


def compose_train(*overrides: str, return_hydra_config: bool = False):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=return_hydra_config)


def test_dry_run_renders_multi_node_script(capsys):
    rc = submit.main(
        ["--dry-run", "+experiment=vjepa2_large", "trainer=ddp", "launcher.nodes=2", "launcher.gpus_per_node=8"]
        + ["launcher.partition=gpu", "launcher.account=proj", "launcher.extra_sbatch=[--exclusive]"]
        + ["launcher.setup=[module load cuda]"]
    )
    script = capsys.readouterr().out
    assert rc == 0
    lines = script.splitlines()
    for option in ["--nodes=2", "--ntasks-per-node=8", "--gpus-per-node=8", "--partition=gpu", "--account=proj"]:
        assert f"#SBATCH {option}" in lines, script
    assert "#SBATCH --signal=USR1@180" in lines and "#SBATCH --requeue" in lines and "#SBATCH --exclusive" in lines
    assert "#SBATCH --open-mode=append" in lines
    assert not any(line.startswith("#SBATCH --ntasks=") for line in lines)  # Lightning rejects plain --ntasks
    assert lines.index("module load cuda") < len(lines) - 1
    last = lines[-1]
    assert last.startswith("exec srun --kill-on-bad-exit=1 ") and "launch/train.py +experiment=vjepa2_large" in last
    assert "run_name=vjepa2_large-" in last  # pinned at submission: same run directory on every rank and requeue


def test_one_task_per_node_without_gpus(capsys):
    assert submit.main(["--dry-run", "trainer=ddp_cpu", "launcher.gpus_per_node=0", "run_name=x"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "#SBATCH --ntasks-per-node=1" in lines and not any("--gpus-per-node" in line for line in lines)
    assert "#SBATCH --job-name=jepa-x" in lines


def test_user_errors_are_one_line(capsys, monkeypatch, tmp_path):
    assert submit.main(["--dry-run", "+experiment=nope"]) == 2
    assert "experiment/nope" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    assert submit.main([f"paths.output_dir={tmp_path}", "run_name=x"]) == 2
    err = capsys.readouterr().err
    assert "sbatch not found" in err and "--dry-run" in err


@pytest.mark.parametrize("preset", ["default", "cpu", "gpu", "ddp", "ddp_cpu", "fsdp"])
def test_trainer_presets_instantiate(preset, monkeypatch):
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "4")
    monkeypatch.setenv("SLURM_NNODES", "3")
    cfg = compose_train(f"trainer={preset}")
    if preset in ("ddp", "ddp_cpu", "fsdp"):  # task counts follow the SLURM allocation
        assert (cfg.trainer.devices, cfg.trainer.num_nodes) == (4, 3)
    strategy = instantiate(cfg.trainer.get("strategy"))
    if preset == "fsdp":
        from jepa.models.vit import Block

        assert Block in strategy.kwargs["auto_wrap_policy"]._module_classes
        assert strategy._state_dict_type == "full"


@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
    reason="hydra-submitit-launcher not installed",
)
def test_submitit_launcher_composes():
    cfg = compose_train("hydra/launcher=jepa_slurm", "hydra.launcher.nodes=2", return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.nodes == 2 and launcher.tasks_per_node == launcher.gpus_per_node == 8
    assert launcher.max_num_timeout == 0 and launcher.additional_parameters.requeue
