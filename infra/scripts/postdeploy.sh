#!/bin/sh
# azd postdeploy hook: wire the deployed apps (once), then register what the pipelines name in
# Azure ML (every deploy).
#
# The first `azd up` provisions before any code runs, so the Event Grid subscriptions (their
# webhooks need the deployed blob triggers and each ingest host's blobs_extension system key) and
# the function keys in Key Vault (functionKeys.default) wait for a second provision, made with
# FORECASTOPS_WIRE_APPS=true. A host makes its keys only once it has started, some time after its
# code is deployed: this script waits for them (bounded retries with backoff), provisions, and
# records APPS_DEPLOYED=true only when that provision succeeded (azd also writes it from the
# provision's outputs, which it saves only on success). A failed wiring leaves APPS_DEPLOYED
# false, so the next `azd deploy` or `azd up` tries again.
#
# KEYS_WAIT_ATTEMPTS (12), KEYS_WAIT_FIRST_S (10) and KEYS_WAIT_MAX_S (60) bound the wait: 10 s,
# doubling up to 60 s between attempts, about nine minutes in all.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
attempts=${KEYS_WAIT_ATTEMPTS:-12}
first=${KEYS_WAIT_FIRST_S:-10}
longest=${KEYS_WAIT_MAX_S:-60}

# the services of azure.yaml: <env prefix> <keys the wiring reads from its host>
services="INGEST_WEATHER:blobs INGEST_SHIPMENTS:blobs INGEST_DEMOGRAPHICS:blobs BRIDGE:function"

# true once the app's host has made the keys the wiring provision reads (prints no key; JSON
# output prints the answer as true or false, whatever az's version writes for a bool in tsv)
has_keys() {
  app=$1
  query="type(functionKeys.default) == 'string'"
  if [ "$2" = "blobs" ]; then
    query="$query && type(systemKeys.blobs_extension) == 'string'"
  fi
  [ "$(az functionapp keys list --resource-group "$AZURE_RESOURCE_GROUP" --name "$app" \
    --query "$query" --output json 2>/dev/null || true)" = "true" ]
}

wait_for_keys() {
  app=$1
  url=$2
  kind=$3
  delay=$first
  attempt=1
  while :; do
    # any request starts a host that scaled to zero; the answer does not matter
    curl --silent --output /dev/null --max-time 30 "$url/" || true
    if has_keys "$app" "$kind"; then
      echo "$app: its host has made its keys"
      return 0
    fi
    if [ "$attempt" -ge "$attempts" ]; then
      echo "$app: no host keys after $attempts attempts; run \`azd deploy\` again once the app runs" >&2
      return 1
    fi
    echo "$app: waiting ${delay}s for its host's keys (attempt $attempt of $attempts)"
    sleep "$delay"
    attempt=$((attempt + 1))
    delay=$((delay * 2))
    if [ "$delay" -gt "$longest" ]; then
      delay=$longest
    fi
  done
}

if [ "${APPS_DEPLOYED:-false}" = "true" ]; then
  echo "apps already wired to Event Grid and Key Vault"
else
  for entry in $services; do
    prefix=${entry%%:*}
    eval "app=\${SERVICE_${prefix}_NAME:-}"
    eval "url=\${SERVICE_${prefix}_URL:-}"
    if [ -z "$app" ] || [ -z "$url" ]; then
      echo "SERVICE_${prefix}_NAME or SERVICE_${prefix}_URL is not in the azd environment: run azd provision first" >&2
      exit 1
    fi
    wait_for_keys "$app" "$url" "${entry#*:}"
  done
  echo "provisioning again to wire the apps: the Event Grid subscriptions and the function keys in Key Vault"
  FORECASTOPS_WIRE_APPS=true azd provision --no-prompt
  azd env set APPS_DEPLOYED true
fi

"$here/aml-assets.sh"
