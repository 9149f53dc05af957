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

@description('True once the apps are wired (APPS_DEPLOYED, recorded by infra/scripts/postdeploy.sh): their code is deployed and each host has made its keys')
param appsDeployed bool = false

@description('True only for the provision infra/scripts/postdeploy.sh runs to wire the apps (FORECASTOPS_WIRE_APPS=true), after it waited for the hosts\' keys: a provision that fails leaves APPS_DEPLOYED false, so the next deploy tries again')
param wiringApps bool = false

@minValue(0)
@description('Which incarnation of this environment\'s Key Vault: a vault with purge protection keeps its name for its retention after `azd down`, so infra/scripts/keyvault-generation.sh moves to the next generation (a new name) when this one\'s vault is soft-deleted')
param keyVaultGeneration int = 0

@description('Subscribe the bridge app to Azure ML job events (needs the aml_job_event function)')
param amlEventsEnabled bool = false

@description('Blob endpoint of the vendors\' landing account that ADF copies from (empty: the copy step has nowhere to read; the pipeline parameter copyRaw stays false)')
param landingBlobServiceUri string = ''

@description('Where alerts are mailed (empty: alerts fire without a mail action)')
param alertEmail string = ''

@description('VM size of the AML compute cluster the pipelines run on (empty: the environment profile\'s)')
param amlComputeVmSize string = ''

@minValue(0)
@description('Most nodes the AML compute cluster scales out to (0: the environment profile\'s); it scales in to none')
param amlComputeMaxNodes int = 0

@description('Alert when more than this share of a weekly batch\'s scored groups is served by a fallback (a decimal string, 0-1)')
param fallbackAlertShare string = '0.25'

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
// The Event Grid subscriptions (their webhooks need the deployed blob triggers and each ingest
// host's blobs_extension system key) and the function keys in Key Vault (functionKeys.default)
// exist only once the apps run: they are made from the provision that wires them on
var appsRunning = appsDeployed || wiringApps
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
    amlComputeVmSize: 'Standard_DS3_v2'
    amlComputeMaxNodes: 2
  }
  prod: {
    ingestMaximumInstances: 40
    bridgeMaximumInstances: 20
    instanceMemoryMB: 4096
    logRetentionDays: 90
    storageSku: 'Standard_ZRS'
    keyVaultRetentionDays: 90
    amlComputeVmSize: 'Standard_DS4_v2'
    amlComputeMaxNodes: 10
  }
}
var profile = profiles[environmentType]

// One code base, several apps: FORECASTOPS_FUNCTIONS selects the blueprints each app registers.
// One ingest app per source of the registry (shared/sources.json, read by the app as well):
// `service` is the azd service name in azure.yaml; `source` is the lake folder raw/<source>/ the
// app's blob trigger (`blobFunction`) follows.
var registry = loadJsonContent('../shared/sources.json')
var ingestApps = [
  for s in registry.sources: {
    service: 'ingest-${s.source}'
    short: s.short
    functions: 'ingest_${s.source}'
    source: s.source
    blobFunction: 'ingest_${s.source}_blob'
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

// The lake's storage queue on which the ingest apps announce a week whose data is complete and
// the bridge's queue trigger starts its batch (FORECASTOPS_BATCH_QUEUE, shared/settings.py)
var batchQueue = 'forecastops-batches'

// The prefix of the lake's re-ingest request queues (FORECASTOPS_INGEST_QUEUE): each ingest app's
// route queues a long re-ingest on <prefix>-<source>, which only that app's queue trigger reads
var ingestQueue = 'ingest-requests'
var ingestQueues = [for app in ingestApps: '${ingestQueue}-${app.source}']

// The AML compute cluster every pipeline runs on (pipelines/catalog.toml `compute`, the
// pipelines' `default_compute`), with the system-assigned identity the jobs read the lake with
var amlCompute = {
  name: 'cpu-cluster'
  vmSize: empty(amlComputeVmSize) ? profile.amlComputeVmSize : amlComputeVmSize
  maxNodes: (amlComputeMaxNodes == 0) ? profile.amlComputeMaxNodes : amlComputeMaxNodes
}

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
    queues: concat([batchQueue], ingestQueues)
  }
}

module vault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'kv-${resourceToken}-${keyVaultGeneration}'
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
      batchQueue: batchQueue
      ingestQueue: ingestQueue
      amlSettings: {}
      keyVaultName: vault.outputs.name
      storeFunctionKey: appsRunning
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
    batchQueue: batchQueue
    ingestQueue: ingestQueue
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
    }
    keyVaultName: vault.outputs.name
    storeFunctionKey: appsRunning
  }
}

