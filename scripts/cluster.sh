# Shared by scripts/demo-cluster and scripts/bench-cluster (POSIX sh, sourced after
# scripts/lib.sh): "boxes" of one cluster on this machine. A private etcd on loopback
# (its own data dir and free ports), `minifargate serve --cluster` on loopback, and agents
# each with a box's own state root, run root, bridge, subnet (so its own nftables table,
# minifargate_<bridge>) and the registries config whose mirror is the local registry.
# Everything is stopped by its pid and removed by cl_cleanup, which the scripts run from
# their EXIT trap (also on Ctrl-C and failure); cl_leaks says what is left.
#
# Call cl_setup first (sets W, RUN, MF, AWS; needs MF set), then etcd_start,
# serve_start N [ARGS…], agent_start I [ARGS…].
#
# etcd runs as docs/cluster.md tells a user to run it: https with client-certificate
# authentication, the certificates made by `minifargate cluster init` in $W/pki (serve
# with its bundle, each box with its own from `cluster add-box boxI`; etcdctl and
# cl_etcd_curl as the operator through ETCDCTL_CACERT/CERT/KEY, etcdctl as etcd's user
# root through ETCDCTL_USER: `cluster enable-auth` turns etcd's users and roles on).
# CL_ETCD_PLAIN=1 (set
# before etcd_start): plain http as before (with CL_NETNS=1 the agents then need
# --etcd-insecure-plaintext, which agent_start gives).
#
# CL_ETCD_MEMBERS=N (set before etcd_start; default 1): etcd of N members on loopback.
# ETCD is the first member's URL (etcdctl, curl), ETCD_ALL every member's (serve's
# --cluster), ETCD_PIDS their pids.
#
# CL_JOIN=1 (set before etcd_start; needs TLS): the token flow (docs/cluster.md, "Joining a
# box with a token"): serve N also opens its port for boxes (--boxes-listen, on the
# bridge's host address with CL_NETNS=1, else loopback), each box joins with a token of
# one use made by `cluster token create` and runs `agent --server` only: it never touches
# etcd (which then listens on loopback only, out of the boxes' reach) and holds no etcd
# certificate of the operator's making; serve reaches it through the tunnel it dialed.
#
# CL_NETNS=1 (set before cl_setup): each agent's box is a network namespace instead
# (mfcl<N>b<I>, joined by a veth to a bridge of the run, mfcl<N>l, 10.91.<NET>.0/24, the
# host .1, box I .1<I>), with its own links, routes and nftables: the boxes lease their
# task subnets from 10.92.<NET+4>.0/22 and route each other's (docs/cluster.md, "Task
# addresses across boxes"). etcd and the registry then also listen on the bridge's host
# address, which a host nftables table of the run (mfcl<N>_lan) lets only the boxes and
# the host itself reach.

cl_setup() {
    prefix="$1"
    W="$(mktemp -d "/var/tmp/$prefix.XXXXXX")"
    RUN="$(mktemp -d "/run/$prefix.XXXXXX")"
    : >"$W/ids"; : >"$W/pids"
    # One number per run: the boxes' bridges and subnets (10.92.0.0/16, apart from the
    # default 10.94.0.0/16, the tests' 10.97.0.0/16 and the reliability scripts' 10.93).
    CL_N=$(($$ % 9000))
    CL_NET=$(($$ % 20 * 12))
    AWS_BIN="$(aws_cli)"
    # One access key for every serve of the run (MINIFARGATE_API_ACCESS_KEY_ID), which
    # the AWS CLI and curl --aws-sigv4 sign with; ~/.aws is left alone.
    AWS_ACCESS_KEY_ID="AKIA$(openssl rand -hex 8 | tr a-f A-F)"
    AWS_SECRET_ACCESS_KEY="$(openssl rand -hex 20)"
    export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
    export AWS_CONFIG_FILE="$W/no-aws-config" AWS_SHARED_CREDENTIALS_FILE="$W/no-aws-credentials"
    PORT="$(free_port 5300)"
    REG_ADDR=127.0.0.1
    if [ "${CL_NETNS:-0}" = 1 ]; then
        cl_lan_setup
        REG_ADDR="$CL_GW"
    fi
    registry_start "$W/registry" "$PORT" "$REG_ADDR"
    build_busybox_image "$W/layout" 1.36 >/dev/null
    push_layout "$W/layout" 1.36 "$REG_ADDR:$PORT/docker/library/busybox:1.36" >/dev/null
    log "busybox pushed to $REG_ADDR:$PORT, the mirror of public.ecr.aws"
    cat >"$W/config.toml" <<CONF
[[registry]]
prefix = "public.ecr.aws"
insecure = false

[[registry.mirror]]
location = "$REG_ADDR:$PORT"
insecure = true
CONF
}

