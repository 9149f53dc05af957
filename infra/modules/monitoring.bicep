// Log Analytics, a workspace-based Application Insights shared by the apps, the ForecastOps
// workbook (training and monitoring dashboards) and the action group the alerts use.
param location string
param tags object
param resourceToken string
param retentionInDays int
@description('Where alerts are mailed (empty: no mail receiver)')
param alertEmail string

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    retentionInDays: retentionInDays
    sku: {
      name: 'PerGB2018'
    }
  }
}

// Local authentication stays on: the product's opencensus exporters send custom metrics with the
// connection string alone; the Functions host itself authenticates with the app's identity.
resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    IngestionMode: 'LogAnalytics'
    RetentionInDays: retentionInDays
  }
}

// The workbook's health gates are the health policy's (pipelines/health_policy.json): each
// {{health_policy.gates.<gate>}} in the workbook's file becomes the policy's value at deploy.
var healthPolicy = loadJsonContent('../../pipelines/health_policy.json')
var workbookTemplate = loadTextContent('../workbook/forecastops.workbook.json')
var workbookWithMape = replace(workbookTemplate, '{{health_policy.gates.max_mape}}', string(healthPolicy.gates.max_mape))

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(applicationInsights.id, 'forecastops-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'ForecastOps: training and monitoring'
    category: 'workbook'
    sourceId: applicationInsights.id
    serializedData: replace(workbookWithMape, '{{health_policy.gates.max_age_days}}', string(healthPolicy.gates.max_age_days))
  }
}

var mailReceivers = empty(alertEmail) ? [] : [
  {
    name: 'forecastops-team'
    emailAddress: alertEmail
    useCommonAlertSchema: true
  }
]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-forecastops-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'forecastops'
    enabled: true
    emailReceivers: mailReceivers
  }
}

output applicationInsightsName string = applicationInsights.name
output applicationInsightsId string = applicationInsights.id
output logAnalyticsId string = logs.id
output actionGroupId string = actionGroup.id
output workbookId string = workbook.id
