# Sourced by test.sh and reproduce.sh: use the active virtual environment if there is one,
# otherwise create .venv and (re)install the requirements when they are new or have changed.
# By default requirements.txt is installed constrained to the exact versions of
# requirements.lock (those the committed results were made with); REQUIREMENTS=ranges
# installs the ranges alone, which resolve to the newest releases.
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
  stamp=.venv/.requirements.sha1
  want="$mode $(cat requirements.txt requirements.lock | sha1sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing requirements ($mode) into .venv (first time: a few minutes)" >&2
    if ! .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt "${pins[@]}"; then
      echo "error: pip could not install the requirements ($mode); with another Python or platform try REQUIREMENTS=ranges" >&2
      exit 1
    fi
    echo "$want" > "$stamp"
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
