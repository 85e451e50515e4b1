# Shared helpers for scripts/demo, scripts/test and scripts/bench (POSIX sh).
# Source it from the repository root: `. scripts/lib.sh`.

APT_PACKAGES="docker-registry busybox-static skopeo libseccomp-dev pkg-config apache2-utils \
openssl curl jq ca-certificates gcc libc6-dev make python3 python3-venv iproute2 util-linux \
mount nftables tini qemu-user-static e2fsprogs chromium chromium-driver etcd-server etcd-client podman tzdata \
docker.io"

# Where scripts/test keeps PyPI tools (moto[server] and, with it, cryptography);
# tests/common/services.rs looks for them here.
TEST_VENV="${TEST_VENV:-$(pwd)/target/test-venv}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Install the Debian packages the demo and the tests use, and Rust if it is missing.
install_deps() {
    missing=""
    for p in $APT_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        log "installing:$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q </dev/null
        # No service a package brings is started (docker.io's dockerd would take iptables
        # and a bridge; the tests start the daemons they need: tests/ecr_uri.rs), unless
        # the machine already says otherwise.
        policy=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            policy=/usr/sbin/policy-rc.d
        fi
        # shellcheck disable=SC2086
        apt-get install -y -q --no-install-recommends $missing </dev/null
        [ -z "$policy" ] || rm -f "$policy"
        # Debian's etcd-server enables and starts a system etcd on localhost:2379; the
        # tests start etcds of their own (tests/common/etcd.rs), so one we just
        # installed is stopped and disabled rather than left running.
        case " $missing " in
        *" etcd-server "*)
            if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
                systemctl disable --now etcd.service >/dev/null 2>&1 || true
            fi ;;
        esac
        case " $missing " in
        *" docker.io "*)
            if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
                systemctl disable --now docker.service docker.socket >/dev/null 2>&1 || true
            fi ;;
        esac
    fi
    register_binfmt
    if ! command -v cargo >/dev/null 2>&1; then
        if [ ! -x "$HOME/.cargo/bin/cargo" ]; then
            log "installing Rust with rustup"
            curl -sSf https://sh.rustup.rs \
                | sh -s -- -y --profile minimal --component rustfmt,clippy </dev/null
        fi
        PATH="$HOME/.cargo/bin:$PATH"; export PATH
    fi
}

# The toolchain's clippy-driver (what `cargo clippy` puts in front of rustc): rustup's
# own path to it when rustup is there (no proxy hop per rustc call), else the one on PATH.
clippy_driver() {
    d="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver || true)"
    [ -n "$d" ] || die "clippy-driver not found (rustup component add clippy)"
    printf '%s\n' "$d"
}

# Register qemu-user-static's binfmt_misc handlers (runtimePlatform ARM64 on x86_64 and
# the other way round, docs/images.md): binfmt_misc mounted, then Debian's own
# registration of /usr/lib/binfmt.d/qemu-*.conf (flag F: the kernel opens the
# interpreter now, so it also works inside a container's mount namespace). A package
# install step, done once per boot; systemd does it at boot where it runs.
register_binfmt() {
    bm=/proc/sys/fs/binfmt_misc
    [ -e "$bm/status" ] || mount -t binfmt_misc binfmt_misc "$bm" \
        || die "cannot mount binfmt_misc at $bm (is the binfmt_misc module available?)"
    for conf in /usr/lib/binfmt.d/qemu-*.conf; do
        [ -e "$conf" ] || continue
        name="$(cut -d: -f2 "$conf")"
        [ -e "$bm/$name" ] && continue
        if [ -x /usr/lib/systemd/systemd-binfmt ]; then
            /usr/lib/systemd/systemd-binfmt "$conf" || die "systemd-binfmt $conf failed"
        else
            cat "$conf" >"$bm/register" || die "cannot register $conf"
        fi
    done
    [ -e "$bm/qemu-aarch64" ] || [ "$(uname -m)" = aarch64 ] \
        || die "no qemu-aarch64 binfmt_misc handler after registration"
}

# fetch_arm64_busybox DIR: Debian's busybox-static for arm64 unpacked into DIR (DIR/bin/
# busybox), with apt from the configured mirror, as scripts/release fetches its arm64
# packages. The tests' arm64 image (tests/run_task_platform.rs) is built from it.
fetch_arm64_busybox() {
    out="$1"
    [ -x "$out/bin/busybox" ] && return 0
    dpkg --print-foreign-architectures | grep -qx arm64 || {
        dpkg --add-architecture arm64; apt-get update -q </dev/null; }
    rm -rf "$out" "$out.dl"; mkdir -p "$out.dl"
    (cd "$out.dl" && apt-get download -q busybox-static:arm64 </dev/null)
    dpkg-deb -x "$out.dl"/busybox-static_*_arm64.deb "$out"
    rm -rf "$out.dl"
}

