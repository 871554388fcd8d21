#!/bin/bash
# Builds the Debian package of meshd: the binary with the `release` profile (or $PROFILE), its
# man pages and shell completions generated from the real command line (`meshd generate-docs`),
# then the .deb with cargo-deb (metadata: [package.metadata.deb] in agent/Cargo.toml). Prints
# the path of the .deb on its last line.
#
# Usage: scripts/build-package.sh            (needs cargo-deb: `cargo install --locked cargo-deb`)
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${PROFILE:-release}"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
target_dir="$(realpath -m "$target_dir")"
out_dir="$target_dir/debian"

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-package.sh: error: cargo-deb is missing; install it with \`cargo install --locked cargo-deb\`" >&2
    exit 1
fi

echo "== cargo build --profile $profile -p meshd" >&2
cargo build --locked --profile "$profile" -p meshd --bin meshd >&2
# Cargo keeps the dev profile's output in target/debug, every other profile's under its name.
profile_dir="$target_dir/$profile"
[ "$profile" = dev ] && profile_dir="$target_dir/debug"
binary="$profile_dir/meshd"

# cargo-deb reads target/release/... as "the profile's directory", so the generated files live
# next to the binary.
docs="$profile_dir/meshd-docs"
rm -rf "$docs"
"$binary" generate-docs --out "$docs" >/dev/null
# Debian policy: man pages compressed with gzip -9, without a timestamp (reproducible).
gzip -9n "$docs"/man/*.1

mkdir -p "$out_dir"
rm -f "$out_dir"/meshd_*.deb
echo "== cargo deb" >&2
cargo deb --locked -p meshd --no-build --strip --profile "$profile" --output "$out_dir" >&2 || {
    echo "build-package.sh: error: cargo deb failed" >&2
    exit 1
}
ls "$out_dir"/meshd_*.deb
