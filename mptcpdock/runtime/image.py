"""Build, find, save and load the node image that every mptcpdock node runs.

The node image is built from ``images/node/Dockerfile`` (``FROM debian:trixie-slim``; the
bookworm variant with ``suite="bookworm"``, see :data:`SUITES`). Where no registry is
reachable the base image cannot be pulled, so it is made locally: ``debootstrap
--variant=minbase SUITE`` into a cache directory, then imported into Docker under the base
image's name (see :func:`create_base_image`).

Package versions are pinned per suite (``images/node/SUITE.args``: the Dockerfile's build
arguments) and the build survives a pin Debian has replaced (a point release drops the old
version): ``install-packages.sh`` then installs the suite's current version and says so, and
:func:`build_node_image` labels the image with what was installed
(``io.mptcpdock.pkg.<package>``) and the replaced pins (``io.mptcpdock.pin-fallback``).

The build context (``images/node``) ships with the package: :func:`mptcpdock.bundled_dir`
finds it inside an installed wheel and at the top of a source checkout or an editable install.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from docker import DockerClient
from docker.errors import DockerException, ImageNotFound
from docker.models.images import Image
from docker.utils import parse_repository_tag

from .. import NODE_IMAGE, __version__, bundled_dir
from ..errors import MptcpdockError
from . import docker_api

#: Debian suites the node image can be built on; the first is the default.
SUITES = ("trixie", "bookworm")
SUITE = SUITES[0]
BASE_IMAGE = f"debian:{SUITE}-slim"
MIRROR = "http://deb.debian.org/debian"
STAMP_NAME = ".mptcpdock-rootfs-complete"
PKG_LABEL_PREFIX = "io.mptcpdock.pkg."
NODE_LABEL = "io.mptcpdock.node-image"
#: The node image's layout version (NODE_LABEL's value): 2 since the trixie image (mptcpd,
#: the recorded package list, io.mptcpdock.suite). An image with an older value is not used.
NODE_LAYOUT = "2"
SUITE_LABEL = "io.mptcpdock.suite"
FALLBACK_LABEL = "io.mptcpdock.pin-fallback"
#: What install-packages.sh writes in the image: one 'package version' line per package.
INSTALLED_FILE = "/usr/share/mptcpdock/packages"
#: ... and one 'package pinned installed' line per pin it replaced with the suite's version.
FALLBACK_FILE = "/usr/share/mptcpdock/pin-fallback"

Log = Callable[[str], None]
CreateBase = Literal["auto", "always", "never"]

_CHUNK = 1 << 20
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOG_TAIL = 25

# What the official debian:SUITE-slim images configure, so that a locally made base
# behaves like the pulled one: the same apt sources and no docs/man pages/locales.
def _apt_sources(suite: str) -> str:
    return f"""\
Types: deb
URIs: {MIRROR}
Suites: {suite} {suite}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: {suite}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def base_image_for(suite: str) -> str:
    """The official slim image of ``suite`` (what the node image's FROM names)."""
    return f"debian:{suite}-slim"


def suite_of(base: str) -> str | None:
    """'debian:trixie-slim' -> 'trixie'; None for a base that is not one of :data:`SUITES`."""
    _, tag = parse_repository_tag(base)
    name = (tag or "").removesuffix("-slim")
    return name if name in SUITES else None
_DPKG_SLIM = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""
_IMPORT_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["bash"]',
]


class ImageError(MptcpdockError):
    """The node image (or its base image) cannot be built, found, saved or loaded."""


def _client(client: DockerClient | None) -> DockerClient:
    """``client``, or the shared one of the engine mptcpdock talks to (--context, DOCKER_HOST, ...)."""
    return client if client is not None else docker_api.client()


def _get_image(client: DockerClient, name: str) -> Image | None:
    try:
        return client.images.get(name)
    except ImageNotFound:
        return None


def node_context_dir() -> Path:
    """The build context of the node image (the directory holding its Dockerfile)."""
    try:
        context = bundled_dir("images") / "node"
    except FileNotFoundError as exc:
        raise ImageError(f"{exc} (the node image's build context)") from None
    if not (context / "Dockerfile").is_file():
        raise ImageError(f"the node image's Dockerfile is not at {context / 'Dockerfile'} "
                         "(fix: reinstall mptcpdock, or pass context_dir)")
    return context


