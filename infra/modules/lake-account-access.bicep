// Storage Blob Data Contributor on the whole lake for one identity: the AML compute cluster's,
// with which the jobs read the datastores' containers (lake_<container>) and write the runs'
// outputs (lake_runs). Container-scoped roles for the apps are in lake-access.bicep.
param lakeName string
param principalId string

var blobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource lake 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: lakeName
}

resource contributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(lake.id, principalId, blobDataContributor)
  scope: lake
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataContributor)
  }
}