# A Python venv with moto[server] (the ECR API for the ECR test) from PyPI. A venv,
# because Debian's own python3 refuses system-wide pip installs (PEP 668).
# awscli is pinned: its botocore carries the ECS service model that src/ecs/botocore_model.rs
# checks the request types against, so a new AWS release changes that test only when this
# line changes.
AWSCLI_VERSION=1.45.11
install_test_python() {
    if [ -x "$TEST_VENV/bin/moto_server" ] && [ -x "$TEST_VENV/bin/aws" ] \
        && "$TEST_VENV/bin/python3" -c "import moto, cryptography, awscli, selenium; assert awscli.__version__ == '$AWSCLI_VERSION'" 2>/dev/null; then
        return 0
    fi
    log "creating $TEST_VENV with moto[server], awscli and selenium"
    rm -rf "$TEST_VENV"
    python3 -m venv "$TEST_VENV" </dev/null
    "$TEST_VENV/bin/pip" install -q --disable-pip-version-check 'moto[server]>=5,<6' "awscli==$AWSCLI_VERSION" \
        'selenium>=4.11,<5' </dev/null
    "$TEST_VENV/bin/python3" -c 'import moto, cryptography, awscli, selenium' \
        || die "moto[server], awscli and selenium did not install into $TEST_VENV"
}

# Where scripts/test keeps npm packages: the JavaScript SDK v3's Cloud Map client, at a
# pinned version (tests/servicediscovery.rs runs it with NODE_PATH here).
TEST_NODE="${TEST_NODE:-$(pwd)/target/test-node}"
JS_SDK_VERSION=3.1138.0
install_test_node() {
    pkg="$TEST_NODE/node_modules/@aws-sdk/client-servicediscovery/package.json"
    if [ -f "$pkg" ] && grep -q "\"version\": \"$JS_SDK_VERSION\"" "$pkg"; then
        return 0
    fi
    # Debian's nodejs and npm, unless a node with its npm is there already (NodeSource's
    # nodejs carries npm and conflicts with Debian's npm package).
    if ! command -v npm >/dev/null 2>&1; then
        log "installing nodejs and npm"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm </dev/null
    fi
    log "installing @aws-sdk/client-servicediscovery@$JS_SDK_VERSION into $TEST_NODE"
    rm -rf "$TEST_NODE"
    mkdir -p "$TEST_NODE"
    npm install --prefix "$TEST_NODE" --no-audit --no-fund --loglevel=error \
        "@aws-sdk/client-servicediscovery@$JS_SDK_VERSION" </dev/null
    [ -f "$pkg" ] || die "@aws-sdk/client-servicediscovery did not install into $TEST_NODE"
}

# The AWS CLI: the test venv's (install_test_python), else the one on PATH, else the
# venv made now.
aws_cli() {
    if [ -x "$TEST_VENV/bin/aws" ]; then echo "$TEST_VENV/bin/aws"
    elif command -v aws >/dev/null 2>&1; then command -v aws
    else install_test_python >&2; echo "$TEST_VENV/bin/aws"; fi
}

# A free TCP port on 127.0.0.1 (the first of FROM.. that nobody listens on).
free_port() {
    p="${1:-5000}"
    while [ "$p" -lt 65000 ]; do
        if [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ]; then
            echo "$p"; return 0
        fi
        p=$((p + 1))
    done
    die "no free port"
}

# serve_key_env ROOT: exports the access key `minifargate serve` generated under state
# root ROOT (ROOT/api/credentials, root only) as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
# for the AWS CLI, boto3 and curl --aws-sigv4 (scripts start serve with --no-aws-profile,
# so the invoking user's ~/.aws is left alone).
serve_key_env() {
    kline="$(grep -v '^#' "$1/api/credentials" 2>/dev/null | grep -m1 .)" \
        || die "serve generated no access key in $1/api/credentials"
    export AWS_ACCESS_KEY_ID="${kline%% *}" AWS_SECRET_ACCESS_KEY="${kline#* }"
}

