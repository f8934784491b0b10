#!/usr/bin/env bash
# Build a plain Debian image with systemd as PID 1 from debootstrap (no registry needed),
# once: an existing image of that name is reused. Usage: build-test-image.sh [SUITE] [IMAGE]
set -euo pipefail

suite=${1:-bookworm}
image=${2:-flask-uwsgi-test:$suite}

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "build-test-image: $image already exists"
  exit 0
fi

# The Debian mirror apt already uses (other source lists on a machine may not be Debian mirrors).
mirror=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null \
  | tr ' ' '\n' | grep -v -- '-security' | head -n 1 || true)
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d /var/tmp/flask-uwsgi-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

echo "build-test-image: debootstrap $suite from $mirror"
start=$SECONDS
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,procps,iproute2,ca-certificates \
  "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; exit 1; }
rm -f "$rootfs.log"

# HTTPS from this network may pass a TLS-intercepting proxy whose CA only the host trusts.
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
# A container has no consoles to spawn gettys on, and a fresh machine-id per container.
rm -f "$rootfs/etc/machine-id" && touch "$rootfs/etc/machine-id"
chroot "$rootfs" apt-get clean

tar -C "$rootfs" -c . | docker import \
  -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' - "$image" >/dev/null
echo "build-test-image: built $image in $((SECONDS - start)) s"
