# Sourced by scripts/demo.sh and scripts/test.sh: installs the Debian packages a script needs,
# so both work on a fresh Debian machine that has only a Rust toolchain (rustup).
#
#   install_packages SCRIPT PACKAGE...
#
# Installs only the missing ones (`apt-get update`, then `apt-get install -y
# --no-install-recommends`), as root or through sudo; without either it says which packages
# are missing and fails. SCRIPT names the caller in its messages.

# What building meshd needs besides rustup's toolchain: a C compiler and the C library's
# headers (ring's build script; rustup installs neither, and rustc links through cc).
# shellcheck disable=SC2034 # used by the scripts that source this file
build_packages=(gcc libc6-dev)

install_packages() {
    local script=$1
    shift
    local missing=() package
    for package in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$package")
        fi
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null; then
            sudo=(sudo)
        else
            echo "$script: error: need root (or sudo) to install the Debian packages: ${missing[*]}" >&2
            echo "$script: run it as root, or install them first: apt-get install ${missing[*]}" >&2
            return 1
        fi
    fi
    echo "$script: installing ${missing[*]}" >&2
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
}
