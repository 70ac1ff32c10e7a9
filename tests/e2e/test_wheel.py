"""The package as a user installs it from a wheel (not editable, not from the source tree): the wheel carries conf/,
and `python -m framework +experiment=smoke_cpu` trains from any directory."""

import json
import subprocess
import sys

import pytest

from helpers import REPO, clean_env

pytestmark = pytest.mark.slow


def test_wheel_installed_elsewhere_runs_smoke_cpu_from_another_directory(tmp_path):
    wheels, site, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", REPO, "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("framework-*.whl")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    assert (site / "framework" / "conf" / "experiment" / "smoke_cpu.yaml").is_file()  # a file, not a link

    env = clean_env(PYTHONPATH=str(site))  # the dependencies are this environment's; framework is the wheel's
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import framework, hydra_plugins.max_seqlen_sweeper as s; print(framework.__file__); print(s.__file__)",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert where.returncode == 0, where.stderr[-3000:]
    assert all(line.startswith(str(site)) for line in where.stdout.split()), where.stdout

    run = subprocess.run(
        [sys.executable, "-m", "framework", "+experiment=smoke_cpu", "train.max_steps=2"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    (result,) = (elsewhere / "outputs").glob("*/*/result.json")  # Hydra's default run directory, under the cwd
    rec = json.loads(result.read_text())
    assert rec["status"] == "ok" and rec["steps"] == 2, rec
