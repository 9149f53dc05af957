// ForecastOps: one resource group with the lake, one Flex Consumption app per ingestion source,
// one for the ADF -> Azure ML bridge, monitoring, Key Vault, Azure ML and Data Factory.
// `azd up` deploys it (infra/main.parameters.json); main.dev.bicepparam and main.prod.bicepparam
// state the two environments for `az deployment sub create`.
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('azd environment name; names and tags derive from it')
param environmentName string

@minLength(1)
@description('Region of every resource (one where Flex Consumption is offered)')
param location string

@allowed(['dev', 'prod'])
@description('dev (from master) or prod (from release): sizes, retention, replication')
param environmentType string = 'dev'

@description('Object id of the person or pipeline running the deployment; gets data access to the lake for support (empty: none)')
param principalId string = ''

@description('An existing Azure ML workspace to use (empty: create one)')
param amlWorkspaceName string = ''

@description('Resource group of the existing workspace (empty: the one created here)')
param amlWorkspaceResourceGroup string = ''

@description('True once the apps\' code is deployed (the postdeploy hook sets it): creates the Event Grid subscriptions, whose webhooks need the deployed blob triggers, and stores the function keys in Key Vault')
param appsDeployed bool = false

@description('Subscribe the bridge app to Azure ML job events (needs the aml_job_event function)')
param amlEventsEnabled bool = false

@description('Blob endpoint of the vendors\' landing account that ADF copies from (empty: the copy step has nowhere to read; the pipeline parameter copyRaw stays false)')
param landingBlobServiceUri string = ''

@description('Where alerts are mailed (empty: alerts fire without a mail action)')
param alertEmail string = ''

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  workload: 'forecastops'
  environment: environmentType
}

var profiles = {
  dev: {
    ingestMaximumInstances: 10
    bridgeMaximumInstances: 10
    instanceMemoryMB: 2048
    logRetentionDays: 30
    storageSku: 'Standard_LRS'
    keyVaultRetentionDays: 7
  }
  prod: {
    ingestMaximumInstances: 40
    bridgeMaximumInstances: 20
    instanceMemoryMB: 4096
    logRetentionDays: 90
    storageSku: 'Standard_ZRS'
    keyVaultRetentionDays: 90
  }
}
var profile = profiles[environmentType]

// One code base, several apps: FORECASTOPS_FUNCTIONS selects the blueprints each app registers.
// `service` is the azd service name in azure.yaml; `source` is the lake folder raw/<source>/ the
// app's blob trigger (`blobFunction`) follows.
var ingestApps = [
  {
    service: 'ingest-weather'
    short: 'wx'
    functions: 'ingest_weather'
    source: 'weather'
    blobFunction: 'ingest_weather_blob'
  }
  {
    service: 'ingest-shipments'
    short: 'sh'
    functions: 'ingest_shipments'
    source: 'shipments'
    blobFunction: 'ingest_shipments_blob'
  }
  {
    service: 'ingest-demographics'
    short: 'dm'
    functions: 'ingest_demographics'
    source: 'demographics'
    blobFunction: 'ingest_demographics_blob'
  }
]
var bridgeApp = {
  service: 'bridge'
  short: 'br'
  functions: 'trigger_aml,poll_aml_durable'
}

// The lake's containers (a lake path's first segment): lake.bicep creates them and aml.bicep
// gives the workspace a datastore over each, lake_<container>, the names the product's URIs use
// (shared/aml/lakeuri.py: azureml://datastores/lake_<container>/paths/<rest>)
var lakeContainers = ['raw', 'curated', 'quarantine', 'runs', 'models', 'batches', 'oracle']

var createAml = empty(amlWorkspaceName)
var amlName = createAml ? 'mlw-${resourceToken}' : amlWorkspaceName
var amlGroup = empty(amlWorkspaceResourceGroup) ? rg.name : amlWorkspaceResourceGroup

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-forecastops-${environmentName}'
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    retentionInDays: profile.logRetentionDays
    alertEmail: alertEmail
  }
}

