#!/usr/bin/env bash
# Make sure a Docker engine answers (installing Debian's docker.io and starting dockerd if needed), and that
# the other tools the tests need on this machine are installed.
# No service manager runs dockerd on the machines this project is tested on, so we start it ourselves.
set -euo pipefail

need_packages=()
command -v dockerd >/dev/null 2>&1 || need_packages+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_packages+=(debootstrap)
# A C compiler: the lifecycle tests build a fault-injection library (molecule/shared/tests/slow_accept.c).
command -v cc >/dev/null 2>&1 || need_packages+=(gcc libc6-dev)
if ((${#need_packages[@]})); then
  echo "ensure-docker: installing ${need_packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi

log=/var/log/flask-uwsgi-dockerd.log
echo "ensure-docker: starting dockerd (log: $log)"
nohup dockerd >"$log" 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "ensure-docker: dockerd did not answer within 60 s; last lines of $log:" >&2
tail -n 20 "$log" >&2
exit 1
