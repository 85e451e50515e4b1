# Shared by scripts/soak and scripts/density (POSIX sh, sourced after scripts/lib.sh):
# a private root (disk), run root (tmpfs), bridge and subnet, a local registry with
# busybox, a registered sleeper task definition, and helpers that count what tasks leave.
#
# Sets W, RUN, MF, MFG, BRIDGE, IMAGE. Call rel_setup FAMILY then rel_cleanup at exit.

rel_setup() {
    family="$1"
    [ "$(id -u)" = 0 ] || die "run as root"
    install_deps
    TARGET="${CARGO_TARGET_DIR:-$(pwd)/target}"
    if [ -n "${MINIFARGATE_BIN:-}" ]; then
        MF="$MINIFARGATE_BIN"
    else
        log "building the release binary"
        cargo build --release --locked --bin minifargate
        MF="$TARGET/release/minifargate"
    fi
    W="$(mktemp -d /var/tmp/mf-rel.XXXXXX)"
    RUN="$(mktemp -d /run/mf-rel.XXXXXX)"
    BRIDGE="mfrel$(($$ % 10000))"
    export MINIFARGATE_BRIDGE="$BRIDGE" MINIFARGATE_SUBNET="${REL_SUBNET:-10.93.0.0/24}"
    PORT="$(free_port 5100)"
    registry_start "$W/registry" "$PORT"
    build_busybox_image "$W/layout" 1.36 >/dev/null
    IMAGE="127.0.0.1:$PORT/rel/busybox:1.36"
    push_layout "$W/layout" 1.36 "$IMAGE" >/dev/null
    printf '[[registry]]\nprefix = "127.0.0.1:%s"\ninsecure = true\n' "$PORT" >"$W/config.toml"
    MFG="$MF --root $W/root --run-root $RUN/mf --config $W/config.toml"
    $MFG pull "$IMAGE" >/dev/null
    # A sleeper that stops at once on SIGTERM (sleep as pid 1 would wait stopTimeout).
    # It reserves 16 MiB on the box (memoryReservation, as ECS places it) under a 32 MiB
    # hard limit: 1000 of them fit a 24 GiB box (with `memory` alone, 32 MiB each, ~750).
    cat >"$W/td.json" <<JSON
{"family": "$family", "networkMode": "awsvpc", "containerDefinitions": [
  {"name": "app", "image": "$IMAGE", "essential": true, "memory": 32,
   "memoryReservation": 16, "stopTimeout": 2,
   "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}]}
JSON
    $MFG register-task-definition --cli-input-json "file://$W/td.json" >/dev/null
    : >"$W/ids"
}

rel_cleanup() {
    [ -n "${W:-}" ] || return 0
    $MFG list-tasks 2>/dev/null | jq -r '.taskArns[]?' 2>/dev/null \
        | while read -r t; do $MFG stop-task --task "$t" >/dev/null 2>&1 || true; done
    for p in $(cat "$RUN"/mf/tasks/*/supervisor.pid 2>/dev/null); do
        i=0; while kill -0 "$p" 2>/dev/null && [ "$i" -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
    done
    [ -n "${SERVE_PID:-}" ] && kill "$SERVE_PID" 2>/dev/null || true
    for m in $(awk -v p="$W" -v r="$RUN" 'index($5, p "/") == 1 || index($5, r "/") == 1 {print $5}' \
        /proc/self/mountinfo | sort -r); do umount -l "$m" 2>/dev/null || true; done
    registry_stop "$W/registry"
    ip link del "$BRIDGE" 2>/dev/null || true
    nft delete table ip "minifargate_$BRIDGE" 2>/dev/null || true
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$W" "$RUN"
}

# rel_counts: one line of what the tasks of this run hold on the host right now.
# mounts: under W and RUN; netns: /run/netns pins of our tasks; veths: ports of our
# bridge; cgroups: task cgroup dirs of our tasks (any controller); leases: addresses
# the netns state holds (files in its state/ips, releasing tasks' included); procs:
# processes in our tasks' cgroups.
rel_counts() {
    # Not the run root's template mount namespace (its dir and pin, kept until `system
    # reset`: src/supervisor/isolation/mountns/template.rs).
    mounts="$(awk -v p="$W" -v r="$RUN" '(index($5, p "/") == 1 || index($5, r "/") == 1) &&
        $5 !~ /\/mntns(\/ns)?$/' /proc/self/mountinfo | wc -l)"
    netns=0; cgroups=0; procs=0
    while read -r id; do
        [ -e "/run/netns/mfg-$id" ] && netns=$((netns + 1))
        for d in /sys/fs/cgroup/*/minifargate/"$id"; do
            [ -d "$d" ] || continue
            cgroups=$((cgroups + 1))
            procs=$((procs + $(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | wc -l)))
        done
    done <"$W/ids"
    veths="$(ls "/sys/class/net/$BRIDGE/brif" 2>/dev/null | wc -l)"
    leases="$(ls "$RUN/mf/net/$BRIDGE/state/ips" 2>/dev/null | wc -l)"
    echo "mounts=$mounts netns=$netns veths=$veths cgroups=$cgroups leases=$leases procs=$procs"
}

# rel_mem PID…: mean RSS, PSS and private dirty of the PIDs (smaps_rollup), in MiB.
rel_mem() {
    for p in "$@"; do cat "/proc/$p/smaps_rollup" 2>/dev/null; done | awk -v n=$# '
        /^Rss:/ {r+=$2} /^Pss:/ {p+=$2} /^Private_Dirty:/ {d+=$2}
        END {printf "RSS %.2f MiB, PSS %.2f MiB, private dirty %.2f MiB (mean of %d)", r/1024/n, p/1024/n, d/1024/n, n}'
}

# rel_wait_status STATUS TIMEOUT_S ID…: until every task's lastStatus is STATUS.
rel_wait_status() {
    want="$1"; timeout="$2"; shift 2
    end=$(($(date +%s) + timeout))
    while :; do
        n="$($MFG describe-tasks --tasks "$@" | jq --arg w "$want" '[.tasks[] | select(.lastStatus != $w)] | length')"
        [ "$n" = 0 ] && return 0
        [ "$(date +%s)" -lt "$end" ] || { log "$n task(s) not $want after ${timeout}s"; return 1; }
        sleep 0.2
    done
}