# CL_NETNS=1: the boxes' network: a bridge with the host's address on it, and a host
# nftables table that drops what reaches that address from anywhere but the bridge and
# the host itself (other bridges' tasks).
cl_lan_setup() {
    CL_LAN="mfcl${CL_N}l"
    CL_GW="10.91.$CL_NET.1"
    ip link add "$CL_LAN" type bridge
    ip addr add "$CL_GW/24" dev "$CL_LAN"
    ip link set "$CL_LAN" up
    nft -f - <<NFT
table ip mfcl${CL_N}_lan {
  chain input {
    type filter hook input priority 0; policy accept;
    ip daddr $CL_GW iifname != { "$CL_LAN", "lo" } drop
  }
}
NFT
    log "boxes' network: bridge $CL_LAN, host address $CL_GW (table ip mfcl${CL_N}_lan)"
}

# Box I's network namespace (CL_NETNS=1) and its address on the bridge.
cl_ns() { echo "mfcl${CL_N}b$1"; }
cl_box_addr() { echo "10.91.$CL_NET.1$1"; }

# CL_NETNS=1: box I's namespace, veth (eth0 inside), address and default route.
cl_box_netns() {
    ns="$(cl_ns "$1")"
    ip netns add "$ns"
    ip link add "mfcl${CL_N}v$1" type veth peer name eth0 netns "$ns"
    ip link set "mfcl${CL_N}v$1" master "$CL_LAN" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$(cl_box_addr "$1")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$CL_GW"
}

# The command prefix that runs in box I's namespace (nothing without one).
cl_in() {
    if [ -e "/run/netns/$(cl_ns "$1")" ]; then echo "nsenter --net=/run/netns/$(cl_ns "$1")"; fi
}

# Box I (0 is serve's own; 1.. are agents): its bridge and subnet.
cl_bridge() { echo "mfcl${CL_N}b$1"; }
cl_subnet() { echo "10.92.$((CL_NET + $1)).0/24"; }

# `minifargate` as box I: its own root, run root, config, bridge, subnet.
cl_mf() {
    _b="$1"; shift
    # shellcheck disable=SC2046
    MINIFARGATE_BRIDGE="$(cl_bridge "$_b")" MINIFARGATE_SUBNET="$(cl_subnet "$_b")" \
        $(cl_in "$_b") "$MF" --root "$W/box$_b/root" --run-root "$RUN/box$_b" --config "$W/config.toml" "$@"
}

