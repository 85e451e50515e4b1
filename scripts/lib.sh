# Shared helpers for scripts/demo, scripts/test and scripts/bench (POSIX sh).

APT_PACKAGES="docker-registry busybox-static skopeo libseccomp-dev pkg-config apache2-utils openssl curl jq gcc libc6-dev iproute2 crun runc hyperfine"

install_deps() {
    missing=""
    for p in $APT_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "installing:$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends $missing
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        [ -x "$HOME/.cargo/bin/cargo" ] || curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
        PATH="$HOME/.cargo/bin:$PATH"; export PATH
    fi
}
