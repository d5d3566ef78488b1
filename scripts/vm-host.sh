#!/usr/bin/env bash
# A Linux VM as a Docker host for mptcpdock: Debian trixie (cloud kernel 6.12: MPTCP built in,
# sch_netem and friends as modules) running dockerd, booted with QEMU and reachable only through
# one TCP forward on 127.0.0.1. For testing on a kernel with netem, and the remote-engine path.
#
#   scripts/vm-host.sh start [--with-image] [--swarm-link]
#                                            build the base image once (cached), boot a throwaway
#                                            overlay of it, wait for the engine (and copy the node
#                                            image into it); the LAST line on stdout is
#                                            DOCKER_HOST=tcp://127.0.0.1:PORT, all else is on stderr.
#                                            --swarm-link (root; implies --with-image): also a private,
#                                            firewalled /30 between this machine and the VM for Docker
#                                            swarm (see "Swarm link" below); the line before the last
#                                            is then SWARM_LINK=HOST_ADDR,VM_ADDR
#   scripts/vm-host.sh status                state, pid, port, accel; exit 0 if the engine answers, 3 if not
#   scripts/vm-host.sh stop                  power the guest off; kill only the QEMU this script started
#   scripts/vm-host.sh load-image [TAG]      copy TAG (default: the node image) from the local engine
#                                            into the VM's, with `mptcpdock image save`/`load`; skipped
#                                            when the VM already has the same image id
#   scripts/vm-host.sh build                 only build the cached base image (needs root)
#   scripts/vm-host.sh link-check            exit 0 if --swarm-link can create its tap here; else
#                                            print why not and exit 3
#
#   export "$(scripts/vm-host.sh start --with-image | tail -1)"    # then mptcpdock, docker, pytest
#
# Environment:
#   MPTCPDOCK_VM_CACHE    cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/mptcpdock/vm-host), outside
#                         the repository so that every clone on the machine reuses one base image
#   MPTCPDOCK_VM_PORT     port on 127.0.0.1 for the engine (default: a free one, chosen at start)
#   MPTCPDOCK_VM_ACCEL    kvm or tcg: skip the KVM probe (by default a short probe boot decides,
#                         once per host kernel and QEMU version; a /dev/kvm that opens but hangs
#                         guests falls back to tcg)
#   MPTCPDOCK_VM_MEM      guest memory (default 4G); MPTCPDOCK_VM_CPUS: vCPUs (default 2, 1 on a 1-core host)
#   MPTCPDOCK_VM_TCG_CPU  QEMU's -cpu under software emulation (default qemu64: plain x86-64;
#                         'max' makes the guest take AVX2 paths that TCG emulates slowly)
#   MPTCPDOCK_VM_TIMEOUT  seconds to wait for the engine after boot (default 300)
#   MPTCPDOCK_VM_MIRROR   Debian mirror for debootstrap (default: the one in the host's apt sources)
#   MPTCPDOCK_VM_LINK     the swarm link's /30 as HOST_ADDR,VM_ADDR (default 10.253.0.1,10.253.0.2)
#   MPTCPDOCK_VM_TAP      the swarm link's tap device on this machine (default mpdswarm0)
#
# Network: QEMU user networking with restrict=on (the guest reaches nothing outside, not even the
# host), no IPv6, and a single hostfwd from 127.0.0.1:PORT to the guest's dockerd (tcp 2375, no
# TLS: only this machine's loopback reaches it). The guest has no default route. The node image
# reaches the VM over the Docker API, never through a registry.
#
# Swarm link (--swarm-link): swarm needs 2377/tcp worker->manager, 7946/tcp+udp and 4789/udp
# (VXLAN) both ways, which user networking cannot carry (restrict=on: no UDP from the guest). So a
# tap device on this machine (HOST_ADDR/30, IPv6 off) and a second virtio NIC in the guest
# (VM_ADDR/30, configured after boot from a host-network container of the node image; no default
# route, IPv6 off). Firewall on this machine (iptables chains MPD-SWARM-*, removed by stop):
# nothing is forwarded to or from the tap (FORWARD and DOCKER-USER drop it); INPUT from the tap
# accepts only VM_ADDR -> HOST_ADDR on 2377/tcp, 7946/tcp+udp, 4789/udp and replies, OUTPUT to
# the tap only HOST_ADDR -> VM_ADDR on 7946/tcp+udp, 4789/udp and replies; VXLAN (4789/udp)
# arriving on any other interface but lo is dropped. The VM routes only its two /24 and /30
# subnets, so nothing it sends can leave this machine.
#
# Cache: base-HASH/ (the ext4 root image, sparse, read-only; the kernel and initrd from its /boot;
# recipe and build times), named by a hash of the recipe below so that changing it rebuilds; it is
# built in .build-* and renamed when complete, so an interrupted build never looks complete.
# run/ (the qcow2 overlay of this boot, pid file, port, console log). accel-probe (the verdicts).
set -euo pipefail
trap 'exit 130' INT
trap 'exit 143' TERM HUP     # so that the EXIT trap (an unfinished build's cleanup) runs

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MPTCPDOCK_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mptcpdock/vm-host}"
RUN="$CACHE/run"
MARKER=mptcpdock-vm-host          # QEMU's -name: stop and status only touch a QEMU carrying it
GUEST_INIT=/usr/local/sbin/mptcpdock-init
GUEST_DOCKER_PORT=2375
MEM="${MPTCPDOCK_VM_MEM:-4G}"
CPUS="${MPTCPDOCK_VM_CPUS:-$(( $(nproc) >= 2 ? 2 : 1 ))}"
TIMEOUT="${MPTCPDOCK_VM_TIMEOUT:-300}"
LINK="${MPTCPDOCK_VM_LINK:-10.253.0.1,10.253.0.2}"
LINK_HOST="${LINK%%,*}"
LINK_VM="${LINK#*,}"
TAP="${MPTCPDOCK_VM_TAP:-mpdswarm0}"
LINK_MAC=52:54:00:fd:00:02        # the guest's swarm NIC, found by this address
KEY_HOLDER=mptcpdock-vm-keys      # the idle container hold_keys starts

