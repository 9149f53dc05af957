#!/bin/sh
# azd preprovision hook: an environment whose resource group is gone (azd down) starts unwired
# again, the Key Vault name this provision may use is picked, and ADF's weekly trigger is
# stopped (ADF refuses to update a started trigger; postprovision starts it again).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ "${APPS_DEPLOYED:-false}" = "true" ] && [ "$(az group exists --name "rg-forecastops-${AZURE_ENV_NAME:?}" \
  --output json 2>/dev/null || true)" = "false" ]; then
  # a provision with APPS_DEPLOYED=true would read keys of apps that have no code yet
  echo "rg-forecastops-$AZURE_ENV_NAME is gone: the apps are wired again after the next deploy"
  azd env set APPS_DEPLOYED false
fi
"$here/keyvault-generation.sh"
"$here/adf-trigger.sh" stop