etcd_start() {
    ETCD_PORT="$(free_port 23790)"
    peer="$(free_port $((ETCD_PORT + 1)))"
    mkdir -p "$W/etcd"
    CL_ETCD_TLS=""; CL_CURL_TLS=""
    scheme=http; tls=""
    if [ "${CL_ETCD_PLAIN:-0}" != 1 ]; then
        scheme=https
        hosts=""; [ "${CL_NETNS:-0}" = 1 ] && hosts="--etcd-host $CL_GW"
        # shellcheck disable=SC2086
        "$MF" cluster init --dir "$W/pki" $hosts >/dev/null
        P="$W/pki"
        tls="--client-cert-auth --trusted-ca-file $P/etcd/ca.crt --cert-file $P/etcd/server.crt --key-file $P/etcd/server.key"
        CL_ETCD_TLS=1
        CL_CURL_TLS="--cacert $P/admin/ca.crt --cert $P/admin/client.crt --key $P/admin/client.key"
        export ETCDCTL_CACERT="$P/admin/ca.crt" ETCDCTL_CERT="$P/admin/client.crt" ETCDCTL_KEY="$P/admin/client.key"
    fi
    ETCD="$scheme://127.0.0.1:$ETCD_PORT"
    # The agents' endpoint: the host's address on the boxes' bridge with CL_NETNS=1.
    ETCD_BOXES="$ETCD"
    listen="$ETCD"
    if [ "${CL_NETNS:-0}" = 1 ] && [ "${CL_JOIN:-0}" != 1 ]; then
        ETCD_BOXES="$scheme://$CL_GW:$ETCD_PORT"
        listen="$ETCD,$ETCD_BOXES"
    fi
    if [ "${CL_JOIN:-0}" = 1 ] && [ "$scheme" != https ]; then
        die "CL_JOIN=1 needs etcd with TLS (not CL_ETCD_PLAIN=1): a box joins a cluster made by cluster init"
    fi
    members="${CL_ETCD_MEMBERS:-1}"
    initial="mfcl=http://127.0.0.1:$peer"
    ETCD_ALL="$ETCD"
    m=1; p=$((peer + 1))
    while [ "$m" -lt "$members" ]; do
        c="$(free_port "$p")"; pp="$(free_port $((c + 1)))"; p=$((pp + 1))
        eval "CL_EC$m=$c; CL_EP$m=$pp"
        initial="$initial,mfcl$m=http://127.0.0.1:$pp"
        ETCD_ALL="$ETCD_ALL,$scheme://127.0.0.1:$c"
        m=$((m + 1))
    done
    # shellcheck disable=SC2086
    etcd --name mfcl --data-dir "$W/etcd/data" $tls \
        --listen-client-urls "$listen" --advertise-client-urls "$ETCD" \
        --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "$initial" \
        >"$W/etcd/etcd.log" 2>&1 </dev/null &
    ETCD_PID=$!
    ETCD_PIDS="$ETCD_PID"
    echo "etcd $ETCD_PID" >>"$W/pids"
    m=1
    while [ "$m" -lt "$members" ]; do
        eval "c=\$CL_EC$m; pp=\$CL_EP$m"
        # shellcheck disable=SC2086
        etcd --name "mfcl$m" --data-dir "$W/etcd/data$m" $tls \
            --listen-client-urls "$scheme://127.0.0.1:$c" --advertise-client-urls "$scheme://127.0.0.1:$c" \
            --listen-peer-urls "http://127.0.0.1:$pp" \
            --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
            --initial-cluster "$initial" \
            >"$W/etcd/etcd$m.log" 2>&1 </dev/null &
        ETCD_PIDS="$ETCD_PIDS $!"
        echo "etcd $!" >>"$W/pids"
        m=$((m + 1))
    done
    i=0
    until cl_etcd_curl -m 1 "$ETCD/health" 2>/dev/null | grep -q '"health":"true"'; do
        i=$((i + 1))
        [ "$i" -lt 200 ] || { cat "$W/etcd/etcd.log" >&2; die "etcd did not start"; }
        sleep 0.1
    done
    if [ -n "$CL_ETCD_TLS" ]; then
        # etcd's users and roles from the bundles, then its authentication on; etcdctl
        # as root.
        "$MF" cluster enable-auth --dir "$P" --cluster "$ETCD" >/dev/null
        ETCDCTL_USER="root:$(cat "$P/admin/etcd-password")"
        export ETCDCTL_USER
        log "etcd on $ETCD (pid $ETCD_PID, data in $W/etcd; client certificates and etcd users from minifargate cluster init in $W/pki)"
    else
        log "etcd on $ETCD (pid $ETCD_PID, data in $W/etcd; plain http: CL_ETCD_PLAIN=1)"
    fi
}