# The recipe: any change here (or in the guest files below) changes the hash, so `start` rebuilds.
RECIPE_VERSION=3
SUITE=trixie
INCLUDE=linux-image-cloud-amd64,docker.io,iproute2,kmod,procps,iptables,ca-certificates,initramfs-tools,udev,iputils-ping
IMAGE_SIZE=6G
INITRD_MODULES=virtio_blk   # all the initrd needs: the cloud kernel has virtio_pci and ext4 built in

say() { printf '[vm-host] %s\n' "$*" >&2; }
die() { printf '[vm-host] ERROR: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 not found (fix: $2)"; }

# Run docker against the VM engine, ignoring any TLS or context settings meant for another engine.
vm_docker() {
    env -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH -u DOCKER_CONTEXT DOCKER_HOST="tcp://127.0.0.1:$1" \
        timeout "${VM_DOCKER_TIMEOUT:-60}" docker "${@:2}"
}

# ---------------------------------------------------------------------------------------------
# The guest: files written into the root filesystem at build time.

guest_init() {
    cat <<'EOF'
#!/bin/bash
# PID 1 of the mptcpdock VM host (written by scripts/vm-host.sh when it built this image).
# Mounts, modules, the NIC, dockerd; then waits for the ACPI power button (QEMU's
# system_powerdown, sent by `vm-host.sh stop`) and powers off.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
say() { echo "[vm-init] $*"; }

mountpoint -q /proc || mount -t proc -o nosuid,nodev,noexec proc /proc
mountpoint -q /sys || mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mountpoint -q /dev || mount -t devtmpfs -o mode=755,nosuid devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mountpoint -q /dev/pts || mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mountpoint -q /dev/shm || mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mountpoint -q /run || mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
mountpoint -q /tmp || mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
mount -o remount,rw /
hostname mptcpdock-vm

modprobe virtio_net || say "modprobe virtio_net failed"
# The NIC's name depends on who named it (eth0, ens3, enp0s3...): take the first real device.
nic=
for dev in /sys/class/net/*; do
    [ "${dev##*/}" != lo ] && [ -e "$dev/device" ] && { nic=${dev##*/}; break; }
done
ip link set lo up
if [ -n "$nic" ]; then
    # QEMU user networking: no default route on purpose (nor IPv6 router advertisements), the
    # guest talks only to the forward.
    echo 0 > "/proc/sys/net/ipv6/conf/$nic/accept_ra" 2>/dev/null
    ip addr add 10.0.2.15/24 dev "$nic" && ip link set "$nic" up && say "network: $nic 10.0.2.15/24"
else
    say "no network device found: $(ls /sys/class/net)"
fi

# One modprobe for many modules: under software emulation every process start costs.
load_modules() {
    modprobe -a "$@" 2>/dev/null && return
    for mod; do modprobe "$mod" 2>/dev/null || say "modprobe $mod failed"; done
}
# What dockerd needs, before it starts; the rest while it starts.
load_modules bridge br_netfilter veth overlay nf_tables nft_compat nft_chain_nat nf_nat \
    nf_conntrack xt_conntrack xt_MASQUERADE xt_addrtype ip_tables iptable_nat iptable_filter \
    ip6_tables ip6table_nat ip6table_filter
# Frames crossing a lab's bridges skip iptables: a lab link is a point-to-point bridge with no
# host address, nothing on it needs filtering, and under software emulation every netfilter
# hook (and conntrack) on every frame at every bridge costs emulated CPU. Docker's isolation
# between networks is routed (layer 3), which this does not touch.
sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 \
    net.bridge.bridge-nf-call-arptables=0 || say "could not turn bridge netfilter off"
# Hold the kernel's timestamp static key on for good. Under multi-threaded TCG a guest with
# 2 vCPUs dies ("Oops: int3", then a panic) when the kernel patches a static key while the
# other vCPU runs the patched code; ping turns the timestamp key on at start and off at exit
# (a loop of `ping -c1` beside an iperf3 flow panicked 2 vCPUs within a minute, every time).
# With one holder alive the key never changes: the same loop ran 300 pings without a fault.
ping -q -i 3600 127.0.0.1 > /dev/null 2>&1 &
# The same for the keys a container's start or a lab's clsact turns on, now, while nothing
# runs: the first child memory cgroup turns the slab allocator's memcg key on (a container's
# runc died in kmem_cache_alloc on that key's int3 as the first container started); a live
# cpuset cgroup holds the cpuset keys; a clsact on lo holds the ingress and egress hook keys
# (each lab's first clsact would flip them otherwise). The device-cgroup BPF key is held by
# a container that vm-host.sh starts once the node image is in (hold_keys).
echo "+memory +cpuset" > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null ||
    say "could not enable the memory and cpuset controllers"
mkdir -p /sys/fs/cgroup/mptcpdock-keys || say "could not create the key-holding cgroup"
tc qdisc add dev lo clsact 2>/dev/null || say "could not add a clsact qdisc to lo"

mkdir -p /var/log
# The host reaches this only through QEMU's forward on its 127.0.0.1; --tls=false says so
# explicitly (dockerd otherwise waits 15 s before listening on TCP without TLS).
dockerd -H tcp://0.0.0.0:2375 -H unix:///run/docker.sock --tls=false \
    > >(tee /var/log/dockerd.log) 2>&1 < /dev/null &
dockerd_pid=$!
say "dockerd started (pid $dockerd_pid, log: the console and /var/log/dockerd.log)"

load_modules sch_netem sch_htb sch_tbf sch_ingress sch_prio sch_sfq sch_fq sch_fq_codel \
    sch_cake cls_u32 cls_fw cls_matchall act_mirred ifb tcp_bbr button evdev virtio_rng
say "kernel $(uname -r), mptcp enabled=$(cat /proc/sys/net/mptcp/enabled 2>/dev/null || echo absent)," \
    "netem $(lsmod | grep -qw sch_netem && echo loaded || echo absent)"

power=
for ev in /sys/class/input/event*; do
    [ "$(cat "$ev/device/name" 2>/dev/null)" = "Power Button" ] && power=/dev/input/${ev##*/}
done
# One input event (24 bytes: evdev refuses shorter reads) means the button was pressed.
if [ -n "$power" ] && dd if="$power" of=/dev/null bs=24 count=1 status=none; then
    say "power button: stopping dockerd"
    kill -TERM "$dockerd_pid"
    for _ in $(seq 40); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
    sync
    echo u > /proc/sysrq-trigger          # remount read-only
    say "powering off"
    echo o > /proc/sysrq-trigger
    sleep 30
fi
say "no usable power button: \`vm-host.sh stop\` will kill QEMU"
while :; do sleep 3600; done
EOF
}

guest_daemon_json() {
    # The VM engine serves one lab runner: no userland proxy (nothing is published anyway).
    printf '{\n  "userland-proxy": false\n}\n'
}

recipe_text() {
    printf 'recipe %s\nsuite %s\nvariant minbase\ninclude %s\nimage %s ext4\ninitrd MODULES=list %s\n' \
        "$RECIPE_VERSION" "$SUITE" "$INCLUDE" "$IMAGE_SIZE" "$INITRD_MODULES"
    guest_init
    guest_daemon_json
}

RECIPE_HASH="$(recipe_text | sha256sum | cut -c1-12)"
BASE="$CACHE/base-$RECIPE_HASH"

# ---------------------------------------------------------------------------------------------
# Building the base image (once).

base_complete() { [ -f "$BASE/complete" ] && [ -f "$BASE/rootfs.img" ] && [ -f "$BASE/vmlinuz" ] && [ -f "$BASE/initrd.img" ]; }

# The Debian mirror the host's apt uses (deb822 or one-line sources), main archive only.
host_mirror() {
    local uri
    uri="$(
        { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
          grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
              sed -E 's/\[[^]]*\]//' | awk '{print $2}'
        } | grep -E '^https?://' | grep -v -- '-security' | grep -E '/debian/?$' | head -1
    )" || true
    printf '%s' "${MPTCPDOCK_VM_MIRROR:-$uri}"
}

