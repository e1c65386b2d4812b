# Every platform image from images/Dockerfile, for the registry and tag you name:
#   REGISTRY=registry.example.com/ml TAG=0.1.0 docker buildx bake --push
#   docker buildx bake train                  one role
# The defaults name what the chart's values.yaml pulls (ghcr.io/simplear/simplear-<role>:<appVersion>), which
# .github/workflows/images.yml publishes on a version tag.

variable "REGISTRY" {
  default = "ghcr.io/simplear"
}

variable "TAG" {
  default = "0.1.0"
}

# The CUDA build of torch and vLLM in the GPU roles: a PyTorch index suffix (download.pytorch.org/whl/<CUDA>).
variable "CUDA" {
  default = "cu130"
}

group "default" {
  targets = ["base", "train", "rollout", "serve"]
}

target "_role" {
  context    = "."
  dockerfile = "images/Dockerfile"
  platforms  = ["linux/amd64"]
  args = {
    CUDA = CUDA
  }
  labels = {
    "org.opencontainers.image.version" = TAG
    "org.opencontainers.image.licenses" = "Apache-2.0"
  }
}

target "base" {
  inherits = ["_role"]
  target   = "base"
  tags     = ["${REGISTRY}/simplear-base:${TAG}"]
}

target "train" {
  inherits = ["_role"]
  target   = "train"
  tags     = ["${REGISTRY}/simplear-train:${TAG}"]
}

target "rollout" {
  inherits = ["_role"]
  target   = "rollout"
  tags     = ["${REGISTRY}/simplear-rollout:${TAG}"]
}

target "serve" {
  inherits = ["_role"]
  target   = "serve"
  tags     = ["${REGISTRY}/simplear-serve:${TAG}"]
}
