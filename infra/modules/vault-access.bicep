// Key Vault Administrator on the deployment's vault for the Azure ML workspace it is bound to.
// The vault is RBAC-only (no access policies), so the workspace's identity has no data-plane
// access unless a role grants it; Azure ML documents Key Vault Administrator for a workspace
// identity on an RBAC vault (learn.microsoft.com/azure/machine-learning/how-to-identity-based-service-authentication).
param vaultName string
param principalId string

var keyVaultAdministrator = '00482a5a-887f-4fb3-b363-3b7fe8e74483'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource administrator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultAdministrator)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultAdministrator)
  }
}