# Unmount whatever debootstrap may have left mounted inside DIR, then delete DIR without ever
# crossing into another file system.
remove_tree() {
    local dir="$1" mnt
    [ -e "$dir" ] || return 0
    while read -r mnt; do
        umount -l "$mnt" 2>/dev/null || true
    done < <(findmnt -rn -o TARGET | grep -F "$dir/" | sort -r)
    rm -rf --one-file-system "$dir" || say "could not remove all of $dir"
}

BUILD_TMP=
BUILD_PID=
cleanup_build() {
    if [ -n "$BUILD_PID" ]; then     # an interrupted debootstrap: timeout leads its process group
        kill -TERM -- "-$BUILD_PID" 2>/dev/null || true
        wait "$BUILD_PID" 2>/dev/null || true
    fi
    [ -z "$BUILD_TMP" ] || { say "removing the unfinished build $BUILD_TMP"; remove_tree "$BUILD_TMP"; }
}

build_base() {
    if base_complete; then
        say "base image: $BASE (cached)"
        return
    fi
    [ "$(id -u)" -eq 0 ] ||
        die "building the base image needs root (debootstrap, mkfs.ext4 -d): run 'sudo MPTCPDOCK_VM_CACHE=$CACHE $0 build' once"
    need debootstrap "apt-get install debootstrap (or scripts/bootstrap.sh --vm)"
    need mkfs.ext4 "apt-get install e2fsprogs"
    local stale
    for stale in "$CACHE"/.build-*; do
        [ -e "$stale" ] && { say "removing an interrupted build: $stale"; remove_tree "$stale"; }
    done
    BUILD_TMP="$(mktemp -d "$CACHE/.build-$RECIPE_HASH.XXXXXX")"
    trap cleanup_build EXIT
    local root="$BUILD_TMP/rootfs" mirror t0 t1 t2 t3
    mirror="$(host_mirror)"
    say "building the base image (Debian $SUITE, once): debootstrap ${mirror:-(default mirror)}, log $BUILD_TMP/debootstrap.log"
    t0=$SECONDS
    # In the background so that a signal reaches our trap (and the trap ends debootstrap) at once.
    timeout 1800 debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$root" ${mirror:+"$mirror"} \
        > "$BUILD_TMP/debootstrap.log" 2>&1 &
    BUILD_PID=$!
    if ! wait "$BUILD_PID"; then
        BUILD_PID=
        tail -n 20 "$BUILD_TMP/debootstrap.log" >&2
        die "debootstrap failed (log above)"
    fi
    BUILD_PID=
    t1=$SECONDS
    say "debootstrap: $((t1 - t0)) s"

    guest_init > "$root$GUEST_INIT"
    chmod 755 "$root$GUEST_INIT"
    mkdir -p "$root/etc/docker"
    guest_daemon_json > "$root/etc/docker/daemon.json"
    echo mptcpdock-vm > "$root/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 mptcpdock-vm\n::1 localhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
    : > "$root/etc/resolv.conf"
    # The guest has no network to install from: drop the package caches and lists, and the docs.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*

    local kernel kver
    kernel="$(ls "$root"/boot/vmlinuz-* 2>/dev/null | head -1)"
    [ -n "$kernel" ] || die "no kernel in $root/boot"
    kver="${kernel##*/vmlinuz-}"
    # A small initrd (the default one carries most modules: 18 MB, slower to boot under TCG).
    echo MODULES=list > "$root/etc/initramfs-tools/conf.d/mptcpdock"
    printf '%s\n' $INITRD_MODULES >> "$root/etc/initramfs-tools/modules"
    rm -f "$root/boot/initrd.img-$kver"
    chroot "$root" mkinitramfs -o "/boot/initrd.img-$kver" "$kver" 2>&1 | grep -v 'No zstd' >&2 || true
    [ -s "$root/boot/initrd.img-$kver" ] || die "mkinitramfs made no initrd"
    cp "$kernel" "$BUILD_TMP/vmlinuz"
    cp "$root/boot/initrd.img-$kver" "$BUILD_TMP/initrd.img"
    echo "$kver" > "$BUILD_TMP/kernel-version"

    t2=$SECONDS
    truncate -s "$IMAGE_SIZE" "$BUILD_TMP/rootfs.img"
    mkfs.ext4 -q -F -L mptcpdock-root -d "$root" "$BUILD_TMP/rootfs.img" >&2
    t3=$SECONDS
    say "mkfs.ext4 -d: $((t3 - t2)) s"
    remove_tree "$root"
    chmod a-w "$BUILD_TMP/rootfs.img"    # only ever a backing file
    recipe_text > "$BUILD_TMP/recipe"
    printf 'debootstrap_s %s\nmkfs_s %s\nbuilt %s\n' "$((t1 - t0))" "$((t3 - t2))" "$(date -u +%FT%TZ)" \
        > "$BUILD_TMP/build-times"
    touch "$BUILD_TMP/complete"
    chmod 755 "$BUILD_TMP"
    # Built with sudo for a user: the cache is theirs to boot from.
    [ -z "${SUDO_UID:-}" ] || chown -R "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$CACHE"
    mv "$BUILD_TMP" "$BASE"              # atomic: the cache holds a complete image or none
    BUILD_TMP=
    trap - EXIT
    local old
    for old in "$CACHE"/base-*; do
        [ "$old" = "$BASE" ] || { say "removing an older base image: $old"; remove_tree "$old"; }
    done
    say "base image: $BASE ($(du -sh "$BASE" | cut -f1) on disk, kernel $(cat "$BASE/kernel-version"))"
}

