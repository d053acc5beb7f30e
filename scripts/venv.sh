# Sourced by the scripts that need Python tools from PyPI (api-fuzz.sh, validate-deploy.sh):
# the project's git-ignored virtual environment, tools/venv, and `venv_install`, which installs a
# pinned requirements file into it when the file changed since the last install (a stamp per
# requirements file keeps its hash) or the tool it provides is missing. The caller defines
# `log` and `die`.

VENV=tools/venv

# venv_install <requirements file> <an executable the requirements provide>
venv_install() {
  local requirements="$1" provides="$2" sum stamp
  sum="$(sha256sum "$requirements" | cut -d' ' -f1)"
  stamp="$VENV/.awx-installed-$(basename "$requirements" .txt)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ] || [ ! -x "$VENV/bin/$provides" ]; then
    log "installing $requirements into $VENV (pip)"
    python3 -c 'import ensurepip, venv' 2>/dev/null \
      || die "python3 -m venv is unavailable: run scripts/setup.sh (it installs python3-venv)"
    [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    echo "$sum" > "$stamp"
  fi
}
