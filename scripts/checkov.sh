#!/usr/bin/env bash
# Install the pinned checkov into its own virtualenv (.venv-checkov; it conflicts with pytest 9).
# Idempotent: does nothing when the pinned version is already there. CI runs it before pytest.
set -euo pipefail

CHECKOV_VERSION="3.3.30"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROOT}/.venv-checkov"

if [[ -x "${VENV}/bin/checkov" ]] && [[ "$("${VENV}/bin/checkov" --version 2>/dev/null)" == "${CHECKOV_VERSION}" ]]; then
  echo "checkov ${CHECKOV_VERSION} already in ${VENV}"
  exit 0
fi

python3 -m venv "${VENV}"
"${VENV}/bin/pip" install --quiet "checkov==${CHECKOV_VERSION}"
echo "installed checkov $("${VENV}/bin/checkov" --version) in ${VENV}"
