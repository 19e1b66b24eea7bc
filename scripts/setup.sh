# Sourced by scripts/serve.sh and scripts/test.sh: installs what a fresh
# machine lacks and points cargo at a target folder outside the work tree.
set -euo pipefail

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chorus-target}"
mkdir -p "$CARGO_TARGET_DIR"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root to run: $*" >&2; return 1; fi
}

# Debian packages: libclang for rocksdb's bindgen, plus any passed as arguments.
ensure_debian_packages() {
    local missing=()
    for pkg in libclang-dev "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]}" >&2
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

ensure_rust_tools() {
    for component in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
    done
    command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
}