module lake 'modules/lake.bicep' = {
  name: 'lake'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'stlake${resourceToken}'
    skuName: profile.storageSku
    supportPrincipalId: principalId
    containers: lakeContainers
  }
}

module vault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'kv-${resourceToken}'
    softDeleteRetentionInDays: profile.keyVaultRetentionDays
  }
}

module ingest 'modules/function-app.bicep' = [
  for app in ingestApps: {
    name: 'app-${app.service}'
    scope: rg
    params: {
      location: location
      tags: tags
      service: app.service
      appName: 'func-${app.service}-${resourceToken}'
      hostStorageName: 'st${app.short}${resourceToken}'
      hostStorageSku: profile.storageSku
      functions: app.functions
      durable: false
      maximumInstanceCount: profile.ingestMaximumInstances
      instanceMemoryMB: profile.instanceMemoryMB
      applicationInsightsName: monitoring.outputs.applicationInsightsName
      lakeName: lake.outputs.name
      amlSettings: {}
      keyVaultName: vault.outputs.name
      storeFunctionKey: appsDeployed
    }
  }
]

module bridge 'modules/function-app.bicep' = {
  name: 'app-${bridgeApp.service}'
  scope: rg
  params: {
    location: location
    tags: tags
    service: bridgeApp.service
    appName: 'func-${bridgeApp.service}-${resourceToken}'
    hostStorageName: 'st${bridgeApp.short}${resourceToken}'
    hostStorageSku: profile.storageSku
    functions: bridgeApp.functions
    durable: true
    maximumInstanceCount: profile.bridgeMaximumInstances
    instanceMemoryMB: profile.instanceMemoryMB
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    lakeName: lake.outputs.name
    amlSettings: {
      FORECASTOPS_AML_BACKEND: 'azureml'
      AML_SUBSCRIPTION_ID: subscription().subscriptionId
      AML_RESOURCE_GROUP: amlGroup
      AML_WORKSPACE: amlName
      FORECASTOPS_WATCH_EVENTS: amlEventsEnabled ? 'true' : 'false'
      FORECASTOPS_WATCH_SAFETY_POLL_S: '900'
      FORECASTOPS_STALENESS_SCHEDULE: '0 0 6 * * *'
      FORECASTOPS_BATCH_SCHEDULE: '0 0 9 * * 1'
      FORECASTOPS_BATCH_INCOMPLETE: 'wait'
      FORECASTOPS_RETRAIN: 'changed'
      FORECASTOPS_STALE_RETRAIN: 'next_batch'
      FORECASTOPS_PROMOTION_MARGIN: '0.02'
    }
    keyVaultName: vault.outputs.name
    storeFunctionKey: appsDeployed
  }
}

// Least privilege on the lake: each ingest app reads its own raw/<source>/ container and writes
// curated/, quarantine/ and batches/ (the week index, the data-complete announcements); the
// bridge reads raw/ never, writes runs/ (pipeline outputs), models/ (the registry), batches/
// (plans, claims, summaries, data records) and curated/ (forecasts/v1, a standard dataset), and
// takes the batch queue's messages.
module ingestLakeAccess 'modules/lake-access.bicep' = [
  for (app, i) in ingestApps: {
    name: 'lake-access-${app.service}'
    scope: rg
    params: {
      lakeName: lake.outputs.name
      principalId: ingest[i].outputs.principalId
      readContainers: ['raw']
      writeContainers: ['curated', 'quarantine', 'batches']
      // the blob trigger keeps its poison queue in the account its connection names; the
      // batch queue is there too
      queueAccess: true
    }
  }
]