# ---------------------------------------------------------------------------------------------
# Acceleration: KVM only when a probe boot proves it runs a guest.

probe_key() { printf 'host-kernel=%s %s' "$(uname -r)" "$(qemu-system-x86_64 --version | head -1 | tr ' ' '_')"; }

check_accel_env() {
    case "${MPTCPDOCK_VM_ACCEL:-}" in
        kvm|tcg|'') ;;
        *) die "MPTCPDOCK_VM_ACCEL must be kvm or tcg, not '$MPTCPDOCK_VM_ACCEL'" ;;
    esac
}

choose_accel() {
    if [ -n "${MPTCPDOCK_VM_ACCEL:-}" ]; then
        say "accel: $MPTCPDOCK_VM_ACCEL (MPTCPDOCK_VM_ACCEL)"
        echo "$MPTCPDOCK_VM_ACCEL"
        return
    fi
    if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
        say "accel: tcg (/dev/kvm is not usable by $(id -un))"
        echo tcg
        return
    fi
    local key verdict
    key="$(probe_key)"
    verdict="$(awk -v k="$key" '$1" "$2 == k {print $3}' "$CACHE/accel-probe" 2>/dev/null | tail -1)"
    if [ -n "$verdict" ]; then
        say "accel: $verdict (cached probe verdict for $(uname -r))"
        echo "$verdict"
        return
    fi
    # Boot the guest kernel with no root file system: it prints its banner and panics at once,
    # and -no-reboot ends QEMU. A KVM that really runs guests does this in a few seconds.
    local log="$CACHE/accel-probe.log" t0=$SECONDS status=0 why
    say "accel: probing KVM with a short boot (at most 20 s)"
    timeout -k 2 20 qemu-system-x86_64 -name "$MARKER-probe" -nodefaults -no-user-config \
        -accel kvm -cpu host -m 256M -smp 1 -display none -no-reboot \
        -serial "file:$log" -kernel "$BASE/vmlinuz" -append "console=ttyS0 panic=-1 root=/dev/null" \
        > "$CACHE/accel-probe.err" 2>&1 9>&- || status=$?
    if [ "$status" -eq 0 ] && grep -q 'Linux version' "$log"; then
        verdict=kvm why="the guest kernel booted"
    elif [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        verdict=tcg why="no guest output within 20 s"
    else
        verdict=tcg why="QEMU: $(grep -m1 . "$CACHE/accel-probe.err" || echo "exit status $status")"
    fi
    say "accel: $verdict (KVM probe, $((SECONDS - t0)) s: $why)"
    printf '%s %s\n' "$key" "$verdict" >> "$CACHE/accel-probe"
    echo "$verdict"
}


# ---------------------------------------------------------------------------------------------
# The swarm link: a tap on this machine, a second NIC in the guest, a firewall (see the top).

IPT_CHAINS=(MPD-SWARM-IN MPD-SWARM-OUT MPD-SWARM-VXLAN)

# Why --swarm-link cannot work here (printed, exit 0), or exit 1 when it can.
link_impossible() {
    [ "$(id -u)" -eq 0 ] || { echo "the swarm link needs root (a tap device and iptables rules)"; return 0; }
    [ -c /dev/net/tun ] || { echo "the swarm link needs /dev/net/tun (a tap device), which this machine lacks"; return 0; }
    command -v iptables >/dev/null || { echo "the swarm link needs iptables on this machine"; return 0; }
    local probe="mpdprobe$$" err
    if ! err="$(ip tuntap add dev "$probe" mode tap 2>&1)"; then
        echo "a tap device cannot be created here: ${err:-ip tuntap failed}"
        return 0
    fi
    ip link del "$probe" 2>/dev/null || true
    return 1
}

check_link_env() {
    [[ "$LINK_HOST" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ && "$LINK_VM" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
        die "MPTCPDOCK_VM_LINK must be HOST_ADDR,VM_ADDR (two IPv4 addresses of one /30), not '$LINK'"
    python3 -c '
import ipaddress, sys
a, b = (ipaddress.IPv4Interface(x + "/30") for x in sys.argv[1:])
sys.exit(0 if a.network == b.network and a.ip != b.ip and {a.ip, b.ip} <= set(a.network.hosts()) else 1)
' "$LINK_HOST" "$LINK_VM" || die "MPTCPDOCK_VM_LINK: $LINK_HOST and $LINK_VM are not the two host addresses of one /30"
    [[ "$TAP" =~ ^[a-zA-Z0-9_-]{1,15}$ ]] || die "MPTCPDOCK_VM_TAP must be an interface name (1-15 characters)"
}

# The jumps firewall_up inserts, one a line (iptables words after -I/-D).
firewall_jumps() {
    printf '%s\n' "INPUT -i $TAP -j MPD-SWARM-IN" "INPUT -p udp --dport 4789 -j MPD-SWARM-VXLAN" \
        "OUTPUT -o $TAP -j MPD-SWARM-OUT" "FORWARD -i $TAP -j DROP" "FORWARD -o $TAP -j DROP" \
        "DOCKER-USER -i $TAP -j DROP" "DOCKER-USER -o $TAP -j DROP"
}

# Delete every rule and chain firewall_up made (each jump as often as it is there); quiet when none.
firewall_down() {
    local spec chain rule
    while read -r spec; do
        # shellcheck disable=SC2086 # the rule's words
        while iptables -D $spec 2>/dev/null; do :; done
    done < <(firewall_jumps)
    for chain in "${IPT_CHAINS[@]}"; do
        iptables -F "$chain" 2>/dev/null || true
        iptables -X "$chain" 2>/dev/null || true
    done
    if command -v ip6tables >/dev/null; then
        for rule in "INPUT -i $TAP -j DROP" "OUTPUT -o $TAP -j DROP" "FORWARD -i $TAP -j DROP" "FORWARD -o $TAP -j DROP"; do
            # shellcheck disable=SC2086
            while ip6tables -D $rule 2>/dev/null; do :; done
        done
    fi
}

firewall_up() {
    local chain vm="$LINK_VM" host="$LINK_HOST"
    for chain in "${IPT_CHAINS[@]}"; do iptables -N "$chain" || return 1; done
    iptables -A MPD-SWARM-IN -s "$vm" -d "$host" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT &&
    iptables -A MPD-SWARM-IN -s "$vm" -d "$host" -p tcp -m multiport --dports 2377,7946 -j ACCEPT &&
    iptables -A MPD-SWARM-IN -s "$vm" -d "$host" -p udp -m multiport --dports 7946,4789 -j ACCEPT &&
    iptables -A MPD-SWARM-IN -j DROP &&
    iptables -A MPD-SWARM-OUT -s "$host" -d "$vm" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT &&
    iptables -A MPD-SWARM-OUT -s "$host" -d "$vm" -p tcp --dport 7946 -j ACCEPT &&
    iptables -A MPD-SWARM-OUT -s "$host" -d "$vm" -p udp -m multiport --dports 7946,4789 -j ACCEPT &&
    iptables -A MPD-SWARM-OUT -j DROP &&
    iptables -A MPD-SWARM-VXLAN -i "$TAP" -j RETURN &&
    iptables -A MPD-SWARM-VXLAN -i lo -j RETURN &&
    iptables -A MPD-SWARM-VXLAN -j DROP &&
    iptables -I INPUT 1 -i "$TAP" -j MPD-SWARM-IN &&
    iptables -I INPUT 2 -p udp --dport 4789 -j MPD-SWARM-VXLAN &&
    iptables -I OUTPUT 1 -o "$TAP" -j MPD-SWARM-OUT &&
    iptables -I FORWARD 1 -i "$TAP" -j DROP &&
    iptables -I FORWARD 1 -o "$TAP" -j DROP || return 1
    # Docker puts its DOCKER-USER jump first in FORWARD whenever it (re)starts: drop there too.
    if iptables -L DOCKER-USER -n >/dev/null 2>&1; then
        iptables -I DOCKER-USER 1 -i "$TAP" -j DROP && iptables -I DOCKER-USER 1 -o "$TAP" -j DROP || return 1
    fi
    if command -v ip6tables >/dev/null; then
        ip6tables -I INPUT 1 -i "$TAP" -j DROP 2>/dev/null || true
        ip6tables -I OUTPUT 1 -o "$TAP" -j DROP 2>/dev/null || true
        ip6tables -I FORWARD 1 -i "$TAP" -j DROP 2>/dev/null || true
        ip6tables -I FORWARD 1 -o "$TAP" -j DROP 2>/dev/null || true
    fi
}

# The firewall, then the tap (QEMU opens it by name), before QEMU starts.
link_up() {
    local why
    if why="$(link_impossible)"; then die "--swarm-link: $why"; fi
    check_link_env
    if ip link show "$TAP" >/dev/null 2>&1; then
        die "--swarm-link: $TAP already exists (another VM's link? MPTCPDOCK_VM_TAP names another)"
    fi
    printf '%s %s %s\n' "$TAP" "$LINK_HOST" "$LINK_VM" > "$RUN/swarm-link"
    firewall_down
    firewall_up || { link_down; die "--swarm-link: the firewall rules could not be added"; }
    ip tuntap add dev "$TAP" mode tap || { link_down; die "--swarm-link: ip tuntap add $TAP failed"; }
    sysctl -qw "net.ipv6.conf.$TAP.disable_ipv6=1" || true
    ip addr add "$LINK_HOST/30" dev "$TAP" && ip link set "$TAP" up ||
        { link_down; die "--swarm-link: addressing $TAP failed"; }
    say "swarm link: $TAP $LINK_HOST/30 <-> the VM's $LINK_VM/30 (firewalled: swarm ports only, nothing forwarded)"
}

# Remove the tap and the rules this run made (its record: $RUN/swarm-link); nothing without one.
link_down() {
    [ -f "$RUN/swarm-link" ] || return 0
    local tap host vm
    read -r tap host vm < "$RUN/swarm-link" || true
    TAP="${tap:-$TAP}"
    firewall_down
    if ip link show "$TAP" >/dev/null 2>&1; then ip link del "$TAP" || say "could not delete $TAP"; fi
    say "swarm link: $TAP and its firewall rules removed"
    rm -f "$RUN/swarm-link"
}

link_qemu_args() {
    printf '%s\n' -netdev "tap,id=n1,ifname=$TAP,script=no,downscript=no" -device "virtio-net-pci,netdev=n1,mac=$LINK_MAC"
}

# In the guest: the swarm NIC (found by its MAC) gets VM_ADDR/30 and nothing else (no route
# beyond the /30, IPv6 off), set from a host-network container of the node image: the guest's
# init belongs to the base image's recipe, and changing it would rebuild every cached base.
link_guest() {
    local port="$1" tag dev routes
    tag="$(node_image_tag)"
    local script='set -eu
dev=
for d in /sys/class/net/*; do [ "$(cat "$d/address")" = "$1" ] && dev=${d##*/}; done
[ -n "$dev" ] || { echo "no NIC with MAC $1" >&2; exit 3; }
echo 1 > "/proc/sys/net/ipv6/conf/$dev/disable_ipv6"
ip addr flush dev "$dev"
ip addr add "$2/30" dev "$dev"
ip link set "$dev" up
echo "$dev"'
    dev="$(vm_docker "$port" run --rm --network host --privileged "$tag" sh -c "$script" sh "$LINK_MAC" "$LINK_VM")" ||
        die "configuring the VM's swarm NIC failed (see above)"
    routes="$(vm_docker "$port" run --rm --network host "$tag" ip -4 route show | paste -sd ';')"
    say "swarm link: the VM's $dev has $LINK_VM/30; the VM's routes: $routes"
}

# ---------------------------------------------------------------------------------------------
# The running VM.

qemu_pid() {
    # The pid in the pid file, if that process is a QEMU that this cache's run started.
    local pid cmd
    pid="$(cat "$RUN/qemu.pid" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    cmd="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmd" == *qemu-system-* ]] && [[ "$cmd" == *"-name $MARKER "* ]] && [[ "$cmd" == *"$RUN/overlay.qcow2"* ]] || return 1
    echo "$pid"
}

engine_answers() { VM_DOCKER_TIMEOUT=10 vm_docker "$1" info > /dev/null 2>&1; }

run_port() { cat "$RUN/port" 2>/dev/null; }

port_free() {
    python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
EOF
}

free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
EOF
}

console_tail() { say "console log ($RUN/console.log), last lines:"; tail -n "${1:-25}" "$RUN/console.log" >&2 2>/dev/null || true; }

clear_run() { rm -f "$RUN/qemu.pid" "$RUN/overlay.qcow2" "$RUN/monitor.sock" "$RUN/port" "$RUN/accel"; }

boot() {
    local accel="$1" port="$2" link="${3:-0}" accel_args link_args=()
    case "$accel" in
        kvm) accel_args=(-accel kvm -cpu host) ;;
        tcg) accel_args=(-accel tcg,thread=multi -cpu "${MPTCPDOCK_VM_TCG_CPU:-qemu64}") ;;
    esac
    [ "$link" -eq 0 ] || mapfile -t link_args < <(link_qemu_args)
    qemu-img create -q -f qcow2 -b "$BASE/rootfs.img" -F raw "$RUN/overlay.qcow2"
    : > "$RUN/console.log"
    # -nodefaults: no NIC, serial or monitor other than these; the first NIC is restricted user
    # networking whose only opening is the forward from the host's 127.0.0.1 (the guest's init
    # configures the first device); with --swarm-link the second is the swarm link's tap.
    qemu-system-x86_64 -name "$MARKER" -nodefaults -no-user-config "${accel_args[@]}" \
        -m "$MEM" -smp "$CPUS" \
        -kernel "$BASE/vmlinuz" -initrd "$BASE/initrd.img" \
        -append "root=/dev/vda rw console=ttyS0 init=$GUEST_INIT panic=-1 loglevel=4" \
        -drive "file=$RUN/overlay.qcow2,format=qcow2,if=virtio,cache=unsafe,discard=unmap" \
        -netdev "user,id=n0,restrict=on,ipv6=off,hostfwd=tcp:127.0.0.1:$port-:$GUEST_DOCKER_PORT" \
        -device virtio-net-pci,netdev=n0 \
        -device virtio-rng-pci \
        "${link_args[@]}" \
        -serial "file:$RUN/console.log" \
        -monitor "unix:$RUN/monitor.sock,server,nowait" \
        -display none -no-reboot \
        -daemonize -pidfile "$RUN/qemu.pid" > "$RUN/qemu.err" 2>&1 9>&-   # not the lock: QEMU outlives us
}

