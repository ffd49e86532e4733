#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` (CPU) once per machine from the sources vendored in the
# llama-cpp-python sdist on PyPI, into a cache folder outside the repo, and prints the binary's path.
# A second run finds the binary and returns at once. About 25 minutes on 2 busy cores.
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${STARS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stars-plugins}"
DEST="$CACHE/llama-server-$VERSION"
BIN="$DEST/bin/llama-server"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
PYTHON="${PYTHON:-python3}"
mkdir -p "$CACHE"
WORK="$(mktemp -d "$CACHE/build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
echo "building llama-server $VERSION in $WORK (once per machine; about 25 minutes on 2 cores)" >&2
"$PYTHON" -m pip download --quiet --no-deps --no-binary :all: -d "$WORK" "llama-cpp-python==$VERSION" >&2
tar -xzf "$WORK"/llama_cpp_python-"$VERSION".tar.gz -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF >&2
cmake --build "$WORK/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$DEST/bin"
cp "$WORK/build/bin/llama-server" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
echo "$BIN"
