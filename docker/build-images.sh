#!/usr/bin/env bash
# Builds the five Weather images: weather/frontend:v1 and :v2, weather/forecast:v1
# and :v2, weather/recommendation:v1.
#
#   docker/build-images.sh                 # for this machine, loaded into docker
#   PLATFORMS=linux/amd64,linux/arm64 PUSH=1 REGISTRY=ghcr.io/you docker/build-images.sh
#
# A multi-platform build cannot be loaded into the local image store, so it needs
# PUSH=1 (and a REGISTRY to push to).
set -euo pipefail
cd "$(dirname "$0")/.."

registry=${REGISTRY:-}
prefix=${registry:+$registry/}weather
platforms=${PLATFORMS:-}
push=${PUSH:-}

images=(frontend:v1 frontend:v2 forecast:v1 forecast:v2 recommendation:v1)
for image in "${images[@]}"; do
  app=${image%%:*}
  version=${image##*:}
  args=(buildx build -f docker/Dockerfile
    --build-arg "APP=$app" --build-arg "APP_VERSION=$version"
    -t "$prefix/$app:$version")
  if [ -n "$platforms" ]; then
    args+=(--platform "$platforms")
  fi
  if [ -n "$push" ]; then
    args+=(--push)
  else
    args+=(--load)
  fi
  echo "==> $prefix/$app:$version"
  docker "${args[@]}" .
done
echo "built: ${images[*]/#/$prefix/}"
