#!/bin/sh
# Installs the load tools bench/bench_proxy.py needs, from Debian packages, only when
# one is missing: wrk (HTTP/1.1 load), nginx (upstream and reference proxy; the light
# flavour is enough) and h2load (nghttp2-client, for HTTP/2 runs). Needs root (or sudo).
set -eu
missing=""
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
{ command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } || missing="$missing nginx-light"
command -v h2load >/dev/null 2>&1 || missing="$missing nghttp2-client"
[ -z "$missing" ] && exit 0
echo "bench/setup.sh: installing$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