# registry_start DIR PORT [ADDR]: Debian's docker-registry on ADDR:PORT (ADDR
# 127.0.0.1 by default) with its storage under DIR; the PID goes to DIR/registry.pid.
registry_start() {
    dir="$1"; port="$2"; raddr="${3:-127.0.0.1}"
    mkdir -p "$dir/storage"
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: $raddr:$port
  secret: minifargate-local-$port
EOF
    /usr/bin/docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 </dev/null &
    echo $! >"$dir/registry.pid"
    i=0
    until curl -sf --noproxy '*' -o /dev/null "http://$raddr:$port/v2/"; do
        i=$((i + 1))
        if [ "$i" -gt 100 ] || ! kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null; then
            cat "$dir/registry.log" >&2
            die "registry on $raddr:$port did not start"
        fi
        sleep 0.1
    done
    log "registry on $raddr:$port (pid $(cat "$dir/registry.pid"))"
}

# bench_run_dir NAME: a new directory for a benchmark's run state (/run/NAME.XXXXXX), on
# a tmpfs of its own when /run is not one. Every tool's state goes there (minifargate's run
# root, crun's and runc's roots, podman's runroot): the production layout, /run on tmpfs as
# systemd mounts it. Some hosts (this project's VM) have /run on the root filesystem, where
# each directory made and removed is a block allocated and discarded.
bench_run_dir() {
    d="$(mktemp -d "/run/$1.XXXXXX")"
    if [ "$(stat -f -c %T "$d")" != tmpfs ]; then
        mount -t tmpfs -o mode=0700 "$1" "$d" || { rmdir "$d"; die "cannot mount a tmpfs on $d"; }
    fi
    echo "$d"
}

