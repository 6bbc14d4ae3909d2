#!/bin/sh
# Installs lray's Debian build and test dependencies when any is missing.
# Idempotent: does nothing when everything is present. Called by `make`.
set -e
PKGS="procps clang lua-check libluajit2-5.1-dev luajit2 libuv1-dev lua-cjson lua-busted libedit-dev libxxhash-dev luarocks man-db pkg-config libmicrohttpd-dev chromium curl uthash-dev libsodium-dev lua-yaml iproute2 libclang-rt-dev"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "lray: installing$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
