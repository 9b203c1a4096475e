#!/usr/bin/env bash
# deps.sh: make sure the Debian packages loco builds against are present.
# Quick and silent when they are; otherwise installs them with apt-get (through
# sudo when not root), or prints the exact command when it cannot.
#   deps.sh        what make, make run and make test need
#   deps.sh fuzz   that and clang with libFuzzer and the sanitizer runtimes (make fuzz);
#                  llvm-14 is for llvm-symbolizer, which puts names in crash reports
set -euo pipefail

pkgs=(gcc libc6-dev make libopenblas-dev libhwloc-dev hwloc libjemalloc-dev libcriterion-dev
      libinih-dev zlib1g-dev gnuplot-nox pkg-config libcjson-dev libdnnl-dev)
case "${1:-}" in
  "") command -v npm >/dev/null 2>&1 || pkgs+=(npm) ;;
  fuzz) pkgs+=(clang-14 libclang-rt-14-dev llvm-14) ;;
  *) echo "deps: unknown package set '$1' (known: fuzz)" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" = 0 ]; then
  run=(bash -c "$cmd")
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  run=(sudo bash -c "$cmd")
elif command -v sudo >/dev/null 2>&1 && [ -t 0 ]; then
  run=(sudo bash -c "$cmd")
else
  echo "deps: missing Debian packages: ${missing[*]}" >&2
  echo "deps: install them as root with:" >&2
  echo "  sudo sh -c '$cmd'" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}" >&2
if ! "${run[@]}" >/tmp/loco-deps.$$.log 2>&1; then
  tail -n 20 /tmp/loco-deps.$$.log >&2
  echo "deps: apt-get failed (log above); run it yourself:" >&2
  echo "  sudo sh -c '$cmd'" >&2
  exit 1
fi
rm -f /tmp/loco-deps.$$.log