# curl ARGS… to etcd as the operator (its client certificate unless CL_ETCD_PLAIN=1).
# shellcheck disable=SC2086
cl_etcd_curl() { curl -s --noproxy '*' $CL_CURL_TLS "$@"; }

# The etcd TLS flags of serve (no argument) or of box I's agent: its own certificate,
# issued on first use (`cluster add-box boxI`).
cl_etcd_flags() {
    if [ -z "${CL_ETCD_TLS:-}" ]; then
        if [ "${CL_NETNS:-0}" = 1 ] && [ -n "${1:-}" ]; then echo "--etcd-insecure-plaintext"; fi
        return 0
    fi
    if [ -z "${1:-}" ]; then echo "--etcd-certs $W/pki/serve"; return 0; fi
    [ -d "$W/pki/boxes/box$1" ] || "$MF" cluster add-box "box$1" --dir "$W/pki" --cluster "$ETCD" >/dev/null
    echo "--etcd-certs $W/pki/boxes/box$1"
}

# etcd's current revision (the header of `endpoint status`).
etcd_revision() {
    ETCDCTL_API=3 etcdctl --endpoints "$ETCD" endpoint status -w json \
        | jq -r '.[0].Status.header.revision'
}

# serve_start N [ARGS…]: `serve --cluster` number N (its own root under box0's when N is
# 0, else serveN; its hosts-file block and the registry's certs.d trust in files of its
# own under $W/serveN, never the machine's /etc: what a serve killed by a fault leaves
# goes with the run's directory) on a free loopback port; sets SERVE_PID_N and, for N=0, ENDPOINT and the
# AWS_* variables for the CLI.
# CL_PLAIN=1: a plain one-box `serve` (no --cluster) that runs its tasks itself, on box
# CL_BOX's bridge and subnet (default 0).
serve_start() {
    n="$1"; shift
    sp="$(free_port $((8300 + n * 7)))"
    mkdir -p "$W/serve$n"
    echo "${CL_BOX:-0}" >"$W/serve$n/box"
    # shellcheck disable=SC2046
    if [ "${CL_PLAIN:-0}" = 1 ]; then set -- "$@"; else set -- --cluster "${ETCD_ALL:-$ETCD}" $(cl_etcd_flags) "$@"; fi
    if [ "${CL_JOIN:-0}" = 1 ] && [ "${CL_PLAIN:-0}" != 1 ]; then
        # serve's port for boxes: where the boxes reach it (the bridge's host address).
        ba=127.0.0.1; [ "${CL_NETNS:-0}" = 1 ] && ba="$CL_GW"
        bp="$(free_port $((7443 + n * 7)))"
        # The boxes' task range (their agents' --task-range, below): claims outside it refused.
        br=10.92.0.0/16; [ "${CL_NETNS:-0}" = 1 ] && br="10.92.$((CL_NET + 4)).0/22"
        set -- "$@" --boxes-listen "$ba:$bp" --cluster-dir "$W/pki" --boxes-task-range "$br"
        CL_SERVERS="${CL_SERVERS:+$CL_SERVERS,}https://$ba:$bp"
    fi
    MINIFARGATE_BRIDGE="$(cl_bridge "${CL_BOX:-0}")" MINIFARGATE_SUBNET="$(cl_subnet "${CL_BOX:-0}")" \
        HOME="$W/serve$n" \
        MINIFARGATE_HOSTS_FILE="$W/serve$n/hosts" \
        MINIFARGATE_REGISTRY_CERTS_D="$W/serve$n/certs.d" \
        MINIFARGATE_DOCKER_CERTS_D="$W/serve$n/docker-certs.d" \
        MINIFARGATE_API_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
        MINIFARGATE_API_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
        "$MF" --root "$W/serve$n/root" --run-root "$RUN/serve$n" --config "$W/config.toml" \
        serve --listen "127.0.0.1:$sp" --no-aws-profile "$@" \
        >>"$W/serve$n/serve.log" 2>&1 </dev/null &
    pid=$!
    echo "serve $pid $n" >>"$W/pids"
    eval "SERVE_PID_$n=$pid"
    i=0
    until [ "$(curl -s --noproxy '*' -m 1 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$sp/" 2>/dev/null)" = 401 ]; do
        i=$((i + 1))
        if [ "$i" -gt 200 ] || ! kill -0 "$pid" 2>/dev/null; then
            cat "$W/serve$n/serve.log" >&2; die "serve $n did not start"
        fi
        sleep 0.1
    done
    eval "SERVE_URL_$n=http://127.0.0.1:$sp"
    [ "$n" = 0 ] && ENDPOINT="http://127.0.0.1:$sp"
    log "serve $n on http://127.0.0.1:$sp (pid $pid)"
}

