# Sourced by test.sh and reproduce.sh: use the active virtual environment if there is one,
# otherwise create .venv and (re)install requirements.txt when it is new or has changed.
if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    echo "creating .venv" >&2
    python3 -m venv .venv
  fi
  stamp=.venv/.requirements.sha1
  want=$(sha1sum requirements.txt | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing requirements into .venv (first time: a few minutes)" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
    echo "$want" > "$stamp"
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
