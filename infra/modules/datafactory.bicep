// Data Factory with the weekly pipeline, its linked services, datasets and schedule, all loaded
// from adf/ (the JSON that tests/deploy/test_adf.py checks). Environment-specific values (the apps'
// URLs, Key Vault, the lake) are the factory's global parameters, so the JSON is the same in
// every environment.
param location string
param tags object
param name string
param keyVaultName string
param lakeName string
param landingBlobServiceUri string
param ingestWeatherUrl string
param ingestShipmentsUrl string
param ingestDemographicsUrl string
param bridgeUrl string
@description('The Key Vault secrets holding the apps\' function keys (the factory may read these and nothing else)')
param functionKeySecretNames array
@description('The secrets exist (they are written once the apps run)')
param secretsExist bool

var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var blobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

var linkedServices = [
  loadJsonContent('../../adf/linkedService/ls_lake.json')
  loadJsonContent('../../adf/linkedService/ls_landing.json')
]
var datasets = [
  loadJsonContent('../../adf/dataset/ds_lake_raw.json')
  loadJsonContent('../../adf/dataset/ds_landing_files.json')
]
var pipelineDefinition = loadJsonContent('../../adf/pipeline/pl_weekly_forecast.json')
var triggerDefinition = loadJsonContent('../../adf/trigger/tr_weekly.json')

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource lake 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: lakeName
}

resource lakeBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: lake
  name: 'default'
}

resource raw 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: lakeBlobs
  name: 'raw'
}

resource factory 'Microsoft.DataFactory/factories@2018-06-01' = {
  // checkov:skip=CKV_AZURE_103: the pipeline's source of truth is adf/ in this repository, deployed by Bicep; a Git-connected factory would be a second one
  // checkov:skip=CKV_AZURE_104: the Azure integration runtime calls the apps and Key Vault over public endpoints; no virtual network in this deployment
  name: name
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    publicNetworkAccess: 'Enabled'
    globalParameters: {
      ingestWeatherUrl: {
        type: 'String'
        value: ingestWeatherUrl
      }
      ingestShipmentsUrl: {
        type: 'String'
        value: ingestShipmentsUrl
      }
      ingestDemographicsUrl: {
        type: 'String'
        value: ingestDemographicsUrl
      }
      bridgeUrl: {
        type: 'String'
        value: bridgeUrl
      }
      keyVaultUri: {
        type: 'String'
        value: vault.properties.vaultUri
      }
      lakeDfsUrl: {
        type: 'String'
        value: lake.properties.primaryEndpoints.dfs
      }
      landingBlobUrl: {
        type: 'String'
        value: landingBlobServiceUri
      }
    }
  }
}

resource factoryLinkedServices 'Microsoft.DataFactory/factories/linkedservices@2018-06-01' = [
  for ls in linkedServices: {
    parent: factory
    name: ls.name
    properties: ls.properties
  }
]

resource factoryDatasets 'Microsoft.DataFactory/factories/datasets@2018-06-01' = [
  for ds in datasets: {
    parent: factory
    name: ds.name
    properties: ds.properties
    dependsOn: [
      factoryLinkedServices
    ]
  }
]

resource weeklyPipeline 'Microsoft.DataFactory/factories/pipelines@2018-06-01' = {
  parent: factory
  name: pipelineDefinition.name
  properties: pipelineDefinition.properties
  dependsOn: [
    factoryDatasets
  ]
}

// A started trigger cannot be updated: the azd hooks stop it before a provision and start it after
resource weeklyTrigger 'Microsoft.DataFactory/factories/triggers@2018-06-01' = {
  parent: factory
  name: triggerDefinition.name
  properties: triggerDefinition.properties
  dependsOn: [
    weeklyPipeline
  ]
}

resource secrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = [
  for secretName in functionKeySecretNames: {
    parent: vault
    name: secretName
  }
]

resource secretReaders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (secretName, i) in functionKeySecretNames: if (secretsExist) {
    name: guid(vault.id, secretName, factory.id, keyVaultSecretsUser)
    scope: secrets[i]
    properties: {
      principalId: factory.identity.principalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    }
  }
]

// the copy step writes raw/ (and nothing else of the lake)
resource rawWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(raw.id, factory.id, blobDataContributor)
  scope: raw
  properties: {
    principalId: factory.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataContributor)
  }
}

output name string = factory.name
output principalId string = factory.identity.principalId
