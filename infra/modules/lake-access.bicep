// One app's data roles on the lake, scoped to the containers it needs.
param lakeName string
param principalId string
@description('Containers a blob trigger follows (Storage Blob Data Owner: the role the Functions docs give an identity-based blob trigger)')
param ownerContainers array
@description('Containers the app only reads (Storage Blob Data Reader)')
param readContainers array
@description('Containers the app writes (Storage Blob Data Contributor)')
param writeContainers array
@description('Storage Queue Data Contributor on the lake account: the blob trigger keeps its poison queue there')
param queueAccess bool

var blobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var blobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
var blobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var queueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'

resource lake 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: lakeName
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: lake
  name: 'default'
}

resource owned 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for container in ownerContainers: {
    parent: blobs
    name: container
  }
]

resource readable 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for container in readContainers: {
    parent: blobs
    name: container
  }
]

resource writable 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for container in writeContainers: {
    parent: blobs
    name: container
  }
]

resource owners 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (container, i) in ownerContainers: {
    name: guid(owned[i].id, principalId, blobDataOwner)
    scope: owned[i]
    properties: {
      principalId: principalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataOwner)
    }
  }
]

resource readers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (container, i) in readContainers: {
    name: guid(readable[i].id, principalId, blobDataReader)
    scope: readable[i]
    properties: {
      principalId: principalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataReader)
    }
  }
]

resource writers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (container, i) in writeContainers: {
    name: guid(writable[i].id, principalId, blobDataContributor)
    scope: writable[i]
    properties: {
      principalId: principalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataContributor)
    }
  }
]

resource queues 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (queueAccess) {
  name: guid(lake.id, principalId, queueDataContributor)
  scope: lake
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', queueDataContributor)
  }
}