# bench_run_dir_remove DIR: unmounts what bench_run_dir mounted (and anything below it),
# then removes the directory.
bench_run_dir_remove() {
    [ -n "$1" ] && [ -d "$1" ] || return 0
    for m in $(awk -v r="$1" '$5 == r || index($5, r "/") == 1 {print $5}' /proc/self/mountinfo \
        | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$1"
}

# registry_stop DIR: stop the registry registry_start started there (by its PID).
registry_stop() {
    pidfile="$1/registry.pid"
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# build_busybox_image DIR TAG [ARCH BUSYBOX]: an OCI image layout in DIR holding one
# image, tagged TAG, whose single gzip layer is Debian's busybox-static with its applet
# links. ARCH (a Debian architecture, default the host's) goes into the image config
# with BUSYBOX (default /bin/busybox) as its binary. With EXTRA_ROOTFS set to a directory,
# its contents are copied into the image's root too (a benchmark's own server).
build_busybox_image() {
    out="$1"; tag="$2"; arch="${3:-$(dpkg --print-architecture)}"; bb="${4:-/bin/busybox}"
    work="$out.build"
    rm -rf "$out" "$work"
    mkdir -p "$out/blobs/sha256" "$work/rootfs/bin" "$work/rootfs/etc" \
        "$work/rootfs/tmp" "$work/rootfs/root"
    cp "$bb" "$work/rootfs/bin/busybox"
    # Every applet in /bin, as the busybox image on Docker Hub / public.ecr.aws has it.
    for a in $(/bin/busybox --list); do
        [ "$a" = busybox ] || ln -s busybox "$work/rootfs/bin/$a"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
    echo 'root:x:0:' >"$work/rootfs/etc/group"
    chmod 1777 "$work/rootfs/tmp"
    chmod 700 "$work/rootfs/root"
    [ -z "${EXTRA_ROOTFS:-}" ] || cp -a "$EXTRA_ROOTFS/." "$work/rootfs/"
    tar --numeric-owner --owner=0 --group=0 --mtime=@1700000000 --sort=name \
        -C "$work/rootfs" -cf "$work/layer.tar" .
    gzip -n -c "$work/layer.tar" >"$work/layer.tar.gz"
    diff_id="$(sha256_of "$work/layer.tar")"
    layer="$(sha256_of "$work/layer.tar.gz")"
    layer_size="$(stat -c %s "$work/layer.tar.gz")"
    mv "$work/layer.tar.gz" "$out/blobs/sha256/$layer"
    printf '{"architecture":"%s","os":"linux","config":{"Cmd":["/bin/sh"],"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"minifargate scripts/lib.sh: busybox-static"}]}' \
        "$arch" "$diff_id" >"$work/config.json"
    config="$(sha256_of "$work/config.json")"
    config_size="$(stat -c %s "$work/config.json")"
    mv "$work/config.json" "$out/blobs/sha256/$config"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
        "$config" "$config_size" "$layer" "$layer_size" >"$work/manifest.json"
    manifest="$(sha256_of "$work/manifest.json")"
    manifest_size="$(stat -c %s "$work/manifest.json")"
    mv "$work/manifest.json" "$out/blobs/sha256/$manifest"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
        "$manifest" "$manifest_size" "$tag" >"$out/index.json"
    rm -rf "$work"
    echo "sha256:$manifest"
}

# push_layout DIR TAG DEST: copy oci:DIR:TAG to docker://DEST (plain HTTP on loopback)
# with skopeo, keeping digests; prints the pushed manifest digest.
push_layout() {
    df="$(mktemp)"
    skopeo --insecure-policy copy --quiet --preserve-digests --dest-tls-verify=false \
        --digestfile "$df" "oci:$1:$2" "docker://$3" </dev/null
    cat "$df"; rm -f "$df"
}

# bench_minbase_layout CACHE W: the benchmarks' ~180 MB 4-layer image (debootstrap
# --variant=minbase bookworm from apt's Debian mirror, split as a Dockerfile would make
# it), as an OCI layout in CACHE/layout tagged `minbase` (built once, kept in CACHE with
# CACHE/uncompressed-bytes); W is a scratch directory.
bench_minbase_layout() {
    CACHE="$1"; W="$2"
    # The Debian mirror apt uses (deb822 .sources first, then sources.list).
    debian_mirror() {
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -f "$f" ] || continue
            awk '/^URIs:/ {u=$2} /^Suites:/ && / bookworm( |$)/ {print u; exit}' "$f"
        done | head -n1 | grep . && return 0
        awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null \
            | grep . || echo "http://deb.debian.org/debian"
    }

    ROOTFS_TAR="$CACHE/bookworm-minbase.tar"
    if [ ! -s "$ROOTFS_TAR" ]; then
        mirror="$(debian_mirror)"
        log "debootstrap --variant=minbase bookworm from $mirror"
        debootstrap --variant=minbase bookworm "$W/rootfs" "$mirror" </dev/null >"$W/debootstrap.log" 2>&1 \
            || { tail -20 "$W/debootstrap.log" >&2; die "debootstrap failed"; }
        tar --numeric-owner --xattrs -C "$W/rootfs" -cf "$ROOTFS_TAR.part" .
        mv "$ROOTFS_TAR.part" "$ROOTFS_TAR"
        rm -rf "$W/rootfs"
    fi

    # Four layers, as a Dockerfile would make them: libraries, the rest of /usr,
    # /usr/share, and everything else.
    LAYOUT="$CACHE/layout"
    if [ ! -f "$LAYOUT/index.json" ]; then
        log "building the 4-layer OCI image"
        mkdir -p "$W/rootfs" "$LAYOUT/blobs/sha256"
        tar --numeric-owner --xattrs -C "$W/rootfs" -xf "$ROOTFS_TAR"
        r="$W/rootfs"
        layer_tar() { # name, tar args…
            n="$1"; shift
            tar --numeric-owner --xattrs --sort=name --mtime=@1700000000 -C "$r" -cf "$W/$n.tar" "$@"
        }
        layer_tar l1 ./usr/lib
        layer_tar l2 --exclude=./usr/lib --exclude=./usr/share ./usr
        layer_tar l3 ./usr/share
        # debootstrap's downloaded .debs stay out: ~180 MB uncompressed without them.
        layer_tar l4 --exclude=./usr --exclude='./var/cache/apt/archives/*.deb' .
        diffs=""; layers=""
        du -cb "$W"/l?.tar | tail -n1 | cut -f1 >"$CACHE/uncompressed-bytes"
        for n in l1 l2 l3 l4; do
            d="$(sha256_of "$W/$n.tar")"
            gzip -n -6 "$W/$n.tar"
            b="$(sha256_of "$W/$n.tar.gz")"
            s="$(stat -c %s "$W/$n.tar.gz")"
            mv "$W/$n.tar.gz" "$LAYOUT/blobs/sha256/$b"
            diffs="$diffs${diffs:+,}\"sha256:$d\""
            layers="$layers${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$b\",\"size\":$s}"
        done
        rm -rf "$r"
        printf '{"architecture":"%s","os":"linux","config":{"Cmd":["/bin/bash"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
            "$(dpkg --print-architecture)" "$diffs" >"$W/config.json"
        c="$(sha256_of "$W/config.json")"; cs="$(stat -c %s "$W/config.json")"
        mv "$W/config.json" "$LAYOUT/blobs/sha256/$c"
        printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
            "$c" "$cs" "$layers" >"$W/manifest.json"
        m="$(sha256_of "$W/manifest.json")"; ms="$(stat -c %s "$W/manifest.json")"
        mv "$W/manifest.json" "$LAYOUT/blobs/sha256/$m"
        printf '{"imageLayoutVersion":"1.0.0"}' >"$LAYOUT/oci-layout"
        printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"minbase"}}]}' \
            "$m" "$ms" >"$LAYOUT/index.json"
    fi
}
