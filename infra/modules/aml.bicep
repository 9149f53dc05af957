// The Azure ML workspace (an existing one by name, or a new one with its own storage), the
// bridge's AzureML Data Scientist role on it, one datastore per lake container (lake_<container>,
// identity-based), the compute cluster the pipelines run on (with the system-assigned identity
// the jobs read the lake with), and, optionally, its job events to the bridge.
param location string
param tags object
@description('Create the workspace (false: workspaceName names an existing one in this resource group)')
param createWorkspace bool
param workspaceName string
@description('Default storage of a new workspace (AML needs a flat-namespace account; not the lake)')
param storageName string
param keyVaultId string
param applicationInsightsId string
param bridgePrincipalId string
@description('Subscribe the bridge\'s aml_job_event function to the workspace\'s job events')
param eventsEnabled bool
param bridgeAppId string
@description('The lake (an ADLS Gen2 account) the datastores address')
param lakeName string
param lakeResourceGroup string
@description('The lake\'s containers: a datastore lake_<container> over each')
param lakeContainers array
@description('The compute cluster the pipelines run on: {name, vmSize, maxNodes}')
param compute object

var azureMLDataScientist = 'f6c7c914-8db3-469d-8ca1-694a8f32e121'

module newWorkspace 'aml-workspace.bicep' = if (createWorkspace) {
  name: 'aml-workspace'
  params: {
    location: location
    tags: tags
    workspaceName: workspaceName
    storageName: storageName
    keyVaultId: keyVaultId
    applicationInsightsId: applicationInsightsId
  }
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: workspaceName
}

resource dataScientist 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceId('Microsoft.MachineLearningServices/workspaces', workspaceName), bridgePrincipalId, azureMLDataScientist)
  scope: workspace
  properties: {
    principalId: bridgePrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', azureMLDataScientist)
  }
  dependsOn: [
    newWorkspace
  ]
}

// An AML datastore addresses one container: lake_<container> over each, reached with the
// identity of whoever reads (the job's compute, the workspace), never an account key
resource lakeDatastores 'Microsoft.MachineLearningServices/workspaces/datastores@2024-04-01' = [
  for container in lakeContainers: {
    parent: workspace
    name: 'lake_${container}'
    properties: {
      datastoreType: 'AzureDataLakeGen2'
      description: 'The lake\'s ${container} container (ForecastOps)'
      accountName: lakeName
      filesystem: container
      endpoint: environment().suffixes.storage
      protocol: 'https'
      subscriptionId: subscription().subscriptionId
      resourceGroup: lakeResourceGroup
      serviceDataAccessAuthIdentity: 'WorkspaceSystemAssignedIdentity'
      credentials: {
        credentialsType: 'None'
      }
    }
    dependsOn: [
      newWorkspace
    ]
  }
]

// AmlCompute that scales to zero between batches; the jobs run with its system-assigned identity
// (`identity: managed`), which main.bicep gives Storage Blob Data Contributor on the lake
resource cluster 'Microsoft.MachineLearningServices/workspaces/computes@2024-04-01' = {
  parent: workspace
  name: compute.name
  // a compute lives where its workspace does (an existing workspace may be elsewhere)
  location: workspace.location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    computeType: 'AmlCompute'
    description: 'ForecastOps pipelines (pipelines/catalog.toml)'
    disableLocalAuth: true
    properties: {
      vmSize: compute.vmSize
      vmPriority: 'Dedicated'
      osType: 'Linux'
      scaleSettings: {
        minNodeCount: 0
        maxNodeCount: compute.maxNodes
        nodeIdleTimeBeforeScaleDown: 'PT120S'
      }
      remoteLoginPortPublicAccess: 'Disabled'
    }
  }
  dependsOn: [
    newWorkspace
  ]
}

resource jobTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (eventsEnabled) {
  name: 'evgt-${workspaceName}'
  // a system topic lives where its source does (an existing workspace may be elsewhere)
  location: workspace.location
  tags: tags
  properties: {
    source: resourceId('Microsoft.MachineLearningServices/workspaces', workspaceName)
    topicType: 'Microsoft.MachineLearningServices.Workspaces'
  }
  dependsOn: [
    newWorkspace
  ]
}

resource jobEvents 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (eventsEnabled) {
  parent: jobTopic
  name: 'aml-job-events'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${bridgeAppId}/functions/aml_job_event'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: ['Microsoft.MachineLearningServices.RunStatusChanged', 'Microsoft.MachineLearningServices.RunCompleted']
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

output workspaceId string = workspace.id
@description('The workspace\'s system-assigned identity (given data roles on the lake by main.bicep)')
output workspacePrincipalId string = workspace.identity.principalId
@description('The compute cluster\'s system-assigned identity: the jobs read and write the lake with it')
output computePrincipalId string = cluster.identity.principalId