print_host_line() { echo "DOCKER_HOST=tcp://127.0.0.1:$1"; }

print_link_line() {
    local tap host vm
    read -r tap host vm < "$RUN/swarm-link"
    echo "SWARM_LINK=$host,$vm"
}

lock() {
    mkdir -p "$CACHE" "$RUN"
    exec 9> "$CACHE/lock"
    flock -n 9 && return
    say "waiting for another vm-host.sh (it holds $CACHE/lock)"
    flock -w 3600 9 || die "another vm-host.sh still holds $CACHE/lock after an hour"
}

cmd_start() {
    local with_image=0 swarm_link=0 arg
    for arg in "$@"; do
        case "$arg" in
            --with-image) with_image=1 ;;
            --swarm-link) swarm_link=1 with_image=1 ;;
            *) die "start: unknown option $arg (usage: start [--with-image] [--swarm-link])" ;;
        esac
    done
    need qemu-system-x86_64 "apt-get install qemu-system-x86 (or scripts/bootstrap.sh --vm)"
    need qemu-img "apt-get install qemu-utils (or scripts/bootstrap.sh --vm)"
    need docker "apt-get install docker.io"
    need python3 "apt-get install python3"
    check_accel_env
    if [ "$with_image" -eq 1 ]; then  # before anything boots: a start that cannot load the image starts nothing
        local tag src_env=()
        tag="$(node_image_tag)"
        [ "${DOCKER_HOST:-}" != "tcp://127.0.0.1:$(cat "$RUN/port" 2>/dev/null)" ] || src_env=(-u DOCKER_HOST)
        local_image_id "$tag" "${src_env[@]}" >/dev/null || die "$(no_local_image "$tag")"
    fi
    lock
    local pid port
    if pid="$(qemu_pid)"; then
        port="$(run_port)"
        if engine_answers "$port" && { [ "$swarm_link" -eq 0 ] || [ -f "$RUN/swarm-link" ]; }; then
            say "already running (pid $pid, accel $(cat "$RUN/accel" 2>/dev/null))"
            [ "$with_image" -eq 0 ] || { load_image "$port" ""; hold_keys "$port"; }
            [ ! -f "$RUN/swarm-link" ] || print_link_line
            print_host_line "$port"
            return
        fi
        if engine_answers "$port"; then
            say "QEMU $pid runs without the swarm link: restarting it with one"
        else
            say "QEMU $pid runs but its engine does not answer: restarting it"
        fi
        stop_qemu "$pid"
        link_down
    elif [ -e "$RUN/qemu.pid" ]; then
        say "removing the state of a VM that is gone"
    fi
    clear_run

    link_down       # a link a killed run left behind
    build_base
    local accel t0 tries=0
    accel="$(choose_accel)"
    [ "$swarm_link" -eq 0 ] || link_up
    while :; do
        if [ -n "${MPTCPDOCK_VM_PORT:-}" ]; then
            port="$MPTCPDOCK_VM_PORT"
            port_free "$port" || die "port $port on 127.0.0.1 is in use (MPTCPDOCK_VM_PORT)"
        else
            port="$(free_port)"
        fi
        say "booting ($accel, $MEM, $CPUS vCPUs, engine at 127.0.0.1:$port; console: $RUN/console.log)"
        t0=$SECONDS
        boot "$accel" "$port" "$swarm_link" && break
        tries=$((tries + 1))
        if [ -n "${MPTCPDOCK_VM_PORT:-}" ] || [ "$tries" -ge 3 ] || ! grep -qi 'forward' "$RUN/qemu.err"; then
            cat "$RUN/qemu.err" >&2
            clear_run
            link_down
            die "QEMU did not start (its error above)"
        fi
        say "port $port was taken meanwhile: another one"
    done
    echo "$port" > "$RUN/port"
    echo "$accel" > "$RUN/accel"
    pid="$(qemu_pid)" || { console_tail; clear_run; link_down; die "QEMU exited right after starting"; }

    until engine_answers "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            console_tail 40
            clear_run
            link_down
            die "the VM stopped before its engine answered"
        fi
        if [ $((SECONDS - t0)) -ge "$TIMEOUT" ]; then
            console_tail 40
            stop_qemu "$pid"
            clear_run
            link_down
            die "the VM's engine did not answer within $TIMEOUT s (MPTCPDOCK_VM_TIMEOUT); the VM was stopped"
        fi
        sleep 1
    done
    say "engine answering $((SECONDS - t0)) s after boot: $(vm_docker "$port" version -f 'Docker {{.Server.Version}}, API {{.Server.APIVersion}}' 2>/dev/null), kernel $(vm_docker "$port" info -f '{{.KernelVersion}}' 2>/dev/null)"
    [ "$with_image" -eq 0 ] || { load_image "$port" ""; hold_keys "$port"; }
    if [ "$swarm_link" -eq 1 ]; then
        link_guest "$port"
        print_link_line
    fi
    print_host_line "$port"
}

