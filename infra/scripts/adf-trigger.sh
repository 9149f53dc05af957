#!/bin/sh
# azd preprovision / postprovision hook: ADF refuses to update a started trigger, so the weekly
# trigger is stopped before a provision and started after it. Usage: adf-trigger.sh stop|start
set -eu
action="$1"
if [ -z "${DATA_FACTORY_NAME:-}" ] || [ -z "${AZURE_RESOURCE_GROUP:-}" ]; then
  echo "no data factory yet (first provision): nothing to $action"
  exit 0
fi
az extension add --name datafactory --upgrade --only-show-errors >/dev/null
if az datafactory trigger show --factory-name "$DATA_FACTORY_NAME" --resource-group "$AZURE_RESOURCE_GROUP" \
    --name tr_weekly --only-show-errors >/dev/null 2>&1; then
  az datafactory trigger "$action" --factory-name "$DATA_FACTORY_NAME" --resource-group "$AZURE_RESOURCE_GROUP" \
    --name tr_weekly --only-show-errors
  echo "trigger tr_weekly: $action"
fi
