// BlobCreated events of raw/<source>/ to the blobs extension endpoint of that source's app
// (blob trigger with source EventGrid). Deployed once the apps run: the webhook handshake needs
// the deployed trigger, and the blobs_extension system key exists only then (infra/scripts/
// postdeploy.sh waits for it before the provision that creates these).
param systemTopicName string
@description('[{name, source, appName, hostName, functionName}]: one subscription per ingestion source; hostName is the app\'s defaultHostName')
param subscriptions array

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource rawCreated 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = [
  for sub in subscriptions: {
    parent: systemTopic
    name: sub.name
    properties: {
      destination: {
        endpointType: 'WebHook'
        properties: {
          endpointUrl: 'https://${sub.hostName}/runtime/webhooks/blobs?functionName=Host.Functions.${sub.functionName}&code=${listKeys(resourceId('Microsoft.Web/sites/host', sub.appName, 'default'), '2024-04-01').systemKeys.blobs_extension}'
          maxEventsPerBatch: 1
          preferredBatchSizeInKilobytes: 64
        }
      }
      eventDeliverySchema: 'EventGridSchema'
      filter: {
        includedEventTypes: ['Microsoft.Storage.BlobCreated']
        subjectBeginsWith: '/blobServices/default/containers/raw/blobs/${sub.source}/'
        // ADLS Gen2 also reports the empty file of CreateFile; only finished writes count
        advancedFilters: [
          {
            operatorType: 'StringIn'
            key: 'data.api'
            values: ['PutBlob', 'PutBlockList', 'FlushWithClose', 'CopyBlob']
          }
        ]
      }
      retryPolicy: {
        maxDeliveryAttempts: 30
        eventTimeToLiveInMinutes: 1440
      }
    }
  }
]
