# Shared by the scripts in this folder; source it, do not run it.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/rampart/target}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_root() {
    [ "$(id -u)" = 0 ] || die "run as root (sudo $0): Rampart installs packages, loads BPF programs and talks to dockerd"
}

# Installs every package of scripts/packages.txt that is not installed yet.
ensure_packages() {
    local want=() pkg
    while read -r pkg; do
        pkg="${pkg%%#*}"; pkg="${pkg// /}"
        [ -n "$pkg" ] || continue
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || want+=("$pkg")
    done < "$ROOT/scripts/packages.txt"
    if [ ${#want[@]} -gt 0 ]; then
        log "installing ${want[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
    fi
}

# Installs rustup when missing (a distribution's cargo is too old: the version is pinned in
# rust-toolchain.toml), then the pinned toolchain with clippy, rustfmt and the musl target.
ensure_rust() {
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    if ! command -v rustup >/dev/null; then
        log "installing the Rust toolchain (rustup)"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain none
        . "$HOME/.cargo/env"
    fi
    local channel
    channel="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$ROOT/rust-toolchain.toml")"
    [ -n "$channel" ] || die "no channel in $ROOT/rust-toolchain.toml"
    rustup toolchain list | grep -q "^$channel-" ||
        rustup toolchain install "$channel" --profile minimal -c clippy,rustfmt
    # The fully static binary (scripts/package --static) is built for Rust's musl target.
    rustup target list --installed --toolchain "$channel" | grep -qx x86_64-unknown-linux-musl ||
        rustup target add --toolchain "$channel" x86_64-unknown-linux-musl
}

# Starts dockerd when no daemon answers: with systemd when it is PID 1, in the background otherwise.
ensure_dockerd() {
    docker info >/dev/null 2>&1 && return 0
    log "starting dockerd"
    if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
        systemctl start docker
    else
        mkdir -p /var/log/rampart
        nohup dockerd >/var/log/rampart/dockerd.log 2>&1 &
    fi
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "dockerd did not start; see /var/log/rampart/dockerd.log"
}
