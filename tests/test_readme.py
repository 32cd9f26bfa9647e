"""Every command in the bash blocks of README.md and docs/*.md runs as written, up to where it would start real work.

- Hydra entry points (launch/*.py): the overrides, split as a shell splits them, compose into the entry's config, and
  those of training and probing pass the launchers' value checks (files are not required to exist yet).
- launch/submit.py: each SLURM example runs through bash in `--dry-run`, its setup lines intact.
- argparse scripts (data/, benchmarks/): the script exists and defines every option the command uses.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from launch import config_check
from launch import train as train_launcher

REPO = Path(__file__).resolve().parents[1]

train_launcher.register_resolvers()
HYDRA_ENTRIES = {
    "launch/train.py": "train",
    "launch/probe.py": "probe",
    "launch/eval_world_model.py": "eval_world_model",
    "launch/plan.py": "plan",
    "launch/train_energy_head.py": "energy_head",
}
CHECKED = {"train", "probe"}  # configs whose values the launcher checks before Hydra starts


PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def readme_commands() -> list[str]:
    """Each command line of the bash blocks of README.md and docs/ (continuations joined, `&&` chains split)."""
    text = "\n".join(page.read_text() for page in PAGES)
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                if part.strip() and not part.strip().startswith("#"):
                    commands.append(part.strip())
    return commands


COMMANDS = readme_commands()


def split(command: str) -> list[str]:
    return shlex.split(command, comments=True)


def hydra_commands() -> list[str]:
    return [c for c in COMMANDS if split(c)[:2][-1] in HYDRA_ENTRIES]


def test_readme_has_the_commands_this_test_expects():
    assert len(hydra_commands()) >= 20
    assert any("launch/submit.py" in c for c in COMMANDS)


@pytest.mark.parametrize("command", hydra_commands())
def test_hydra_command_composes_and_passes_the_checks(command):
    argv = split(command)[2:]
    config_name = HYDRA_ENTRIES[split(command)[1]]
    if "--config-name" in argv:
        i = argv.index("--config-name")
        config_name, argv = argv[i + 1], argv[:i] + argv[i + 2 :]
    multirun = "-m" in argv
    for flag in ("--cfg", "-c", "--package", "-p"):  # Hydra flags that take a value
        if flag in argv:
            i = argv.index(flag)
            argv = argv[:i] + argv[i + 2 :]
    overrides = [a for a in argv if not a.startswith("-")]
    if multirun:  # a sweep: every job's config composes (first and last value of each swept key)
        overrides = [re.sub(r"=([^=,]+),.*", r"=\1", o) if "," in o and "[" not in o else o for o in overrides]
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=multirun)
    if config_name in CHECKED:
        config_check.check_config(cfg, files=False)


@pytest.mark.parametrize("command", [c for c in COMMANDS if "launch/submit.py" in c])
def test_slurm_example_runs_as_written_in_dry_run(command):
    dry = command.replace("launch/submit.py", "launch/submit.py --dry-run", 1)
    dry = dry.replace("python ", f"{sys.executable} ", 1)
    proc = subprocess.run(["bash", "-c", dry], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    if "source ~/venvs/jepa/bin/activate" in command:
        assert "source ~/venvs/jepa/bin/activate" in lines, proc.stdout
    nodes = re.search(r"launcher.nodes=(\d+)", command)
    assert f"#SBATCH --nodes={nodes.group(1) if nodes else 1}" in lines, proc.stdout
    assert lines[-1].startswith("exec srun "), proc.stdout


def argparse_commands() -> list[str]:
    return [c for c in COMMANDS if split(c)[0] == "python" and split(c)[1].startswith(("data/", "benchmarks/"))]


@pytest.mark.parametrize("command", argparse_commands())
def test_script_command_uses_existing_options(command):
    argv = split(command)
    script = REPO / argv[1]
    assert script.is_file(), script
    source = script.read_text()
    for option in (a.split("=")[0] for a in argv[2:] if a.startswith("--")):
        assert f'"{option}"' in source, f"{argv[1]} has no option {option}"


def test_install_extras_exist():
    pyproject = (REPO / "pyproject.toml").read_text()
    for command in COMMANDS:
        for extras in re.findall(r"pip install -e \"?\.\[([\w,]+)\]", command):
            for extra in extras.split(","):
                assert re.search(rf"^{extra} = \[", pyproject, re.M), extra
