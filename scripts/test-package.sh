#!/bin/bash
# Tests the Debian package the way an operator meets it, without changing this machine:
#   1. builds it (scripts/build-package.sh) and runs lintian on it (errors fail the test);
#   2. makes a fresh minimal Debian root with mmdebstrap under the target directory;
#   3. inside it (chroot): installs the package, checks what it put where, runs
#      `meshd --version` and `meshd init`, then removes the package (config and state stay)
#      and purges it, and checks that nothing of it is left.
# The root directory is deleted at the end, also when a step fails.
#
# Needs root (chroot, mmdebstrap), the Debian packages mmdebstrap, lintian and dpkg-dev (which
# scripts/test.sh installs) and cargo-deb (installed with cargo if missing).
#
# Usage: scripts/test-package.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
# The root is of the host's own Debian release, so the package is tested where it was built.
SUITE="${SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")}"
started=$SECONDS

fail() {
    echo "test-package.sh: FAILED: $*" >&2
    exit 1
}
step() {
    echo "== [$((SECONDS - started)) s] $*" >&2
}

if [ "$(id -u)" -ne 0 ]; then
    if [ "${MESHD_SKIP_PACKAGE_TEST:-}" = 1 ]; then
        echo "test-package.sh: skipped (not root, MESHD_SKIP_PACKAGE_TEST=1)" >&2
        exit 0
    fi
    fail "needs root (mmdebstrap and chroot); MESHD_SKIP_PACKAGE_TEST=1 skips it for local development"
fi
if ! cargo deb --version >/dev/null 2>&1; then
    step "installing cargo-deb $CARGO_DEB_VERSION"
    cargo install --locked --version "$CARGO_DEB_VERSION" cargo-deb
fi

step "building the package"
deb="$(scripts/build-package.sh | tail -n 1)"
[ -f "$deb" ] || fail "build-package.sh printed no package path"
echo "package: $deb ($(du -h "$deb" | cut -f1))" >&2
dpkg-deb --info "$deb" >&2
dpkg-deb --contents "$deb" >&2

step "lintian"
# Errors fail; warnings and infos are printed (README "Debian package" explains the ones left).
lintian --fail-on error --display-info --tag-display-limit 0 "$deb" >&2 || fail "lintian reports errors (above)"

target_dir="$(realpath -m "${CARGO_TARGET_DIR:-$PWD/target}")"
mkdir -p "$target_dir"
root="$(mktemp -d "$target_dir/package-root.XXXXXX")"
cleanup() {
    # mmdebstrap unmounts what it mounted; this only guards against a chroot step's mount.
    for mount in "$root/proc"; do
        if mountpoint -q "$mount" 2>/dev/null; then umount -l "$mount" || true; fi
    done
    rm -rf --one-file-system "$root"
}
trap cleanup EXIT

step "mmdebstrap $SUITE (minbase) into $root"
# minbase: essential packages + apt. init-system-helpers comes with it (deb-systemd-helper).
mmdebstrap --variant=minbase --quiet "$SUITE" "$root" </dev/null >&2 || fail "mmdebstrap failed"

in_root() {
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"
}
# Every path in the root except what dpkg, apt and the logs keep about themselves.
snapshot() {
    (cd "$root" && find . -xdev \
        -path ./var/lib/dpkg -prune -o -path ./var/log -prune -o -path ./var/cache -prune \
        -o -path ./tmp -prune -o -print) | LC_ALL=C sort
}
before="$(snapshot)"

step "dpkg -i"
cp "$deb" "$root/tmp/meshd.deb"
in_root dpkg -i /tmp/meshd.deb >&2 || fail "the package does not install"
in_root dpkg -s meshd | grep -q '^Status: install ok installed' || fail "meshd is not installed"

step "checking what the package installed"
for path in /usr/bin/meshd /usr/lib/systemd/system/meshd.service /etc/meshd/meshd.toml \
    /etc/iproute2/rt_protos.d/meshd.conf /usr/share/man/man1/meshd.1.gz \
    /usr/share/man/man1/meshd-init.1.gz /usr/share/man/man1/meshd-join.1.gz \
    /usr/share/doc/meshd/copyright /usr/share/doc/meshd/changelog.Debian.gz \
    /usr/share/doc/meshd/examples/meshd.toml /usr/share/doc/meshd/grafana/meshd-dashboard.json \
    /usr/share/bash-completion/completions/meshd \
    /usr/share/zsh/vendor-completions/_meshd /usr/share/fish/vendor_completions.d/meshd.fish; do
    [ -e "$root$path" ] || fail "$path is not installed"
