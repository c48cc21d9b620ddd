#!/usr/bin/env bash
# Release recipe: static, stripped edgetables binaries per target, with the
# version and commit stamped into `edgetables version`, and their SHA-256 sums.
#
#   deploy/release.sh                                  # every target into ./dist
#   VERSION=v0.4.0 deploy/release.sh                   # a release
#   TARGETS="linux/arm64 linux/arm/v7" OUT=/tmp/d deploy/release.sh
#
# Targets are GOOS/GOARCH[/vN] (vN is GOARM for arm, GOAMD64 for amd64);
# the default is linux/amd64 linux/arm64 linux/arm/v7. Each binary is
# OUT/edgetables-GOOS-GOARCH[vN]; OUT/SHA256SUMS holds their sums
# (check with: cd OUT && sha256sum -c SHA256SUMS). VERSION defaults to
# `git describe --tags --always --dirty`, COMMIT to the full commit hash.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
OUT=${OUT:-./dist}
TARGETS=${TARGETS:-"linux/amd64 linux/arm64 linux/arm/v7"}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
mkdir -p "$OUT"
names=()
for target in $TARGETS; do
  IFS=/ read -r goos goarch variant <<<"$target"
  name="edgetables-$goos-$goarch${variant}"
  env_vars=(CGO_ENABLED=0 GOOS="$goos" GOARCH="$goarch")
  case "$goarch/$variant" in
    arm/v*) env_vars+=(GOARM="${variant#v}") ;;
    amd64/v*) env_vars+=(GOAMD64="$variant") ;;
    */) ;;
    *) echo "release: target $target: a variant is vN for arm or amd64" >&2; exit 2 ;;
  esac
  start=$SECONDS
  # -trimpath: no build paths in the binary; -s -w: no symbol table or
  # DWARF (about a third smaller; panics still print function names and
  # lines); -buildvcs=false: the commit is stamped explicitly.
  env "${env_vars[@]}" go build -trimpath -buildvcs=false \
    -ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" \
    -o "$OUT/$name" ./cmd/edgetables
  echo "$name: $(stat -c %s "$OUT/$name") bytes, built in $((SECONDS - start)) s"
  names+=("$name")
done
(cd "$OUT" && sha256sum "${names[@]}" >SHA256SUMS)
echo "version $VERSION, commit $COMMIT; sums in $OUT/SHA256SUMS"
