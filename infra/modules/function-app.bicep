// One Flex Consumption app of the code base: its user-assigned identity, its own storage account
// for the host (keys, locks, the deployment package, the durable task hub), its plan and its
// settings. FORECASTOPS_FUNCTIONS selects the blueprints it registers.
param location string
param tags object
@description('azd service name (azure.yaml); azd finds the app by this tag')
param service string
param appName string
param hostStorageName string
param hostStorageSku string
@description('FORECASTOPS_FUNCTIONS: comma-separated blueprint names')
param functions string
@description('The app runs durable orchestrations: its host storage also needs table access')
param durable bool
param maximumInstanceCount int
@allowed([2048, 4096])
param instanceMemoryMB int
param applicationInsightsName string
param lakeName string
@description('The lake\'s storage queue of data-complete announcements (FORECASTOPS_BATCH_QUEUE)')
param batchQueue string
@description('The prefix of the lake\'s re-ingest request queues, <prefix>-<source> (FORECASTOPS_INGEST_QUEUE)')
param ingestQueue string
@description('The AML backend settings (the bridge); empty for the ingest apps')
param amlSettings object
param keyVaultName string
@description('Store the app\'s default function key in Key Vault for ADF (once the host has started)')
param storeFunctionKey bool

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}
var queueAndBlobRoles = [roles.storageBlobDataOwner, roles.storageQueueDataContributor]
var hostRoles = durable ? concat(queueAndBlobRoles, [roles.storageTableDataContributor]) : queueAndBlobRoles
var deploymentContainerName = 'app-package'
var functionKeySecretName = '${service}-function-key'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${appName}'
  location: location
  tags: tags
}

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: no virtual network in this deployment; the Flex app reaches its host storage over the public endpoint with its identity (shared keys are off)
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35: public endpoint, Entra ID only
  // checkov:skip=CKV_AZURE_43: the name is a parameter (st + 2 letters + a 13-character uniqueString: 17 lowercase letters and digits); checkov tests the identifier's text
  // checkov:skip=CKV_AZURE_206: replication follows the environment profile (ZRS in prod); the host's state is rebuilt by a restart
  name: hostStorageName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: hostStorageSku
  }
  properties: {
    accessTier: 'Hot'
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

resource hostBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: hostStorage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: hostBlobs
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource hostRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in hostRoles: {
    name: guid(hostStorage.id, identity.id, role)
    scope: hostStorage
    properties: {
      principalId: identity.properties.principalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    }
  }
]

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// the host sends its telemetry with the identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING)
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}

resource lake 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: lakeName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption zone redundancy exists only in some regions and needs always-ready instances; the weekly batch tolerates a zone outage by rerunning
  name: 'plan-${appName}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

// BEGIN app settings (tests/deploy/test_infra.py compares these keys with local.settings.sample.json)
var baseSettings = {
  AzureWebJobsStorage__accountName: hostStorage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
  AZURE_CLIENT_ID: identity.properties.clientId
  FORECASTOPS_FUNCTIONS: functions
  FORECASTOPS_LAKE_BACKEND: 'blob'
  LAKE_STORAGE__blobServiceUri: lake.properties.primaryEndpoints.blob
  LAKE_STORAGE__queueServiceUri: lake.properties.primaryEndpoints.queue
  LAKE_STORAGE__credential: 'managedidentity'
  LAKE_STORAGE__clientId: identity.properties.clientId
  FORECASTOPS_BLOB_TRIGGER_SOURCE: 'EventGrid'
  FORECASTOPS_LAKE_CHUNK_BYTES: '4194304'
  FORECASTOPS_LOG_LEVEL: 'INFO'
  FORECASTOPS_BATCH_QUEUE: batchQueue
  FORECASTOPS_INGEST_QUEUE: ingestQueue
  FORECASTOPS_INGEST_SYNC_MAX_BYTES: '33554432'
  FORECASTOPS_REJECT_RATIO_MAX: '0.5'
  FORECASTOPS_REJECT_FILE_MIN_ROWS: '1000'
  FORECASTOPS_FUTURE_DAYS_MAX: '8'
  FORECASTOPS_MODEL_VERSIONS_KEPT: '10'
}
var appSettings = union(baseSettings, amlSettings)
// END app settings

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17: client certificates do not apply to ADF's Web activity or Event Grid's webhook
  // checkov:skip=CKV_AZURE_222: no virtual network in this deployment; function keys guard every route
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero per function group; always-ready instances (the equivalent) would bill around the clock for a weekly batch
  // checkov:skip=CKV_AZURE_213: Flex Consumption apps have no App Service health check; the Functions host reports its own health to Application Insights
  name: appName
  location: location
  tags: union(tags, { 'azd-service-name': service })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
  dependsOn: [
    hostRoleAssignments
  ]
}

// checkov reads this app-settings resource as an App Service site configuration
resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13: callers authenticate with function keys (authLevel FUNCTION), which ADF reads from Key Vault; App Service authentication would be a second gate no caller passes
  // checkov:skip=CKV_AZURE_222: no virtual network in this deployment; function keys guard every route
  // checkov:skip=CKV_AZURE_88: Flex Consumption has no Azure Files content share; the package lives in the deployment container
  // checkov:skip=CKV_AZURE_80: a Python app; no .NET Framework
  // checkov:skip=CKV_AZURE_63: App Service web-server logs do not exist on Flex Consumption; every request is in Application Insights
  // checkov:skip=CKV_AZURE_65: same reason as CKV_AZURE_63 (detailed error pages are a web-server feature)
  // checkov:skip=CKV_AZURE_66: same reason as CKV_AZURE_63 (failed request tracing is a web-server feature)
  parent: site
  name: 'appsettings'
  properties: appSettings
}

// azd deploys with Entra ID (the publish endpoint); no basic-auth publishing
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

module functionKey 'function-key.bicep' = if (storeFunctionKey) {
  name: 'key-${appName}'
  params: {
    keyVaultName: keyVaultName
    appName: site.name
    secretName: functionKeySecretName
  }
  dependsOn: [
    settings
  ]
}

output name string = site.name
output id string = site.id
output url string = 'https://${site.properties.defaultHostName}'
@description('The host name the platform gave the app (Flex Consumption names are not always <app>.azurewebsites.net)')
output defaultHostName string = site.properties.defaultHostName
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
output functionKeySecretName string = functionKeySecretName
