// A new Azure ML workspace with its own default storage (AML needs a flat-namespace account, so
// not the lake), sharing the deployment's Key Vault and Application Insights.
param location string
param tags object
param workspaceName string
param storageName string
param keyVaultId string
param applicationInsightsId string

resource mlStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_43: the name is a parameter (stml + a 13-character uniqueString: 17 lowercase letters and digits); checkov tests the identifier's text
  // checkov:skip=CKV_AZURE_35: no virtual network in this deployment; AML's compute reaches its default storage over the public endpoint
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35
  // checkov:skip=CKV_AZURE_206: AML's default storage holds run artefacts that a rerun recreates; LRS is enough
  name: storageName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource newWorkspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' = {
  // checkov:skip=CKV_AZURE_243: no virtual network in this deployment; the workspace is reached with Entra ID only
  name: workspaceName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  sku: {
    name: 'Basic'
    tier: 'Basic'
  }
  properties: {
    friendlyName: workspaceName
    storageAccount: mlStorage.id
    keyVault: keyVaultId
    applicationInsights: applicationInsightsId
    publicNetworkAccess: 'Enabled'
  }
}

output id string = newWorkspace.id
