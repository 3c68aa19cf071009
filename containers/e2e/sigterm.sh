#!/usr/bin/env bash
# SIGTERM to `pipeline.py local --runner docker` while a task's container runs: the run must end
# (exit 143) and leave no task container running. Needs a running Docker engine and .venv.
#   STAND_IN=1   tag a stand-in as the project's images (a shell and `sleep` copied from this
#                host: each task's "python3" sleeps), for an engine without `make images`; it
#                checks how the run stops its containers, not the task's own cleanup.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "${STAND_IN:-0}" = 1 ]; then
    rootfs="$work/rootfs"
    mkdir -p "$rootfs/bin" "$rootfs/usr/local/bin" "$rootfs/tmp"
    chmod 1777 "$rootfs/tmp"
    for b in /bin/sh /bin/sleep /bin/mktemp; do
        cp -L "$b" "$rootfs/bin/"
        for lib in $(ldd "$b" | grep -o '/[^ ]*'); do
            mkdir -p "$rootfs$(dirname "$lib")"
            cp -nL "$lib" "$rootfs$lib"
        done
    done
    printf '#!/bin/sh\nexec /bin/sleep 300\n' > "$rootfs/usr/local/bin/python3"
    chmod +x "$rootfs/usr/local/bin/python3"
    tar -C "$rootfs" -c . | docker import - protloc-stand-in:sigterm > /dev/null
    for tag in $($PY -c "from components import cluster; print(*cluster.images().values())"); do
        docker tag protloc-stand-in:sigterm "$tag"
    done
fi
$PY -m protloc.synthetic --out "$work/data" --n-train 40 --n-test 8 --size 96 --seed 1 > /dev/null
$PY pipeline.py local --runner docker --data-root "$work/data" --root "$work/root" \
    --schedule 80:8:1 > "$work/run.log" 2>&1 &
pid=$!
running() { docker ps -q --filter label=org.protloc.run | wc -l; }
for _ in $(seq 120); do
    [ "$(running)" -gt 0 ] && break
    sleep 1
done
[ "$(running)" -gt 0 ] || { echo "FAIL: no task container started"; tail -20 "$work/run.log"; exit 1; }
echo "task containers before SIGTERM: $(running)"
start=$(date +%s.%N)
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
echo "pipeline.py ended with exit status $rc after $(echo "$(date +%s.%N) - $start" | bc) s"
left=$(running)
echo "task containers left running: $left"
[ "$rc" = 143 ] && [ "$left" = 0 ] || { echo FAIL; tail -20 "$work/run.log"; exit 1; }
echo PASS
