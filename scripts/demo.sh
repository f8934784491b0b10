#!/usr/bin/env bash
# make demo: start (or reuse) a local Debian container with systemd, deploy examples/flask-demo to
# it with the real playbook, and show the app's answer. Safe to run again: the second deploy
# changes nothing. DEBIAN=12 (the default) or DEBIAN=13 picks the release; each has its own
# container and port, so both can run side by side.
set -euo pipefail
cd "$(dirname "$0")/.."

debian=${DEBIAN:-12}
case $debian in
  12) suite=bookworm default_port=8080 ;;
  13) suite=trixie default_port=8081 ;;
  *) echo "demo: DEBIAN must be 12 or 13, not '$debian'" >&2; exit 2 ;;
esac
name=flask-uwsgi-demo-debian$debian
image=flask-uwsgi-test:$suite
port=${DEMO_PORT:-$default_port}

bash scripts/build-test-image.sh "$suite" "$image"
if [ "$(docker inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" != "true" ]; then
  docker rm --force "$name" >/dev/null 2>&1 || true
  echo "demo: starting the test host $name from $image"
  # systemd as PID 1 without --privileged, which fails on some hosts (see docs/testing.md).
  docker run --detach --name "$name" --hostname "$name" \
    --cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --cgroupns host --volume /sys/fs/cgroup:/sys/fs/cgroup:rw \
    --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
    --publish "127.0.0.1:$port:8000" "$image" /lib/systemd/systemd >/dev/null
  for _ in $(seq 1 30); do
    state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
    [[ $state == running || $state == degraded ]] && break
    sleep 1
  done
fi

ansible-playbook -i inventory/demo playbooks/deploy.yml --limit "$name"

echo
echo "demo: the app answers on http://127.0.0.1:$port/ (Debian $debian, $suite):"
curl --silent --show-error --fail "http://127.0.0.1:$port/"
curl --silent --show-error --fail "http://127.0.0.1:$port/health"
echo
echo "demo: try it yourself:"
echo "  curl http://127.0.0.1:$port/"
echo "  docker exec $name systemctl status flask-demo"
echo "  docker exec $name journalctl -u flask-demo"
echo "demo: remove the demo hosts with: make demo-clean"
