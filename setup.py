"""The one build step pyproject.toml cannot say: the wheel carries the bundled data.

The node image's build context (``images/``) and the bundled topologies (``topologies/``)
live at the top of the repository, the one copy that a checkout, an editable install and
the controller image read. Building a wheel copies both into the package, as
``mptcpdock/_bundled/images`` and ``mptcpdock/_bundled/topologies``, where
:func:`mptcpdock.bundled_dir` finds them (``importlib.resources``); the sdist carries them
at the top, as in the repository (MANIFEST.in).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = ("images", "topologies")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


class BuildWithBundledData(build_py):
    """build_py, then the top-level data folders copied into the built package."""

    def run(self) -> None:
        super().run()
        for name in BUNDLED:
            source = ROOT / name
            if not source.is_dir():
                raise SystemExit(f"setup.py: {source} is missing; the package cannot be built without it")
            target = Path(self.build_lib) / "mptcpdock" / "_bundled" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, ignore=SKIP)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        for name in BUNDLED:
            root = Path(self.build_lib) / "mptcpdock" / "_bundled" / name
            outputs += [str(path) for path in sorted(root.rglob("*")) if path.is_file()]
        return outputs


setup(cmdclass={"build_py": BuildWithBundledData})
