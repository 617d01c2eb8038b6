#!/usr/bin/env bash
# scripts/deps.sh - install the Debian packages libaev needs to build and test,
# if any is missing. Sourced by scripts/demo.sh and scripts/test.sh.
# Uses apt-get directly as root, else sudo.

AEV_BUILD_PACKAGES=(gcc libc6-dev meson ninja-build pkg-config libltdl-dev check liburing-dev)
AEV_TEST_PACKAGES=(valgrind clang libclang-rt-dev)

aev_install_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    echo "installing missing Debian packages: ${missing[*]}" >&2
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
