#!/usr/bin/env bash
# tools/setup.sh: make this Debian machine able to build, run and test Cairn, then build it.
#
# Idempotent: installs only the Debian packages that are missing, runs autogen.sh only when
# configure is missing or older than configure.ac, configure only when config.status is missing
# (or CAIRN_CONFIGURE_FLAGS changed), then make. Run it as root (or with sudo available).
#
# Environment:
#   CAIRN_CONFIGURE_FLAGS  extra flags for ./configure (default: none)
#   CAIRN_SKIP_BUILD=1     install packages only
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

packages=(
  build-essential autoconf automake libtool pkg-config
  libmicrohttpd-dev libsnappy-dev libjemalloc-dev check libsubunit-dev
  libcurl4-openssl-dev libprotobuf-c-dev protobuf-c-compiler
  libyaml-dev libpcre2-dev zlib1g-dev libxxhash-dev
  curl python3 clang-format git
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ "${CAIRN_SKIP_BUILD:-0}" = 1 ] && exit 0

if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
  ./autogen.sh
fi

flags="${CAIRN_CONFIGURE_FLAGS:-}"
if [ ! -f config.status ] || [ "$(cat .setup-configure-flags 2>/dev/null)" != "$flags" ]; then
  # shellcheck disable=SC2086
  ./configure $flags
  printf '%s' "$flags" > .setup-configure-flags
fi

make -j"$(nproc)"
