# Sourced by test.sh and reproduce.sh: use the active virtual environment if there is one,
# otherwise create .venv and (re)install the requirements when they are new or have changed.
# By default requirements.txt is installed constrained to the exact versions of
# requirements.lock (those the committed results were made with); REQUIREMENTS=ranges
# installs the ranges alone, which resolve to the newest releases.
# TORCH_INDEX picks where torch and torchvision come from: unset, PyPI (on Linux x86_64 its torch
# is the CUDA build and pulls ~3 GB of nvidia-* and triton wheels, a GPU or not); `cpu`, PyTorch's
# CPU-only build from https://download.pytorch.org/whl/cpu (no nvidia-*; that index must be
# reachable); `cu126` and the like, that CUDA build from the same site; or an index URL.
if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    echo "creating .venv" >&2
    python3 -m venv .venv
  fi
  mode=${REQUIREMENTS:-lock}
  case "$mode" in
    lock) pins=(-c requirements.lock) ;;
    ranges) pins=() ;;
    *) echo "error: REQUIREMENTS must be lock or ranges, got '$mode'" >&2; exit 2 ;;
  esac
  torch_index=${TORCH_INDEX:-}
  case "$torch_index" in
    "") ;;
    http://*|https://*|file://*) ;;
    cpu|cu[0-9]*|rocm[0-9]*) torch_index="https://download.pytorch.org/whl/$torch_index" ;;
    *) echo "error: TORCH_INDEX must be cpu, a CUDA tag such as cu126, or an index URL, got '$torch_index'" >&2; exit 2 ;;
  esac
  stamp=.venv/.requirements.sha1
  want="$mode ${torch_index:-pypi} $(cat requirements.txt requirements.lock | sha1sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing requirements ($mode${torch_index:+, torch from $torch_index}) into .venv (first time: a few minutes)" >&2
    # torch and torchvision first from their own index, alone (--upgrade: a PyPI build already
    # there is replaced by that index's, e.g. 2.14.1+cpu; --no-deps: that index need not hold
    # the locked versions of their dependencies), then everything else from PyPI, which keeps them
    if [ -n "$torch_index" ] && ! .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        --upgrade --no-deps --index-url "$torch_index" torch torchvision "${pins[@]}"; then
      echo "error: pip could not install torch and torchvision from $torch_index; unset TORCH_INDEX to take them from PyPI" >&2
      exit 1
    fi
    if ! .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt "${pins[@]}"; then
      echo "error: pip could not install the requirements ($mode); with another Python or platform try REQUIREMENTS=ranges" >&2
      exit 1
    fi
    echo "$want" > "$stamp"
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