# `aws ecs …` against serve 0.
ecs() { "$AWS_BIN" ecs --endpoint-url "$ENDPOINT" --region us-east-1 --output json "$@"; }

# The flags that make box I a member: its bundle's (`--etcd-certs`, with --cluster), or
# with CL_JOIN=1 serve's port for boxes and, at its first start, a join token of one use.
cl_member_flags() {
    if [ "${CL_JOIN:-0}" != 1 ]; then
        echo "--cluster $ETCD_BOXES $(cl_etcd_flags "$1")"
        return 0
    fi
    echo "--server $CL_SERVERS --name box$1"
    if [ ! -d "$W/box$1/root/agent/bundle" ]; then
        echo "--token $("$MF" cluster token create --dir "$W/pki" --etcd "$ETCD" --description "box$1 of $W" 2>>"$W/box$1/agent.log")"
    fi
}

# agent_start I [ARGS…]: box I's agent; sets AGENT_PID_I.
agent_start() {
    _a="$1"; shift
    mkdir -p "$W/box$_a"
    # A simple command (not the cl_mf function) in the background: $! is the agent itself
    # (nsenter execs it). Its etcd certificate is issued first, here, not in the $(…)
    # below (a subshell).
    [ "${CL_JOIN:-0}" = 1 ] || cl_etcd_flags "$_a" >/dev/null
    _m="$(cl_member_flags "$_a")"
    # shellcheck disable=SC2046,SC2086
    if [ "${CL_NETNS:-0}" = 1 ]; then
        [ -e "/run/netns/$(cl_ns "$_a")" ] || cl_box_netns "$_a"
        MINIFARGATE_BRIDGE="$(cl_bridge "$_a")" MINIFARGATE_HOSTS_FILE="$W/box$_a/hosts" \
            nsenter --net="/run/netns/$(cl_ns "$_a")" \
            "$MF" --root "$W/box$_a/root" --run-root "$RUN/box$_a" --config "$W/config.toml" \
            agent $_m --task-range "10.92.$((CL_NET + 4)).0/22" "$@" \
            >>"$W/box$_a/agent.log" 2>&1 </dev/null &
    else
        MINIFARGATE_BRIDGE="$(cl_bridge "$_a")" MINIFARGATE_SUBNET="$(cl_subnet "$_a")" \
            MINIFARGATE_HOSTS_FILE="$W/box$_a/hosts" \
            "$MF" --root "$W/box$_a/root" --run-root "$RUN/box$_a" --config "$W/config.toml" \
            agent $_m --task-range 10.92.0.0/16 "$@" \
            >>"$W/box$_a/agent.log" 2>&1 </dev/null &
    fi
    _p=$!
    echo "agent $_p $_a" >>"$W/pids"
    eval "AGENT_PID_$_a=$_p"
}

