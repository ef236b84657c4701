#!/bin/sh
# Make a build context for deploy/container/Containerfile: DIR/wheels holds the wheel of this
# checkout, of pip, and of every dependency (the daemon extra included), built with the pip of
# the Python that runs this script ($PYTHON, default python3), which must be the base image's
# minor version and platform (the wheels of msgspec and PyYAML are compiled ones).
set -eu
dir=${1:?usage: build-context.sh DIR}
here=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$dir/wheels"
"${PYTHON:-python3}" -m pip wheel --quiet --wheel-dir "$dir/wheels" "$here[daemon]" pip
echo "$dir"
