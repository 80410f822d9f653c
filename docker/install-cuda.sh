#!/bin/sh
# install-cuda BACKEND CUDA_VERSION build|runtime
#
# For LLAMA_BACKEND=cuda, installs CUDA from NVIDIA's apt repository for Debian 12 (the
# official Python 3.11 image is Debian 12; NVIDIA's own CUDA images carry another Python):
# the compiler, headers and cuBLAS for the builder stage, only the runtime libraries for the
# final one. The GPU driver (libcuda) comes from the host through the NVIDIA Container Toolkit.
# For any other backend it does nothing.
set -eu

backend=$1
version=$2
stage=$3

if [ "$backend" != cuda ]; then
    exit 0
fi

suffix=$(echo "$version" | tr . -)
case "$(dpkg --print-architecture)" in
    amd64) repo_arch=x86_64; target=x86_64-linux ;;
    arm64) repo_arch=sbsa; target=sbsa-linux ;;
    *) echo "install-cuda: no CUDA packages for $(dpkg --print-architecture)" >&2; exit 1 ;;
esac

keyring=/tmp/cuda-keyring.deb
curl -fsSL -o "$keyring" \
    "https://developer.download.nvidia.com/compute/cuda/repos/debian12/$repo_arch/cuda-keyring_1.1-1_all.deb"
dpkg -i "$keyring"
rm "$keyring"
apt-get update

case "$stage" in
    build)
        apt-get install -y --no-install-recommends \
            "cuda-nvcc-$suffix" "cuda-cudart-dev-$suffix" "cuda-cccl-$suffix" \
            "cuda-driver-dev-$suffix" "libcublas-dev-$suffix"
        ;;
    runtime)
        apt-get install -y --no-install-recommends "cuda-cudart-$suffix" "libcublas-$suffix"
        ;;
    *) echo "install-cuda: stage must be build or runtime, not $stage" >&2; exit 1 ;;
esac

echo "/usr/local/cuda-$version/targets/$target/lib" > /etc/ld.so.conf.d/appliance-cuda.conf
ldconfig
rm -rf /var/lib/apt/lists/*