# The container instance ARN of box I (once its agent has registered).
agent_arn() {
    f="$W/box$1/root/agent/instance-id"
    i=0
    until [ -s "$f" ]; do
        i=$((i + 1)); [ "$i" -lt 200 ] || { cat "$W/box$1/agent.log" >&2; die "box $1 did not register"; }
        sleep 0.1
    done
    echo "arn:aws:ecs:us-east-1:000000000000:container-instance/default/$(cat "$f")"
}

# The supervisors' pids of box I (its run root's tasks).
box_supervisors() { cat "$RUN/box$1"/tasks/*/supervisor.pid 2>/dev/null || true; }

# box_kill I: the box dies: kill -9 its agent and every supervisor it started.
box_kill() {
    eval "pid=\${AGENT_PID_$1:-}"
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    for p in $(box_supervisors "$1"); do kill -9 "$p" 2>/dev/null || true; done
}

# Every task id a box's store knows (for the leak check).
cl_record_ids() {
    for d in "$RUN"/box*/tasks/* "$RUN"/serve*/tasks/*; do
        [ -d "$d" ] && basename "$d" >>"$W/ids"
    done
    sort -u "$W/ids" -o "$W/ids"
}

cl_cleanup() {
    [ -n "${W:-}" ] || return 0
    set +e
    cl_record_ids
    # Agents first (SIGTERM: they revoke their lease), then each box's tasks stopped on
    # the box, dead supervisors cleaned up after, its data plane removed (`agent
    # --leave`), and the box's network (bridge, nftables table, namespaces) and store
    # removed with `system reset`.
    while read -r kind pid _; do
        [ "$kind" = agent ] && kill "$pid" 2>/dev/null
    done <"$W/pids"
    while read -r kind pid _; do
        [ "$kind" = agent ] || continue
        i=0; while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
        kill -9 "$pid" 2>/dev/null
    done <"$W/pids"
    for box in "$W"/box*; do
        [ -d "$box/root" ] || continue
        i="${box##*/box}"
        cl_mf "$i" list-tasks 2>/dev/null | jq -r '.taskArns[]?' 2>/dev/null \
            | while read -r t; do cl_mf "$i" stop-task --task "$t" >/dev/null 2>&1; done
    done
    for p in $(cat "$RUN"/box*/tasks/*/supervisor.pid 2>/dev/null); do
        i=0; while kill -0 "$p" 2>/dev/null && [ "$i" -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
        kill -9 "$p" 2>/dev/null
    done
    while read -r kind pid _; do
        case "$kind" in serve|etcd) kill "$pid" 2>/dev/null ;; esac
    done <"$W/pids"
    while read -r kind pid _; do
        case "$kind" in serve|etcd) ;; *) continue ;; esac
        i=0; while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
        kill -9 "$pid" 2>/dev/null
    done <"$W/pids"
    for box in "$W"/box* "$W"/serve*; do
        [ -d "$box/root" ] || continue
        name="${box##*/}"
        case "$name" in
        box*) i="${name#box}"; cl_mf "$i" list-tasks >/dev/null 2>&1
              # The box's data plane (DNS server, Service Connect listeners, routes)
              # outlives its agent's SIGTERM: it goes for good here.
              cl_mf "$i" agent --leave --ecs-config /dev/null >/dev/null 2>&1
              cl_mf "$i" system reset -f >/dev/null 2>&1 ;;
        serve*) sb="$(cat "$box/box" 2>/dev/null || echo 0)"
              for t in $(MINIFARGATE_BRIDGE="$(cl_bridge "$sb")" "$MF" --root "$box/root" \
                  --run-root "$RUN/$name" list-tasks 2>/dev/null | jq -r '.taskArns[]?' 2>/dev/null); do
                  MINIFARGATE_BRIDGE="$(cl_bridge "$sb")" "$MF" --root "$box/root" \
                      --run-root "$RUN/$name" stop-task --task "$t" >/dev/null 2>&1
              done
              for p in $(cat "$RUN/$name"/tasks/*/supervisor.pid 2>/dev/null); do
                  j=0; while kill -0 "$p" 2>/dev/null && [ "$j" -lt 200 ]; do sleep 0.05; j=$((j + 1)); done
              done
              MINIFARGATE_BRIDGE="$(cl_bridge "$sb")" MINIFARGATE_SUBNET="$(cl_subnet "$sb")" \
              "$MF" --root "$box/root" --run-root "$RUN/$name" system reset -f >/dev/null 2>&1 ;;
        esac
    done
    # CL_BEFORE_FORCED_CLEANUP: a function run here, to see what the product's own
    # teardown left before the lines below remove it (scripts/chaos-cluster).
    [ -z "${CL_BEFORE_FORCED_CLEANUP:-}" ] || "$CL_BEFORE_FORCED_CLEANUP"
    for m in $(awk -v p="$W" -v r="$RUN" 'index($5, p "/") == 1 || index($5, r "/") == 1 {print $5}' \
        /proc/self/mountinfo | sort -r); do umount -l "$m" 2>/dev/null; done
    while read -r id; do
        [ -n "$id" ] || continue
        ip netns delete "mfg-$id" 2>/dev/null
        for d in /sys/fs/cgroup/*/minifargate/"$id"; do
            [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
        done
    done <"$W/ids"
    for i in $(seq 0 11); do
        ip link del "$(cl_bridge "$i")" 2>/dev/null
        nft delete table ip "minifargate_$(cl_bridge "$i")" 2>/dev/null
        # CL_NETNS=1: the box's namespace (with it its veth, task bridge, routes and
        # nftables table).
        ip netns del "$(cl_ns "$i")" 2>/dev/null
        ip link del "mfcl${CL_N}v$i" 2>/dev/null
    done
    ip link del "mfcl${CL_N}l" 2>/dev/null
    nft delete table ip "mfcl${CL_N}_lan" 2>/dev/null
    registry_stop "$W/registry"
    cl_leaks
    if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $W and $RUN"; else rm -rf "$W" "$RUN"; fi
}

# What this run left on the host: processes, mounts, netns pins, links, cgroup dirs (any
# v1 hierarchy and v2), nftables tables. Prints "nothing left" or what is.
cl_leaks() {
    left=""
    while read -r kind pid _; do
        kill -0 "$pid" 2>/dev/null && left="$left $kind:$pid"
    done <"$W/pids"
    # Not a run root's template mount namespace (kept until `system reset`).
    n="$(awk -v p="$W" -v r="$RUN" '(index($5, p "/") == 1 || index($5, r "/") == 1) &&
        $5 !~ /\/mntns(\/ns)?$/' /proc/self/mountinfo | wc -l)"
    [ "$n" = 0 ] || left="$left mounts:$n"
    while read -r id; do
        [ -n "$id" ] || continue
        [ -e "/run/netns/mfg-$id" ] && left="$left netns:mfg-$id"
        for d in /sys/fs/cgroup/*/minifargate/"$id" /sys/fs/cgroup/minifargate/"$id"; do
            [ -d "$d" ] && left="$left cgroup:$d"
        done
    done <"$W/ids"
    links="$(ip -o link show 2>/dev/null | grep -c "mfcl${CL_N}[blv]")"
    [ "$links" = 0 ] || left="$left links:$links"
    nft list tables 2>/dev/null | grep -q "mfcl${CL_N}[b_]" && left="$left nft-tables"
    ns="$(ip netns list 2>/dev/null | grep -c "^mfcl${CL_N}b")"
    [ "$ns" = 0 ] || left="$left box-netns:$ns"
    if [ -z "$left" ]; then
        log "clean-up: nothing left ($(wc -l <"$W/ids") tasks' netns, cgroups, mounts; links, nft tables, processes)"
    else
        log "clean-up: LEFT BEHIND:$left"
    fi
}

# ms since the epoch.
now_ms() { date +%s%3N; }
