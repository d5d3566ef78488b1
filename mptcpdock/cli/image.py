"""``mptcpdock image build|info|save|load``: the node image."""

from __future__ import annotations

from typing import Any

import click

from .. import NODE_IMAGE
from ..runtime.image import SUITES, ImageError, build_node_image, build_plan, image_info, load_image, save_image
from .console import err, out, print_json

#: Version of the ``image build --json`` / ``image info --json`` documents (docs/json.md).
SCHEMA = 1

JSON_HELP = "One JSON document on stdout (docs/json.md); build output on stderr."


@click.group("image")
def image() -> None:
    """Build, inspect, save and load the node image."""


@image.command("build")
@click.option("--tag", default=None, help="Image tag (default: the node image of this version).")
@click.option("--create-base", type=click.Choice(["auto", "always", "never"]), default="auto",
              help="Create the Debian base image (debian:SUITE-slim) locally with debootstrap when it "
                   "cannot be pulled.")
@click.option("--suite", type=click.Choice(list(SUITES)), default=SUITES[0], show_default=True,
              help="The Debian release to build on (bookworm: the older variant, iproute2 6.1).")
@click.option("--dry-run", is_flag=True, help="Say what would be built, from where, and stop.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def image_build(tag: str | None, create_base: str, suite: str, dry_run: bool, as_json: bool) -> None:
    """Build the node image from the build context that ships with mptcpdock."""
    tag = tag or (NODE_IMAGE if suite == SUITES[0] else f"{NODE_IMAGE}-{suite}")
    planned = build_plan(tag, suite=suite)
    if dry_run:
        if as_json:
            print_json({"schema": SCHEMA, "built": False, **planned})
            return
        base = {True: "present", False: f"missing: would be {'created' if create_base == 'always' else 'pulled'}"
                + (", or created with debootstrap" if create_base == "auto" else ""),
                None: "unknown (Docker does not answer)"}[planned["base_present"]]
        out.print(f"would build {tag} from {planned['context']} ({', '.join(planned['files'])})\n"
                  f"  base image {planned['base']}: {base}\n"
                  "  build arguments: " + ", ".join(f"{k}={v}" for k, v in planned["buildargs"].items()))
        return
    image = build_node_image(None, tag, create_base=create_base, suite=suite, log=err.print)  # type: ignore[arg-type]
    if as_json:
        print_json({"schema": SCHEMA, "built": True, **planned, "image": _info(tag)})
        return
    out.print(f"built {tag} ({(image.attrs.get('Size') or 0) / 1e6:.1f} MB, Debian {suite})")


@image.command("info")
@click.option("--tag", default=None, help="Image tag (default: the node image of this version).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout (docs/json.md).")
def image_info_command(tag: str | None, as_json: bool) -> None:
    """What the Docker engine has as the node image: id, digest, pinned packages."""
    tag = tag or NODE_IMAGE
    info = _info(tag)
    if as_json:
        print_json({"schema": SCHEMA, "tag": tag, "present": info is not None, "image": info})
        return
    if info is None:
        raise ImageError(f"no image {tag} on the Docker engine (fix: 'mptcpdock image build', or "
                         "'mptcpdock image load FILE')")
    out.print(f"{tag}\n  id       {info['id']}\n  digest   {info['digest']}\n  created  {info['created']}")
    for name, version in sorted(info["packages"].items()):
        out.print(f"  {name:<20} {version}")


def _info(tag: str) -> dict[str, Any] | None:
    try:
        return image_info(None, tag)
    except ImageError:
        return None


@image.command("save")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--tag", default=None)
def image_save(path: str, tag: str | None) -> None:
    """Write the node image to a tarball (as 'docker save')."""
    out.print(f"saved to {save_image(None, tag or NODE_IMAGE, path)}")


@image.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def image_load(path: str) -> None:
    """Load images from a tarball (as 'docker load')."""
    for loaded in load_image(None, path):
        out.print(f"loaded {', '.join(loaded.tags) or loaded.id}")
