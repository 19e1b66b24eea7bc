#!/usr/bin/env bash
# Runs a Chorus node: with no arguments, a single node on loopback with data
# in ./data. Pass --demo to seed a demo organisation, --config FILE for a config.
# The web client (web/) is built first when its sources changed; the node
# serves it at / on its HTTP port.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/setup.sh"
ensure_debian_packages
ensure_web_client
cd "$here/.."
exec cargo run --quiet --bin chorus -- serve "$@"
