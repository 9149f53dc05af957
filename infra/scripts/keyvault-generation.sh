#!/bin/sh
# Picks the generation of this environment's Key Vault (main.bicep: kv-<token>-<generation>)
# before a provision. The vault keeps purge protection, so once `azd down` (with or without
# --purge) deleted it, its soft-deleted vault holds the name for the retention period (7 days in
# dev, 90 in prod) and no vault of that name can be made. A live vault of this environment keeps
# its generation; when there is none, the next provision takes the generation after every
# soft-deleted vault of this environment's resource group. The choice is KEY_VAULT_GENERATION in
# the azd environment (also a provision output, so a fresh CI environment reads it back).
set -eu
group="rg-forecastops-${AZURE_ENV_NAME:?AZURE_ENV_NAME is not set}"

# the highest generation among vault names (the first column of its input)
generations() {
  cut -f 1 | sed -n 's/^kv-[a-z0-9]*-\([0-9][0-9]*\)$/\1/p' | sort -n | tail -n 1
}

live=$(az keyvault list --resource-group "$group" --query "[].name" --output tsv 2>/dev/null | generations)
if [ -n "$live" ]; then
  generation=$live
else
  if ! deleted_vaults=$(az keyvault list-deleted --resource-type vault \
    --query "[].[name, properties.vaultId]" --output tsv 2>/dev/null); then
    echo "keyvault-generation: cannot list deleted vaults (needs Microsoft.KeyVault/locations/deletedVaults/read); keeping generation ${KEY_VAULT_GENERATION:-0}" >&2
    exit 0
  fi
  deleted=$(printf '%s\n' "$deleted_vaults" | grep -i "/resourcegroups/$group/" | generations)
  if [ -n "$deleted" ]; then
    generation=$((deleted + 1))
  else
    generation=0
  fi
fi
if [ "$generation" != "${KEY_VAULT_GENERATION:-0}" ]; then
  echo "Key Vault generation $generation (was ${KEY_VAULT_GENERATION:-0}): a deleted vault holds the earlier name"
fi
azd env set KEY_VAULT_GENERATION "$generation"
