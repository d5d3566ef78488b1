#!/bin/sh
# Installs the node image's packages: install-packages.sh SUITE PACKAGE=VERSION...
#
# The versions are pins, not requirements: when Debian has replaced one (a point release
# drops the old version from the suite), the suite's current version of that package is
# installed instead and a WARNING line says so, so that the build keeps working the day
# after a point release. What was installed is recorded in /usr/share/mptcpdock/packages
# (one 'package version' line each), the replaced pins in /usr/share/mptcpdock/pin-fallback
# ('package pinned installed'); `mptcpdock image build` labels the image from both.
set -eu
suite=$1; shift
. /etc/os-release
if [ "${VERSION_CODENAME:-}" != "$suite" ]; then
  echo "ERROR: the base image is Debian ${VERSION_CODENAME:-unknown}, not $suite (fix: build FROM debian:$suite-slim, or pass SUITE=${VERSION_CODENAME:-?})" >&2
  exit 1
fi
apt-get update
wanted=""; names=""
for pin in "$@"; do
  name=${pin%%=*}; version=${pin#*=}
  names="$names $name"
  if [ -n "$version" ] && apt-cache madison "$name" | awk -v v="$version" '$3 == v {found=1} END {exit !found}'; then
    wanted="$wanted $name=$version"
  else
    current=$(apt-cache policy "$name" | sed -n 's/^  Candidate: //p')
    if [ -z "$current" ] || [ "$current" = "(none)" ]; then
      echo "ERROR: package $name is not in Debian $suite" >&2
      exit 1
    fi
    echo "WARNING: pinned $name=$version is not in Debian $suite any more; installing its current version $current" >&2
    echo "$name ${version:-none} $current" >> /tmp/pin-fallback
    wanted="$wanted $name=$current"
  fi
done
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $wanted
mkdir -p /usr/share/mptcpdock
# shellcheck disable=SC2086
dpkg-query -W -f '${Package} ${Version}\n' $names > /usr/share/mptcpdock/packages
if [ -e /tmp/pin-fallback ]; then mv /tmp/pin-fallback /usr/share/mptcpdock/pin-fallback; else : > /usr/share/mptcpdock/pin-fallback; fi
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log /var/cache/debconf/*-old \
  /usr/share/man/* /usr/share/info/* /usr/share/lintian
echo "installed:"; cat /usr/share/mptcpdock/packages
