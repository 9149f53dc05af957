// Scheduled query rules on Application Insights. The queries live in infra/alerts/*.kql, where
// tests/deploy/test_infra.py checks every metric and field they read against shared/telemetry.py. The
// health gates are the health policy's (pipelines/health_policy.json): each
// {{health_policy.gates.<gate>}} in a query becomes the policy's value at deploy.
param location string
param tags object
param applicationInsightsId string
param actionGroupId string
@description('Alert when more than this share of a dataset\'s rows goes to quarantine in an hour')
param quarantineRatioThreshold string = '0.05'
@description('Alert when more than this share of a weekly batch\'s scored groups is served by a fallback (previous or baseline)')
param fallbackAlertShare string = '0.25'

resource quarantineRatio 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-forecastops-quarantine-ratio'
  location: location
  tags: tags
  properties: {
    displayName: 'ForecastOps: quarantine ratio above ${quarantineRatioThreshold}'
    description: 'Rows rejected / rows read, per dataset, over the last hour'
    severity: 2
    enabled: true
    scopes: [applicationInsightsId]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../alerts/quarantine-ratio.kql')
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'ratio'
          dimensions: [
            {
              name: 'dataset'
              operator: 'Include'
              values: ['*']
            }
          ]
          operator: 'GreaterThan'
          threshold: json(quarantineRatioThreshold)
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [actionGroupId]
    }
  }
}

resource watchFailed 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-forecastops-watch-failed'
  location: location
  tags: tags
  properties: {
    displayName: 'ForecastOps: a pipeline watch failed or timed out'
    description: 'The durable watch ended failed or timed_out'
    severity: 1
    enabled: true
    scopes: [applicationInsightsId]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    // the query compares the last 15 minutes with the 15 before (cumulative counts)
    overrideQueryTimeRange: 'PT30M'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../alerts/watch-failed.kql')
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [actionGroupId]
    }
  }
}

var healthPolicy = loadJsonContent('../../pipelines/health_policy.json')
var staleDays = healthPolicy.gates.max_age_days

resource staleModel 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-forecastops-stale-model'
  location: location
  tags: tags
  properties: {
    displayName: 'ForecastOps: a production model is older than ${staleDays} days'
    description: 'A model in stage production was trained more than ${staleDays} days ago'
    severity: 2
    enabled: true
    scopes: [applicationInsightsId]
    evaluationFrequency: 'P1D'
    windowSize: 'P1D'
    // each production model's age is reported daily (the staleness check, 06:00 UTC); two days
    // (the longest a log search alert may read) cover a late or skipped report, and the query
    // ages the latest one to now
    overrideQueryTimeRange: 'P2D'
    criteria: {
      allOf: [
        {
          query: replace(loadTextContent('../alerts/stale-model.kql'), '{{health_policy.gates.max_age_days}}', string(staleDays))
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [actionGroupId]
    }
  }
}

resource batchNotSucceeded 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-forecastops-batch-not-succeeded'
  location: location
  tags: tags
  properties: {
    displayName: 'ForecastOps: a weekly batch failed or waits for data'
    description: 'A week\'s batch ended failed, or the weekly schedule found a source missing for the week'
    severity: 2
    enabled: true
    scopes: [applicationInsightsId]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../alerts/batch-not-succeeded.kql')
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [actionGroupId]
    }
  }
}

resource fallbackShare 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-forecastops-fallback-share'
  location: location
  tags: tags
  properties: {
    displayName: 'ForecastOps: more than ${fallbackAlertShare} of a week\'s groups served by fallback'
    description: 'The share of a weekly batch\'s scored groups served by the previous production version or the baseline, per week'
    severity: 3
    enabled: true
    scopes: [applicationInsightsId]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../alerts/fallback-share.kql')
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'share'
          dimensions: [
            {
              name: 'week'
              operator: 'Include'
              values: ['*']
            }
          ]
          operator: 'GreaterThan'
          threshold: json(fallbackAlertShare)
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [actionGroupId]
    }
  }
}
