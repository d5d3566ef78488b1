#!/usr/bin/env bash
# Prepare a Debian/Ubuntu machine to run mptcpdock, from this repository alone:
#   1. install docker.io, debootstrap, graphviz and python3-venv (only what is missing)
#   2. start the Docker engine if it is not answering
#   3. create .venv in the repository and install mptcpdock with its test extras
#   4. build the node image (creating the Debian base image with debootstrap if needed)
# With --vm (or MPTCPDOCK_VM_TIER=1) it also installs what scripts/vm-host.sh needs to boot a
# Linux VM as a Docker host (qemu-system-x86, qemu-utils).
# Idempotent: run it as often as you like. Run it as root or as a user with sudo.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
DOCKERD_LOG=/var/log/dockerd.log

say() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

VM_TIER="${MPTCPDOCK_VM_TIER:-0}"
for arg in "$@"; do
    case "$arg" in
        --vm) VM_TIER=1 ;;
        *) die "unknown option $arg (usage: bootstrap.sh [--vm])" ;;
    esac
done

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "run as root or install sudo"
    SUDO=(sudo)
fi

install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)  # the client alone may be present
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v dot >/dev/null || missing+=(graphviz)  # 'mptcpdock graph' PNG/SVG, plots/topology.png
    command -v python3 >/dev/null || missing+=(python3)
    if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        missing+=(python3-venv python3-pip)
    fi
    if [ "$VM_TIER" = 1 ]; then
        command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
        command -v qemu-img >/dev/null || missing+=(qemu-utils)
    fi
    if [ "${#missing[@]}" -eq 0 ]; then
        say "packages: docker, debootstrap, graphviz, python3 venv support$([ "$VM_TIER" = 1 ] && echo ' and qemu') are present"
        return
    fi
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    say "installing ${missing[*]}"
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}

docker_answers() { "${SUDO[@]}" docker info >/dev/null 2>&1; }

start_docker() {
    if docker_answers; then
        say "docker engine: running"
        return
    fi
    if [ -d /run/systemd/system ]; then
        say "starting docker with systemctl"
        "${SUDO[@]}" systemctl start docker
    else
        say "starting dockerd in the background (log: $DOCKERD_LOG)"
        "${SUDO[@]}" bash -c 'setsid dockerd >>/var/log/dockerd.log 2>&1 </dev/null &'
    fi
    local waited=0
    until docker_answers; do
        [ "$waited" -ge 60 ] && die "docker engine did not answer within 60 s (see $DOCKERD_LOG)"
        sleep 1
        waited=$((waited + 1))
    done
    say "docker engine: answering after ${waited} s"
}

install_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV"
        python3 -m venv "$VENV"
    fi
    say "installing mptcpdock (editable, with test extras) into $VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e "$REPO[test]"
}

build_node_image() {
    # Root is needed: creating the base image runs debootstrap.
    if "$VENV/bin/mptcpdock" image build --help >/dev/null 2>&1; then
        say "building the node image: mptcpdock image build"
        "${SUDO[@]}" "$VENV/bin/mptcpdock" image build
    else
        say "building the node image: mptcpdock.runtime.image.ensure_node_image()"
        "${SUDO[@]}" "$VENV/bin/python" -c 'from mptcpdock.runtime.image import ensure_node_image; ensure_node_image()'
    fi
    if [ "${#SUDO[@]}" -gt 0 ] && ! docker info >/dev/null 2>&1; then
        say "note: $(id -un) cannot use docker without sudo (fix: sudo usermod -aG docker $(id -un), then log in again)"
    fi
}

cd "$REPO"
install_packages
start_docker
install_venv
build_node_image
say "done"