def default_rootfs_dir(suite: str = SUITE) -> Path:
    """Where the debootstrapped base root filesystem is cached."""
    if os.geteuid() == 0:
        cache = Path("/var/cache")
    else:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mptcpdock" / f"rootfs-{suite}"


def base_image_present(client: DockerClient | None = None, name: str = BASE_IMAGE) -> bool:
    """Whether Docker already has the base image ``name``."""
    return _get_image(_client(client), name) is not None


def pull_base_image(client: DockerClient | None = None, name: str = BASE_IMAGE, log: Log = print) -> bool:
    """Try to pull ``name`` from its registry; False (and a log line) when that fails."""
    repository, tag = parse_repository_tag(name)
    log(f"pulling {name}")
    try:
        _client(client).images.pull(repository, tag=tag or "latest")
    except DockerException as exc:
        log(f"cannot pull {name}: {_first_line(exc)}")
        return False
    return True


def create_base_image(
    client: DockerClient | None = None,
    name: str = BASE_IMAGE,
    rootfs_dir: str | os.PathLike[str] | None = None,
    log: Log = print,
    suite: str | None = None,
) -> str:
    """Make the Debian base image ``name`` locally and return its image id.

    Debootstraps a minbase ``suite`` root filesystem (default: the suite ``name`` names,
    e.g. trixie for debian:trixie-slim) into ``rootfs_dir`` (default
    :func:`default_rootfs_dir`), reusing it when a previous run finished it (a stamp file
    marks that), and imports it into Docker like ``tar -C DIR -c . | docker import - NAME``.
    Needs root and debootstrap.
    """
    client = _client(client)
    suite = suite or suite_of(name) or SUITE
    rootfs = Path(rootfs_dir) if rootfs_dir is not None else default_rootfs_dir(suite)
    if (rootfs / STAMP_NAME).is_file():
        log(f"reusing the root filesystem in {rootfs}")
    else:
        bootstrap_rootfs(rootfs, suite=suite, log=log)
    return _import_rootfs(client, rootfs, name, log)


def bootstrap_rootfs(target: Path, suite: str = SUITE, mirror: str = MIRROR, log: Log = print) -> None:
    """Debootstrap a minbase ``suite`` into ``target``, slim it down and stamp it complete."""
    _check_can_debootstrap(suite)
    _prepare_target(target)
    log(f"debootstrap --variant=minbase {suite} {target} (about half a minute)")
    _run_logged(["debootstrap", "--variant=minbase", suite, str(target), mirror], log)
    finish_rootfs(target, suite, mirror)


def finish_rootfs(target: Path, suite: str, mirror: str = MIRROR) -> None:
    """Configure a debootstrapped ``target`` like debian:SUITE-slim and stamp it complete."""
    _configure_rootfs(target, suite)
    stamp = f"{suite} {mirror} {datetime.now(timezone.utc).isoformat(timespec='seconds')}\n"
    (target / STAMP_NAME).write_text(stamp)


def _check_can_debootstrap(suite: str = SUITE) -> None:
    pull_hint = f"or `docker pull {base_image_for(suite)}` where a registry is reachable"
    if shutil.which("debootstrap") is None:
        raise ImageError(f"debootstrap is not installed (fix: `apt-get install debootstrap`, {pull_hint})")
    if os.geteuid() != 0:
        raise ImageError(f"making the base image with debootstrap needs root (fix: run as root, {pull_hint})")


def _prepare_target(target: Path) -> None:
    """Clear what an interrupted debootstrap left in ``target``; refuse any other content."""
    if not target.exists() or not any(target.iterdir()):
        target.mkdir(parents=True, exist_ok=True)
        return
    if not (target / "debootstrap").is_dir():
        raise ImageError(
            f"{target} is not empty and is not an unfinished debootstrap "
            "(fix: remove it or choose another rootfs directory)"
        )
    shutil.rmtree(target)
    target.mkdir(parents=True)


