#!/bin/sh
# azd postdeploy hook. The first `azd up` provisions before any code runs, so the Event Grid
# subscriptions (their webhooks need the deployed blob triggers) and the function keys in Key
# Vault (they exist once each host has started) wait for this second provision.
set -eu
if [ "${APPS_DEPLOYED:-false}" = "true" ]; then
  echo "apps already wired to Event Grid and Key Vault"
  exit 0
fi
azd env set APPS_DEPLOYED true
azd provision --no-prompt