done
grep -qx '/etc/meshd/meshd.toml' "$root/var/lib/dpkg/info/meshd.conffiles" ||
    fail "/etc/meshd/meshd.toml is not a conffile"
[ "$(stat -c %a "$root/var/lib/meshd")" = 700 ] || fail "/var/lib/meshd is not mode 0700"
# Enabled (a wants link) but not started: the unit runs once the node has joined.
[ -L "$root/etc/systemd/system/multi-user.target.wants/meshd.service" ] ||
    fail "meshd.service is not enabled"
grep -q '^Type=notify' "$root/usr/lib/systemd/system/meshd.service" || fail "the unit is not Type=notify"
grep -q '^ConditionPathExists=/var/lib/meshd/node.json' "$root/usr/lib/systemd/system/meshd.service" ||
    fail "the unit does not wait for the node to join"
zcat "$root/usr/share/man/man1/meshd.1.gz" | grep -q '^\.TH meshd 1' || fail "meshd.1 is not a man page"
grep -q 'complete -F' "$root/usr/share/bash-completion/completions/meshd" ||
    fail "the bash completion defines no completion"
cmp -s packaging/grafana/meshd-dashboard.json "$root/usr/share/doc/meshd/grafana/meshd-dashboard.json" ||
    fail "the installed Grafana dashboard is not packaging/grafana/meshd-dashboard.json"

step "meshd --version and meshd init inside the root"
version="$(in_root meshd --version)" || fail "meshd --version failed"
expected_version="$(dpkg-deb --field "$deb" Version | sed 's/-[^-]*$//')"
[ "$version" = "meshd $expected_version" ] || fail "meshd --version printed '$version', expected 'meshd $expected_version'"
init_output="$(in_root meshd init --name alpha --endpoint 203.0.113.1:51820)" ||
    fail "meshd init failed inside the root"
echo "$init_output" >&2
grep -q 'systemctl start meshd' <<<"$init_output" || fail "meshd init does not say how to start the service"
grep -q '^name = "alpha"' "$root/etc/meshd/meshd.toml" || fail "meshd init did not write the node's config"
[ -f "$root/var/lib/meshd/node.json" ] || fail "meshd init wrote no node.json"
[ "$(stat -c %a "$root/var/lib/meshd/wireguard.key")" = 600 ] || fail "wireguard.key is not 0600"
# Without a daemon, the status command fails with a message, not a panic.
if status_output="$(in_root meshd status 2>&1)"; then
    fail "meshd status succeeded without a daemon: $status_output"
fi
grep -q '^meshd: error: ' <<<"$status_output" || fail "meshd status without a daemon: $status_output"

step "dpkg --remove: the binary goes, the configuration and the node's state stay"
in_root dpkg --remove meshd >&2 || fail "dpkg --remove failed"
[ ! -e "$root/usr/bin/meshd" ] || fail "/usr/bin/meshd is still there after remove"
[ ! -e "$root/usr/lib/systemd/system/meshd.service" ] || fail "the unit is still there after remove"
[ -f "$root/etc/meshd/meshd.toml" ] || fail "remove deleted the configuration"
[ -f "$root/var/lib/meshd/node.json" ] || fail "remove deleted the node's state"

step "dpkg --purge: nothing is left"
in_root dpkg --purge meshd >&2 || fail "dpkg --purge failed"
if in_root dpkg -s meshd >/dev/null 2>&1; then
    fail "dpkg still knows meshd after purge"
fi
rm -f "$root/tmp/meshd.deb"
after="$(snapshot)"
left="$(comm -13 <(echo "$before") <(echo "$after"))"
gone="$(comm -23 <(echo "$before") <(echo "$after"))"
[ -z "$left" ] || fail "left behind after purge:
$left"
[ -z "$gone" ] || fail "deleted by the package although it was there before:
$gone"

step "passed in $((SECONDS - started)) s"
echo "test-package.sh: 1 passed, 0 failed"
