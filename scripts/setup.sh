# Sourced by scripts/serve.sh and scripts/test.sh: installs what a fresh
# machine lacks and points cargo at a target folder outside the work tree.
set -euo pipefail

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chorus-target}"
chorus_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$CARGO_TARGET_DIR"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root to run: $*" >&2; return 1; fi
}

# Debian packages: libclang for rocksdb's bindgen, plus any passed as arguments
# (arguments starting with - are passed to apt-get install).
ensure_debian_packages() {
    local missing=() options=()
    for pkg in libclang-dev "$@"; do
        case "$pkg" in -*) options+=("$pkg"); continue ;; esac
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]}" >&2
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${options[@]}" "${missing[@]}" >/dev/null
    fi
}

# promtool, to check configs/prometheus.yml and configs/alerts.yml. It ships in
# Debian's prometheus package, whose install starts a server on systemd hosts:
# the gate needs only the binary, so that server is stopped and disabled.
ensure_promtool() {
    command -v promtool >/dev/null && return
    ensure_debian_packages --no-install-recommends prometheus
    if [ -d /run/systemd/system ]; then
        as_root systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
}

ensure_rust_tools() {
    for component in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
    done
    command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
}

# openapi-spec-validator from PyPI, to check the REST API's OpenAPI document,
# in a venv of its own (Debian's python3 needs python3-venv for one).
ensure_openapi_validator() {
    local venv="$HOME/.cache/chorus-venv"
    [ -x "$venv/bin/openapi-spec-validator" ] && return
    command -v python3 >/dev/null || ensure_debian_packages python3
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        rm -rf "$venv"
        ensure_debian_packages python3-venv
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check openapi-spec-validator==0.9.0
}

# moto's S3 server from PyPI, in the same venv, for the tests of files kept
# in an object store (tests/files_s3.rs starts it on port 0).
ensure_moto() {
    ensure_openapi_validator
    local venv="$HOME/.cache/chorus-venv"
    "$venv/bin/python" -c 'import moto.server, flask_cors' 2>/dev/null && return
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5'
}

# node and npm for web/ (any node ≥ 18; Debian 12's will do when none is there).
ensure_node() {
    command -v npm >/dev/null && command -v node >/dev/null && return
    ensure_debian_packages nodejs npm
}

# The web client's npm packages, installed from web/package-lock.json when
# node_modules is missing or older than the lock file.
ensure_web_deps() {
    local web="$chorus_root/web"
    ensure_node
    if [ ! -f "$web/node_modules/.package-lock.json" ] ||
        [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]; then
        echo "installing the web client's npm packages" >&2
        (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
    fi
}

# web/dist, rebuilt when the web client's sources changed since the last build
# (a digest of them is kept in web/dist/.sources).
ensure_web_client() {
    local web="$chorus_root/web" digest
    ensure_web_deps
    digest="$(cd "$web" && find src client/src package.json package-lock.json build.mjs tsconfig.json \
        -type f -not -name '*.test.ts' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$web/dist/.sources" 2>/dev/null)" != "$digest" ]; then
        echo "building the web client" >&2
        (cd "$web" && npm run --silent build)
        echo "$digest" >"$web/dist/.sources"
    fi
}