module bridgeLakeAccess 'modules/lake-access.bicep' = {
  name: 'lake-access-${bridgeApp.service}'
  scope: rg
  params: {
    lakeName: lake.outputs.name
    principalId: bridge.outputs.principalId
    readContainers: []
    writeContainers: ['curated', 'runs', 'models', 'batches']
    // the batch queue's trigger (and the staleness check's retrain-at-once message)
    queueAccess: true
  }
}

module lakeEvents 'modules/lake-events.bicep' = if (appsDeployed) {
  name: 'lake-events'
  scope: rg
  params: {
    systemTopicName: lake.outputs.systemTopicName
    subscriptions: [
      for (app, i) in ingestApps: {
        name: 'raw-${app.source}'
        source: app.source
        appName: ingest[i].outputs.name
        functionName: app.blobFunction
      }
    ]
  }
}

module aml 'modules/aml.bicep' = {
  name: 'aml'
  scope: resourceGroup(amlGroup)
  params: {
    location: location
    tags: tags
    createWorkspace: createAml
    workspaceName: amlName
    storageName: 'stml${resourceToken}'
    keyVaultId: vault.outputs.id
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    bridgePrincipalId: bridge.outputs.principalId
    eventsEnabled: amlEventsEnabled && appsDeployed
    bridgeAppId: bridge.outputs.id
    lakeName: lake.outputs.name
    lakeResourceGroup: rg.name
    lakeContainers: lakeContainers
  }
}

// The workspace's identity reads the lake through its datastores (identity-based: no keys) and
// writes the runs' outputs (azureml://datastores/lake_runs/paths/<run_id>/outputs/...)
module amlLakeAccess 'modules/lake-access.bicep' = {
  name: 'lake-access-aml'
  scope: rg
  params: {
    lakeName: lake.outputs.name
    principalId: aml.outputs.workspacePrincipalId
    readContainers: ['curated', 'models', 'batches', 'oracle']
    writeContainers: ['runs']
    queueAccess: false
  }
}

module factory 'modules/datafactory.bicep' = {
  name: 'datafactory'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'adf-${resourceToken}'
    keyVaultName: vault.outputs.name
    lakeName: lake.outputs.name
    landingBlobServiceUri: landingBlobServiceUri
    ingestWeatherUrl: ingest[0].outputs.url
    ingestShipmentsUrl: ingest[1].outputs.url
    ingestDemographicsUrl: ingest[2].outputs.url
    bridgeUrl: bridge.outputs.url
    functionKeySecretNames: [
      ingest[0].outputs.functionKeySecretName
      ingest[1].outputs.functionKeySecretName
      ingest[2].outputs.functionKeySecretName
      bridge.outputs.functionKeySecretName
    ]
    secretsExist: appsDeployed
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    actionGroupId: monitoring.outputs.actionGroupId
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output RESOURCE_GROUP string = rg.name
output APPS_DEPLOYED bool = appsDeployed
output LAKE_STORAGE_ACCOUNT string = lake.outputs.name
output LAKE_BLOB_ENDPOINT string = lake.outputs.blobEndpoint
output KEY_VAULT_NAME string = vault.outputs.name
output DATA_FACTORY_NAME string = factory.outputs.name
output AML_WORKSPACE string = amlName
output AML_RESOURCE_GROUP string = amlGroup
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output SERVICE_INGEST_WEATHER_NAME string = ingest[0].outputs.name
output SERVICE_INGEST_WEATHER_URL string = ingest[0].outputs.url
output SERVICE_INGEST_SHIPMENTS_NAME string = ingest[1].outputs.name
output SERVICE_INGEST_SHIPMENTS_URL string = ingest[1].outputs.url
output SERVICE_INGEST_DEMOGRAPHICS_NAME string = ingest[2].outputs.name
output SERVICE_INGEST_DEMOGRAPHICS_URL string = ingest[2].outputs.url
output SERVICE_BRIDGE_NAME string = bridge.outputs.name
output SERVICE_BRIDGE_URL string = bridge.outputs.url
