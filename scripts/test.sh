#!/usr/bin/env bash
# The whole gate: formatting, lints, and every test of the workspace.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/setup.sh"
# chromium and chromium-driver for the browser tests (tests/web_browser.rs),
# and a Chinese font for their screenshots.
ensure_debian_packages chromium chromium-driver fonts-wqy-zenhei
ensure_promtool
ensure_rust_tools
ensure_openapi_validator
ensure_moto
# The web client: npm packages, its built files (the browser tests load them),
# then its type check and unit tests under node.
ensure_web_client
(cd "$here/../web" && npm test --silent)
cd "$here/.."
promtool check config configs/prometheus.yml
promtool check rules configs/alerts.yml
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
# The OpenAPI document as the node serves it, checked against the OpenAPI schema.
cargo run --quiet --all-features -- openapi >"$CARGO_TARGET_DIR/openapi.json"
"$HOME/.cache/chorus-venv/bin/openapi-spec-validator" "$CARGO_TARGET_DIR/openapi.json"
cargo nextest run --workspace --all-features --no-fail-fast "$@"