def _configure_rootfs(target: Path, suite: str = SUITE) -> None:
    """Configure apt and dpkg like debian:SUITE-slim and drop what that image leaves out."""
    (target / "etc/apt/sources.list").unlink(missing_ok=True)
    (target / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
    (target / "etc/apt/sources.list.d/debian.sources").write_text(_apt_sources(suite))
    (target / "etc/dpkg/dpkg.cfg.d/docker-slim").write_text(_DPKG_SLIM)
    share = target / "usr/share"
    doomed = [*share.glob("man/*"), *share.glob("info/*"), *share.glob("locale/*")]
    doomed += [p for d in share.glob("doc/*") if d.is_dir() and not d.is_symlink() for p in d.iterdir()]
    doomed += [*target.glob("var/cache/apt/archives/*.deb"), *target.glob("var/lib/apt/lists/*_*")]
    for path in doomed:
        if path.name not in ("copyright", "locale.alias"):
            _remove_path(path)


def _remove_path(path: Path) -> None:
    """Remove a file, symlink or directory tree inside a root filesystem, never following links."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _import_rootfs(client: DockerClient, rootfs: Path, name: str, log: Log) -> str:
    """Stream ``tar -C ROOTFS -c .`` into the engine's image import, tagged ``name``."""
    repository, tag = parse_repository_tag(name)
    log(f"importing {rootfs} as {name}")
    tar_cmd = ["tar", "-C", str(rootfs), "--numeric-owner", "--xattrs", f"--exclude=./{STAMP_NAME}", "-c", "."]
    with tempfile.TemporaryFile() as errors:
        with subprocess.Popen(tar_cmd, stdout=subprocess.PIPE, stderr=errors) as tar:
            assert tar.stdout is not None
            try:
                client.api.import_image(
                    src=_chunks(tar.stdout),
                    repository=repository,
                    tag=tag or "latest",
                    changes=_IMPORT_CHANGES,
                )
            except DockerException as exc:
                tar.kill()
                raise ImageError(f"docker import of {rootfs} as {name} failed: {_first_line(exc)}") from exc
        if tar.returncode != 0:
            _remove_quietly(client, name)
            errors.seek(0)
            raise ImageError(f"tar of {rootfs} failed: {errors.read().decode(errors='replace').strip()}")
    image = _get_image(client, name)
    if image is None:
        raise ImageError(f"docker import reported success but {name} is missing")
    return str(image.id)


def _remove_quietly(client: DockerClient, name: str) -> None:
    try:
        client.images.remove(name)
    except DockerException:
        pass


def _chunks(stream: Any) -> Iterator[bytes]:
    while chunk := stream.read(_CHUNK):
        yield chunk


def _run_logged(cmd: list[str], log: Log) -> None:
    """Run ``cmd``, passing each output line to ``log``; ImageError with the tail on failure."""
    tail: deque[str] = deque(maxlen=_LOG_TAIL)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            log(line)
        if proc.wait() != 0:
            raise ImageError(f"{cmd[0]} failed with exit code {proc.returncode}:\n" + "\n".join(tail))


def _ensure_base(client: DockerClient, base: str, create_base: CreateBase, log: Log, suite: str | None = None) -> None:
    """Make sure the base image exists, getting it as ``create_base`` says when it is missing.

    ``auto``: pull, and create it locally if that fails. ``always``: create it locally without
    trying a registry. ``never``: pull only. An existing base image is always kept.
    """
    if create_base not in ("auto", "always", "never"):
        raise ValueError(f"create_base must be auto, always or never, not {create_base!r}")
    if base_image_present(client, base):
        return
    if create_base != "always" and pull_base_image(client, base, log):
        return
    if create_base == "never":
        raise ImageError(
            f"base image {base} is missing and cannot be pulled "
            "(fix: allow creating it locally with debootstrap, or make a registry reachable)"
        )
    create_base_image(client, base, log=log, suite=suite)


def build_args(suite: str = SUITE, context_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The Dockerfile's build arguments for ``suite``: none for the default suite (its pins
    are the Dockerfile's defaults), ``images/node/SUITE.args`` for another."""
    if suite not in SUITES:
        raise ImageError(f"unknown suite {suite!r} (fix: use one of {', '.join(SUITES)})")
    if suite == SUITE:
        return {}
    context = Path(context_dir) if context_dir is not None else node_context_dir()
    path = context / f"{suite}.args"
    if not path.is_file():
        raise ImageError(f"the {suite} variant's build arguments are not at {path} (fix: restore the file)")
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def build_node_image(
    client: DockerClient | None = None,
    tag: str = NODE_IMAGE,
    context_dir: str | os.PathLike[str] | None = None,
    create_base: CreateBase = "auto",
    log: Log = print,
    base: str | None = None,
    suite: str = SUITE,
    pins: dict[str, str] | None = None,
) -> Image:
    """Build the node image ``tag`` on Debian ``suite`` from ``context_dir`` (default:
    :func:`node_context_dir`).

    The base image (default: debian:SUITE-slim) is pulled or created first when missing (see
    ``_ensure_base``). ``pins`` override build arguments (e.g. ``{"IPROUTE2_VERSION": ...}``).
    Build output is passed to ``log`` line by line; a failed build raises :class:`ImageError`
    carrying the last lines of that output. When a pin fell back to the suite's current
    version, the image is relabelled (a cached rebuild: only the labels change) with what was
    installed, and a warning is logged.
    """
    client = _client(client)
    context = Path(context_dir) if context_dir is not None else node_context_dir()
    buildargs = build_args(suite, context)
    base = base or buildargs.get("BASE_IMAGE") or base_image_for(suite)
    _ensure_base(client, base, create_base, log, suite)
    buildargs.update({"BASE_IMAGE": base, "SUITE": suite, "MPTCPDOCK_VERSION": __version__, **(pins or {})})
    log(f"building {tag} (Debian {suite}) from {context}")
    _build(client, context, tag, buildargs, log)
    image = _get_image(client, tag)
    if image is None:
        raise ImageError(f"the build of {tag} finished but the image is missing")
    installed, fallback = installed_packages(client, tag)
    labels = image.labels or {}
    relabel = {PKG_LABEL_PREFIX + name: version for name, version in installed.items()
               if labels.get(PKG_LABEL_PREFIX + name) != version}
    if fallback:
        relabel[FALLBACK_LABEL] = "; ".join(f"{name} {pinned} -> {now}" for name, pinned, now in fallback)
        for name, pinned, now in fallback:
            log(f"WARNING: {name} {pinned} is no longer in Debian {suite}; the image has {now} "
                f"(fix: update the pin in images/node/{'Dockerfile' if suite == SUITE else suite + '.args'})")
    if relabel:
        _build(client, context, tag, buildargs, lambda _line: None, labels=relabel)
        image = _get_image(client, tag)
        assert image is not None
    log(f"built {tag}: {describe_image(image)}")
    return image


def _build(client: DockerClient, context: Path, tag: str, buildargs: dict[str, str], log: Log,
           labels: dict[str, str] | None = None) -> None:
    try:
        output = client.api.build(path=str(context), tag=tag, rm=True, forcerm=True, pull=False,
                                  buildargs=buildargs, labels=labels, decode=True)
        _follow_build(output, tag, log)
    except DockerException as exc:
        raise ImageError(f"building {tag} failed: {_first_line(exc)}") from exc


def installed_packages(client: DockerClient | None, tag: str) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """What install-packages.sh recorded in image ``tag``: (package -> version installed,
    [(package, pinned, installed)] for the pins that fell back). Empty for an image without
    the record (built before it existed)."""
    client = _client(client)
    script = f"cat {INSTALLED_FILE} 2>/dev/null; echo '%%%'; cat {FALLBACK_FILE} 2>/dev/null; true"
    try:
        output = client.containers.run(tag, ["sh", "-c", script], remove=True, network_mode="none",
                                       labels={"io.mptcpdock.role": "image-check"})
    except DockerException as exc:
        raise ImageError(f"cannot read the package list of {tag}: {_first_line(exc)}") from exc
    text = output.decode(errors="replace") if isinstance(output, bytes) else str(output)
    listing, _, fallback_text = text.partition("%%%")
    installed = dict(line.split(" ", 1) for line in listing.splitlines() if " " in line.strip())
    fallback = [tuple(line.split()[:3]) for line in fallback_text.splitlines() if len(line.split()) >= 3]
    return installed, fallback  # type: ignore[return-value]


def describe_image(image: Image) -> str:
    """'95.9 MB, Debian trixie, iproute2 6.15.0-1, ...' for build logs and doctor."""
    labels = image.labels or {}
    size = image.attrs.get("Size") or 0
    packages = ", ".join(f"{key.removeprefix(PKG_LABEL_PREFIX)} {value}" for key, value in sorted(labels.items())
                         if key.startswith(PKG_LABEL_PREFIX))
    return f"{size / 1e6:.1f} MB, Debian {labels.get(SUITE_LABEL, 'bookworm')}, {packages}"


def build_plan(tag: str = NODE_IMAGE, context_dir: str | os.PathLike[str] | None = None,
               base: str | None = None, client: DockerClient | None = None, suite: str = SUITE) -> dict[str, Any]:
    """What :func:`build_node_image` would do, without doing it: the context and its files,
    the build arguments, and whether the base image is there (None when Docker does not
    answer; the build would then fail before starting)."""
    context = Path(context_dir) if context_dir is not None else node_context_dir()
    buildargs = build_args(suite, context)
    base = base or buildargs.get("BASE_IMAGE") or base_image_for(suite)
    try:
        present: bool | None = base_image_present(client, base)
    except (DockerException, MptcpdockError):
        present = None
    return {
        "tag": tag,
        "context": str(context),
        "files": sorted(path.relative_to(context).as_posix() for path in context.rglob("*") if path.is_file()),
        "base": base,
        "base_present": present,
        "buildargs": {**buildargs, "BASE_IMAGE": base, "SUITE": suite, "MPTCPDOCK_VERSION": __version__},
    }


def _follow_build(output: Iterator[dict[str, Any]], tag: str, log: Log) -> None:
    tail: deque[str] = deque(maxlen=_LOG_TAIL)
    for item in output:
        if "error" in item:
            tail.append(_ANSI.sub("", item["error"]).rstrip())
            raise ImageError(f"building {tag} failed; last build output:\n" + "\n".join(tail))
        for line in _ANSI.sub("", item.get("stream", "")).splitlines():
            if line.strip():
                tail.append(line)
                log(line)


def ensure_node_image(client: DockerClient | None = None, tag: str = NODE_IMAGE, log: Log = print) -> Image:
    """Return the node image ``tag``, building it first if Docker does not have it, or has a
    node image of an older layout under that tag (:data:`NODE_LAYOUT`: e.g. a bookworm image
    without mptcpd)."""
    client = _client(client)
    image = _get_image(client, tag)
    if image is not None and is_outdated(image):
        log(f"{tag} is a node image of layout {(image.labels or {}).get(NODE_LABEL)}, older than {NODE_LAYOUT}: "
            "rebuilding it")
        image = None
    return image if image is not None else build_node_image(client, tag, log=log)


def is_outdated(image: Image) -> bool:
    """A node image (it has :data:`NODE_LABEL`) of an older layout than this version builds."""
    layout = (image.labels or {}).get(NODE_LABEL)
    return layout is not None and layout.isdigit() and int(layout) < int(NODE_LAYOUT)


def save_image(client: DockerClient | None, tag: str, path: str | os.PathLike[str]) -> Path:
    """Write image ``tag`` to the tarball ``path`` (like ``docker save -o PATH TAG``)."""
    client = _client(client)
    if _get_image(client, tag) is None:
        raise ImageError(f"cannot save {tag}: no such image (fix: `mptcpdock image build`)")
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in client.api.get_image(tag, chunk_size=_CHUNK):
                out.write(chunk)
        os.replace(tmp_name, target)
    except BaseException as exc:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(exc, DockerException):
            raise ImageError(f"cannot save {tag}: {_first_line(exc)}") from exc
        raise
    return target


def load_image(client: DockerClient | None, path: str | os.PathLike[str]) -> list[Image]:
    """Load the images in tarball ``path`` (like ``docker load -i PATH``) and return them."""
    client = _client(client)
    try:
        with open(path, "rb") as tarball:
            return client.images.load(tarball)
    except (OSError, DockerException) as exc:
        raise ImageError(f"cannot load images from {path}: {_first_line(exc)}") from exc


def image_info(client: DockerClient | None, tag: str) -> dict[str, Any]:
    """What a lab records about the image it ran: id, digest, labels and pinned packages."""
    image = _get_image(_client(client), tag)
    if image is None:
        raise ImageError(f"no image {tag}")
    labels = image.labels or {}
    digests = image.attrs.get("RepoDigests") or []
    packages = {k.removeprefix(PKG_LABEL_PREFIX): v for k, v in labels.items() if k.startswith(PKG_LABEL_PREFIX)}
    return {
        "tag": tag,
        "id": image.id,
        "digest": digests[0] if digests else image.id,  # a local build has no registry digest
        "created": image.attrs.get("Created"),
        "labels": labels,
        "packages": packages,
    }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
