#!/bin/bash
# Runs every check CI runs: formatting, clippy and the whole test suite, including the
# network-namespace tests (which need root). Installs what it needs first, so it works on a
# fresh Debian machine with a Rust toolchain (rustup) and on CI.
#
# Usage: scripts/test.sh            (as root, or with sudo for the package install)
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib/install-packages.sh
. scripts/lib/install-packages.sh
# Debian packages the tests use: ip/netns (iproute2), ping, iperf3, wireguard-go + wg as real
# WireGuard peers, openssl to cross-check certificates, BIRD 2 (bird2) and GoBGP (gobgpd) as BGP peers;
# FRR (frr) for its parser, which checks `meshd export frr` (and bird2 and wg-quick check theirs);
# dnsmasq (dnsmasq-base) as the DNS server of endpoint-name tests; nftables (nft), which an
# exit's masquerade goes through;
# for the package test (scripts/test-package.sh): dpkg-dev (dpkg-shlibdeps for the .deb's
# Depends), binutils (strip), lintian, and mmdebstrap for a fresh Debian root.
# To build: build_packages (a C compiler and libc headers), shared with demo.sh.
packages=(iproute2 iputils-ping iperf3 wireguard-tools wireguard-go openssl bird2 frr gobgpd dnsmasq-base nftables
    dpkg-dev binutils lintian mmdebstrap "${build_packages[@]}")
install_packages test.sh "${packages[@]}"

if ! command -v cargo >/dev/null; then
    echo "test.sh: error: cargo not found; install a Rust toolchain (1.88 or newer) with rustup" >&2
    exit 1
fi
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        echo "test.sh: installing rustup component $component" >&2
        rustup component add "$component"
    fi
done

# Two cores are shared by everything on CI: keep cargo from oversubscribing them.
export CARGO_TERM_COLOR=never

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== layers: module imports point down, protocol crates stay pure, root tests check root"
scripts/check-layers.sh
echo "== cargo test"
cargo test --workspace
echo "== Debian package: build, lintian, install/init/remove/purge in a fresh Debian root"
scripts/test-package.sh
# The README's quick start ends in scripts/demo.sh, which must install what it needs by itself:
# run it as a new user would, from a machine without wireguard-go (this script installs it again
# the next time). Only as root: the namespaces need it, and apt.
if [[ $EUID -eq 0 ]]; then
    echo "== demo.sh on a machine without wireguard-go"
    if dpkg-query -W -f='${Status}' wireguard-go 2>/dev/null | grep -q "install ok installed"; then
        apt-get remove -y -qq wireguard-go >/dev/null
    fi
    scripts/demo.sh
    command -v wireguard-go >/dev/null || { echo "test.sh: demo.sh did not install wireguard-go" >&2; exit 1; }
fi