# One idle container for the VM's life: with it, the device-cgroup BPF program count never
# drops to 0 between labs, so its static key is not patched again (see the guest init's
# holders: under multi-threaded TCG a patched static key can kill the guest). No network, no
# capabilities, no lab label (the tier's checks for leftovers look for that label).
hold_keys() {
    local port="$1"
    if [ "$(vm_docker "$port" inspect -f '{{.State.Running}}' "$KEY_HOLDER" 2>/dev/null)" = true ]; then
        say "static keys held: $KEY_HOLDER (already running)"
        return
    fi
    vm_docker "$port" rm -f "$KEY_HOLDER" >/dev/null 2>&1 || true
    vm_docker "$port" run -d --name "$KEY_HOLDER" --network none --cap-drop ALL --restart no \
        "$(node_image_tag)" sleep infinity >/dev/null || die "starting the key-holding container failed (see above)"
    say "static keys held: $KEY_HOLDER (idle, no network)"
}

# Power the guest off through QEMU's monitor; kill the QEMU if it is still there after a while.
stop_qemu() {
    local pid="$1" waited=0
    if [ -S "$RUN/monitor.sock" ] && python3 - "$RUN/monitor.sock" <<'EOF' 2>/dev/null
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(b"system_powerdown\n")
time.sleep(0.3)
EOF
    then
        say "asked the guest to power off (pid $pid)"
        while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 60 ]; do sleep 0.5; waited=$((waited + 1)); done
    fi
    if kill -0 "$pid" 2>/dev/null; then
        say "the guest did not power off: killing QEMU $pid"
        kill -TERM "$pid" 2>/dev/null || true
        waited=0
        while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 20 ]; do sleep 0.5; waited=$((waited + 1)); done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    else
        say "the guest powered off"
    fi
}

