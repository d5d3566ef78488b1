#!/usr/bin/env bash
# The main job on a bundled topology, from a fresh Linux machine: set everything up
# (scripts/bootstrap.sh), then run NeST's example 1 as an MPTCP experiment on Docker
# and leave its results in results/. Extra arguments go to `mptcpdock run`.
# Run it as root (no sudo needed) or as a user with sudo: `bash scripts/demo.sh`. As a user
# who cannot reach Docker directly (not in the docker group), the mptcpdock commands run
# under sudo and the results are handed back to you.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh

SUDO=()
if [ "$(id -u)" -ne 0 ] && ! docker info >/dev/null 2>&1; then
    command -v sudo >/dev/null || { echo "demo.sh: cannot reach Docker as $(id -un) and there is no sudo" >&2; exit 1; }
    SUDO=(sudo)
fi
# --allow-no-impairments only matters on kernels without netem (delay/loss are then
# dropped, recorded in the results and warned about); elsewhere the delays apply.
status=0
"${SUDO[@]}" .venv/bin/mptcpdock run topologies/mptcp-default-configuration.yaml --allow-no-impairments --duration 20 "$@" || status=$?
"${SUDO[@]}" .venv/bin/mptcpdock down ex1
if [ "${#SUDO[@]}" -gt 0 ] && [ -d results ]; then
    "${SUDO[@]}" chown -R "$(id -u):$(id -g)" results
fi
exit "$status"