// Least privilege on the lake: each ingest app's blob trigger follows raw/ (Storage Blob Data
// Owner there, the role the Functions docs give an identity-based blob trigger; the trigger
// never writes raw/) and the app writes curated/, quarantine/ and batches/ (the week index, the
// data-complete announcements); the bridge reads raw/ never, writes runs/ (pipeline outputs),
// models/ (the registry), batches/ (plans, claims, summaries, data records) and curated/
// (forecasts/v1, a standard dataset), and takes the batch queue's messages.
module ingestLakeAccess 'modules/lake-access.bicep' = [
  for (app, i) in ingestApps: {
    name: 'lake-access-${app.service}'
    scope: rg
    params: {
      lakeName: lake.outputs.name
      principalId: ingest[i].outputs.principalId
      ownerContainers: ['raw']
      readContainers: []
      writeContainers: ['curated', 'quarantine', 'batches']
      // Storage Queue Data Contributor on the account the trigger's connection names: the blob
      // trigger's poison queue (webjobs-blobtrigger-poison) is there, and so are the batch queue
      // and the app's re-ingest request queue (which its route sends to, its queue trigger reads)
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
    ownerContainers: []
    readContainers: []
    writeContainers: ['curated', 'runs', 'models', 'batches']
    // the batch queue's trigger (and the staleness check's retrain-at-once message)
    queueAccess: true
  }
}

module lakeEvents 'modules/lake-events.bicep' = if (appsRunning) {
  name: 'lake-events'
  scope: rg
  params: {
    systemTopicName: lake.outputs.systemTopicName
    subscriptions: [
      for (app, i) in ingestApps: {
        name: 'raw-${app.source}'
        source: app.source
        appName: ingest[i].outputs.name
        hostName: ingest[i].outputs.defaultHostName
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
    eventsEnabled: amlEventsEnabled && appsRunning
    bridgeAppId: bridge.outputs.id
    lakeName: lake.outputs.name
    lakeResourceGroup: rg.name
    lakeContainers: lakeContainers
    compute: amlCompute
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
    ownerContainers: []
    readContainers: ['curated', 'models', 'batches', 'oracle']
    writeContainers: ['runs']
    queueAccess: false
  }
}

// The jobs run with the compute cluster's identity (`identity: managed` on the job): it reads the
// datastores' containers and writes the runs' outputs (infra/README.md, "Who reads the lake")
module computeLakeAccess 'modules/lake-account-access.bicep' = {
  name: 'lake-access-compute'
  scope: rg
  params: {
    lakeName: lake.outputs.name
    principalId: aml.outputs.computePrincipalId
  }
}

// A workspace bound to an RBAC-only vault needs a data-plane role there: Key Vault Administrator
// is the one Azure ML documents (how-to-identity-based-service-authentication). An existing
// workspace keeps its own vault.
module amlVaultAccess 'modules/vault-access.bicep' = if (createAml) {
  name: 'vault-access-aml'
  scope: rg
  params: {
    vaultName: vault.outputs.name
    principalId: aml.outputs.workspacePrincipalId
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
    secretsExist: appsRunning
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
    fallbackAlertShare: fallbackAlertShare
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output RESOURCE_GROUP string = rg.name
output APPS_DEPLOYED bool = appsRunning
output KEY_VAULT_GENERATION int = keyVaultGeneration
output LAKE_STORAGE_ACCOUNT string = lake.outputs.name
output LAKE_BLOB_ENDPOINT string = lake.outputs.blobEndpoint
output KEY_VAULT_NAME string = vault.outputs.name
output DATA_FACTORY_NAME string = factory.outputs.name
output AML_SUBSCRIPTION_ID string = subscription().subscriptionId
output AML_WORKSPACE string = amlName
output AML_RESOURCE_GROUP string = amlGroup
output AML_COMPUTE string = amlCompute.name
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output SERVICE_INGEST_WEATHER_NAME string = ingest[0].outputs.name
output SERVICE_INGEST_WEATHER_URL string = ingest[0].outputs.url
output SERVICE_INGEST_SHIPMENTS_NAME string = ingest[1].outputs.name
output SERVICE_INGEST_SHIPMENTS_URL string = ingest[1].outputs.url
output SERVICE_INGEST_DEMOGRAPHICS_NAME string = ingest[2].outputs.name
output SERVICE_INGEST_DEMOGRAPHICS_URL string = ingest[2].outputs.url
output SERVICE_BRIDGE_NAME string = bridge.outputs.name
output SERVICE_BRIDGE_URL string = bridge.outputs.url