cmd_stop() {
    lock
    local pid
    if pid="$(qemu_pid)"; then
        stop_qemu "$pid"
        kill -0 "$pid" 2>/dev/null && die "QEMU $pid is still running"
        say "stopped"
    elif [ -e "$RUN/qemu.pid" ]; then
        say "not running (pid file $(cat "$RUN/qemu.pid" 2>/dev/null) is not a QEMU of ours; left it alone)"
    else
        say "not running"
    fi
    clear_run
    link_down
}

cmd_status() {
    local pid port
    if ! pid="$(qemu_pid)"; then
        echo "[vm-host] not running (cache: $CACHE)"
        return 3
    fi
    port="$(run_port)"
    echo "[vm-host] pid $pid, accel $(cat "$RUN/accel" 2>/dev/null), port $port, console $RUN/console.log"
    if engine_answers "$port"; then
        echo "[vm-host] running: engine answering"
        [ ! -f "$RUN/swarm-link" ] || print_link_line
        print_host_line "$port"
        return 0
    fi
    echo "[vm-host] QEMU running, engine not answering (booting, or broken: see the console log)"
    return 3
}

# ---------------------------------------------------------------------------------------------
# The node image, over the API.

NODE_IMAGE_PY='from mptcpdock import NODE_IMAGE; print(NODE_IMAGE)'

