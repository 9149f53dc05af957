// The data lake: an ADLS Gen2 account (hierarchical namespace) with one container per lake
// area, its storage queues, and the Event Grid system topic whose BlobCreated events drive the
// blob triggers.
param location string
param tags object
param name string
param skuName string
@description('Object id given Storage Blob Data Contributor on the whole lake for support (empty: none)')
param supportPrincipalId string
@description('The lake\'s containers, one per area (main.bicep\'s lakeContainers; the AML workspace has a datastore for each)')
param containers array
@description('The lake\'s storage queues (main.bicep\'s batchQueue: the data-complete announcements the bridge\'s queue trigger reads; ingestQueues: each ingest app\'s re-ingest requests)')
param queues array

resource lake 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: no virtual network in this deployment; the Flex apps and ADF's Azure IR reach the lake over its public endpoint with their identities (shared keys are off)
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35: public endpoint, Entra ID only
  // checkov:skip=CKV_AZURE_206: replication follows the environment profile (LRS in dev, ZRS in prod)
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    isHnsEnabled: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: lake
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 14
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 14
    }
  }
}

resource lakeContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for container in containers: {
    parent: blobs
    name: container
    properties: {
      publicAccess: 'None'
    }
  }
]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: lake
  name: 'default'
}

resource lakeQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queue in queues: {
    parent: queueService
    name: queue
  }
]

resource support 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(supportPrincipalId)) {
  name: guid(lake.id, supportPrincipalId, 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
  scope: lake
  properties: {
    principalId: supportPrincipalId
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: 'evgt-${name}'
  location: location
  tags: tags
  properties: {
    source: lake.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output name string = lake.name
output id string = lake.id
output blobEndpoint string = lake.properties.primaryEndpoints.blob
output dfsEndpoint string = lake.properties.primaryEndpoints.dfs
output systemTopicName string = systemTopic.name
