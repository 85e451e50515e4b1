#!/bin/sh
# Provisions the Vagrant VM (Ubuntu 24.04, as root): checks for cgroup v2, installs
# minifargate (the static binary from dist/ if the host built one, else a source
# build with rustup), then runs the offline demo (scripts/demo: a local registry
# seeded with busybox-static, a pull, a rootfs).
set -eu
cd /vagrant

if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
    echo "==> cgroup v2 (unified) at /sys/fs/cgroup"
else
    echo "==> warning: /sys/fs/cgroup is not cgroup v2 on this box" >&2
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends ca-certificates curl build-essential \
    pkg-config libseccomp-dev

bin="/vagrant/dist/minifargate-$(uname -m)-unknown-linux-musl"
if [ ! -x "$bin" ]; then
    if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
        curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    fi
    PATH="$HOME/.cargo/bin:$PATH"
    # Build outside the synced folder: faster, and leaves the host's target/ alone.
    CARGO_TARGET_DIR=/var/tmp/minifargate-target cargo build --release --locked --bin minifargate
    bin=/var/tmp/minifargate-target/release/minifargate
fi
install -m 0755 "$bin" /usr/local/bin/minifargate

mkdir -p /usr/local/share/bash-completion/completions /usr/local/share/man/man1
minifargate completions bash >/usr/local/share/bash-completion/completions/minifargate
minifargate man --dir /usr/local/share/man/man1

minifargate system info
MINIFARGATE_BIN=/usr/local/bin/minifargate ./scripts/demo
