// An app's default host key, copied into Key Vault for ADF (x-functions-key). Read from the app
// at deployment time; never in a file. Deployed once the app's host has started.
param keyVaultName string
param appName string
param secretName string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: appName
}

resource functionKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: the secret mirrors the app's key and is refreshed by every provision; an expiry date would make ADF fail while the key itself is still valid
  parent: vault
  name: secretName
  properties: {
    contentType: 'Azure Functions host key (x-functions-key) of ${appName}'
    value: listKeys('${site.id}/host/default', '2024-04-01').functionKeys.default
  }
}
