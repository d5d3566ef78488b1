"""``mptcpdock image build|save|load``: the node image."""

from __future__ import annotations

import click

from .. import NODE_IMAGE
from ..runtime.image import build_node_image, load_image, save_image
from .console import err, out


@click.group("image")
def image() -> None:
    """Build, save and load the node image."""


@image.command("build")
@click.option("--tag", default=None, help="Image tag (default: the node image of this version).")
@click.option("--create-base", type=click.Choice(["auto", "always", "never"]), default="auto",
              help="Create debian:bookworm-slim locally (debootstrap) when it cannot be pulled.")
def image_build(tag: str | None, create_base: str) -> None:
    build_node_image(None, tag or NODE_IMAGE, create_base=create_base, log=err.print)  # type: ignore[arg-type]
    out.print(f"built {tag or NODE_IMAGE}")


@image.command("save")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--tag", default=None)
def image_save(path: str, tag: str | None) -> None:
    out.print(f"saved to {save_image(None, tag or NODE_IMAGE, path)}")


@image.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def image_load(path: str) -> None:
    for loaded in load_image(None, path):
        out.print(f"loaded {', '.join(loaded.tags) or loaded.id}")
