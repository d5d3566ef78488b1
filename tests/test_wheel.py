"""The package as a user gets it: build the sdist and the wheel, check them as PyPI would
(``twine check``), install the wheel into a fresh venv outside the checkout, and use it from
a folder that has no topology files: the bundled topologies by name, the node image's build
context from inside the installed package.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mptcpdock import __version__

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.packaging


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> str:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=out)
    return out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A fresh venv (no system site-packages) with the wheel installed; a work folder."""
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(venv)], cwd=venv)
    wheel = next(dist.glob("*.whl"))
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)], cwd=venv)
    work = tmp_path_factory.mktemp("work")  # no topologies/ here, no checkout above
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["MPTCPDOCK_STATE_DIR"] = str(work / "state")
    return {"venv": venv, "work": work, "env": env, "cli": str(venv / "bin" / "mptcpdock")}


def cli(installed: dict, *args: str) -> str:
    return _run([installed["cli"], *args], cwd=installed["work"], env=installed["env"])  # type: ignore[arg-type]


def test_sdist_and_wheel_pass_twine_check(dist: Path) -> None:
    files = sorted(str(path) for path in dist.iterdir())
    assert any(f.endswith(".whl") for f in files) and any(f.endswith(".tar.gz") for f in files), files
    output = _run([sys.executable, "-m", "twine", "check", "--strict", *files], cwd=dist)
    assert output.count("PASSED") == 2, output


def test_the_wheel_carries_the_image_context_and_every_bundled_topology(dist: Path) -> None:
    names = zipfile.ZipFile(next(dist.glob("*.whl"))).namelist()
    assert "mptcpdock/_bundled/images/node/Dockerfile" in names
    bundled = {name.removeprefix("mptcpdock/_bundled/topologies/") for name in names
               if name.startswith("mptcpdock/_bundled/topologies/")}
    in_repo = {path.relative_to(ROOT / "topologies").as_posix() for path in (ROOT / "topologies").rglob("*")
               if path.is_file() and "__pycache__" not in path.parts}
    assert bundled == in_repo  # the YAML files and what they read (traces/)
    metadata = zipfile.ZipFile(next(dist.glob("*.whl"))).read(f"mptcpdock-{__version__}.dist-info/METADATA").decode()
    for needed in ("Project-URL: Homepage", "Classifier: Topic :: System :: Networking", "Keywords: mptcp",
                   "License-Expression: GPL-2.0-only"):
        assert needed in metadata, needed


def test_the_installed_package_is_the_venvs_not_the_checkout(installed: dict) -> None:
    where = _run([str(installed["venv"] / "bin" / "python"), "-c",  # type: ignore[operator]
                  "import mptcpdock; print(mptcpdock.__file__); print(mptcpdock.bundled_dir('topologies'))"],
                 cwd=installed["work"], env=installed["env"])  # type: ignore[arg-type]
    module, topologies = where.split()
    assert module.startswith(str(installed["venv"])) and topologies.startswith(str(installed["venv"]))
    assert str(ROOT) not in where


def test_examples_lists_the_bundled_topologies(installed: dict) -> None:
    listing = cli(installed, "examples")
    assert listing.splitlines()[0].split() == ["name", "file", "description"]
    assert re.search(r"^ex1 +mptcp-default-configuration\.yaml +NeST example 1:", listing, re.MULTILINE), listing
    document = json.loads(cli(installed, "examples", "--json"))
    assert document["schema"] == 1
    names = {item["name"] for item in document["topologies"]}
    assert {"ex1", "ex2", "ex3", "ex3auto"} <= names
    assert all(item["path"].startswith(str(installed["venv"])) for item in document["topologies"])


def test_plan_ex1_from_the_wheel(installed: dict) -> None:
    by_name = cli(installed, "plan", "ex1")
    assert "ip addr add 10.0.0.1/24 dev eth1a" in by_name
    assert "ip mptcp endpoint add 192.168.11.2 dev eth2b signal" in by_name
    # README's commands name the repository's paths; from a wheel they find the bundled file
    assert cli(installed, "plan", "topologies/mptcp-default-configuration.yaml") == by_name


def test_image_build_plans_from_the_packaged_context(installed: dict) -> None:
    document = json.loads(cli(installed, "image", "build", "--dry-run", "--json"))
    assert document["schema"] == 1 and document["built"] is False
    assert document["context"].startswith(str(installed["venv"])), document["context"]
    assert document["context"].endswith("mptcpdock/_bundled/images/node")
    assert document["files"] == ["Dockerfile", "bookworm.args", "install-packages.sh", "mesh/mesh.c"]
    assert Path(document["context"], "Dockerfile").read_text() == (ROOT / "images/node/Dockerfile").read_text()


@pytest.mark.docker
def test_image_build_from_the_wheel(installed: dict) -> None:
    """The real build, from the installed package's context (Docker's cache makes it quick
    where the image was built before)."""
    document = json.loads(cli(installed, "image", "build", "--json"))
    assert document["built"] is True and document["image"]["tag"] == document["tag"]
    assert document["image"]["packages"]["iperf3"], document["image"]["packages"]
