#!/bin/sh
# Registers what the pipelines name in this environment's Azure ML workspace: `python -m shared
# aml-assets` creates or updates the environment and every component at the versions the app
# submits (a second run creates nothing) and checks that the compute cluster infra/ declares
# exists. Arguments go to the command (`--check` lists what is missing and creates nothing).
#
# The workspace is the provision's (its outputs AML_SUBSCRIPTION_ID, AML_RESOURCE_GROUP and
# AML_WORKSPACE, which azd keeps in the environment). The Python is $FORECASTOPS_PYTHON when set
# (the CD workflows set it to theirs), else a venv with requirements.txt, made once per content
# of that file under ${XDG_CACHE_HOME:-~/.cache}/forecastops (outside the app's folder, so that
# no deployment package carries it).
set -eu
cd "$(dirname "$0")/../.."
for name in AML_SUBSCRIPTION_ID AML_RESOURCE_GROUP AML_WORKSPACE; do
  eval "value=\${$name:-}"
  if [ -z "$value" ]; then
    echo "aml-assets: $name is not in the azd environment: run azd provision first" >&2
    exit 1
  fi
done
python=${FORECASTOPS_PYTHON:-}
if [ -z "$python" ]; then
  base=${PYTHON:-python3}
  digest=$("$base" -c 'import hashlib; print(hashlib.sha256(open("requirements.txt", "rb").read()).hexdigest()[:16])')
  venv="${XDG_CACHE_HOME:-$HOME/.cache}/forecastops/deploy-$digest"
  if [ ! -f "$venv/.installed" ]; then
    echo "aml-assets: a Python environment with requirements.txt in $venv (once)"
    "$base" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -r requirements.txt
    touch "$venv/.installed"
  fi
  python="$venv/bin/python"
fi
export AML_SUBSCRIPTION_ID AML_RESOURCE_GROUP AML_WORKSPACE
exec "$python" -m shared aml-assets "$@"