mptcpdock_cli() {
    if [ -x "$REPO/.venv/bin/mptcpdock" ]; then echo "$REPO/.venv/bin/mptcpdock"; else command -v mptcpdock; fi
}

node_image_tag() {
    local cli
    cli="$(mptcpdock_cli)" || die "mptcpdock not found (fix: scripts/bootstrap.sh, which makes $REPO/.venv)"
    "$(dirname "$cli")/python" -c "$NODE_IMAGE_PY" 2>/dev/null || PYTHONPATH="$REPO" python3 -c "$NODE_IMAGE_PY" 2>/dev/null ||
        die "cannot tell the node image's tag: pass it (load-image TAG)"
}

# The node image's id on this machine's engine (not the VM's: DOCKER_HOST may name the VM).
local_image_id() {
    local tag="$1"; shift
    env "$@" docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null
}
no_local_image() { echo "$1 is not on the local engine (fix: scripts/bootstrap.sh, or mptcpdock image build)"; }

# Copy TAG from the local engine (DOCKER_HOST as set, unless that is the VM) into the VM's.
load_image() {
    local port="$1" tag="$2" cli vm_host src_env=() src_id vm_id t0 t1 tarball
    vm_host="tcp://127.0.0.1:$port"
    cli="$(mptcpdock_cli)" || die "mptcpdock not found (fix: scripts/bootstrap.sh, which makes $REPO/.venv)"
    [ -n "$tag" ] || tag="$(node_image_tag)"
    [ "${DOCKER_HOST:-}" != "$vm_host" ] || src_env=(-u DOCKER_HOST)
    src_id="$(local_image_id "$tag" "${src_env[@]}")" || die "$(no_local_image "$tag")"
    vm_id="$(vm_docker "$port" image inspect -f '{{.Id}}' "$tag" 2>/dev/null)" || vm_id=
    if [ "$vm_id" = "$src_id" ]; then
        say "$tag is already in the VM engine (${src_id:7:12})"
        return
    fi
    tarball="$RUN/image.tar"
    t0=$SECONDS
    env "${src_env[@]}" "$cli" image save --tag "$tag" "$tarball" >&2
    t1=$SECONDS
    env -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH -u DOCKER_CONTEXT DOCKER_HOST="$vm_host" \
        "$cli" image load "$tarball" >&2 || { rm -f "$tarball"; die "loading $tag into the VM engine failed"; }
    rm -f "$tarball"
    vm_id="$(vm_docker "$port" image inspect -f '{{.Id}}' "$tag" 2>/dev/null)" || vm_id=
    [ "$vm_id" = "$src_id" ] || die "the VM engine has $tag as ${vm_id:-nothing}, not ${src_id}"
    say "$tag copied into the VM engine: save $((t1 - t0)) s, load $((SECONDS - t1)) s"
}

cmd_load_image() {
    [ "$#" -le 1 ] || die "usage: load-image [TAG]"
    local pid port
    pid="$(qemu_pid)" || die "the VM is not running (fix: $0 start)"
    port="$(run_port)"
    engine_answers "$port" || die "the VM's engine does not answer (see $RUN/console.log)"
    load_image "$port" "${1:-}"
}

cmd_build() {
    lock
    build_base
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
}

case "${1:-}" in
    start) shift; cmd_start "$@" ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    load-image) shift; cmd_load_image "$@" ;;
    build) cmd_build ;;
    link-check) if why="$(link_impossible)"; then echo "$why"; exit 3; fi ;;
    -h|--help|help) usage ;;
    *) usage; exit 2 ;;
esac
