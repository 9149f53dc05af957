// dev: deployed from master. `az deployment sub create -l <region> -f infra/main.bicep -p infra/main.dev.bicepparam`
// (azd reads main.parameters.json instead: `azd env set AZURE_ENV_TYPE dev`).
using './main.bicep'

param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'forecastops-dev')
param location = readEnvironmentVariable('AZURE_LOCATION', 'eastus2')
param environmentType = 'dev'
param principalId = readEnvironmentVariable('AZURE_PRINCIPAL_ID', '')
param amlWorkspaceName = readEnvironmentVariable('AML_WORKSPACE_NAME', '')
param amlWorkspaceResourceGroup = readEnvironmentVariable('AML_WORKSPACE_RESOURCE_GROUP', '')
param appsDeployed = bool(readEnvironmentVariable('APPS_DEPLOYED', 'false'))
param wiringApps = bool(readEnvironmentVariable('FORECASTOPS_WIRE_APPS', 'false'))
param keyVaultGeneration = int(readEnvironmentVariable('KEY_VAULT_GENERATION', '0'))
param amlEventsEnabled = false
param landingBlobServiceUri = readEnvironmentVariable('LANDING_BLOB_SERVICE_URI', '')
param alertEmail = readEnvironmentVariable('ALERT_EMAIL', '')
param amlComputeVmSize = readEnvironmentVariable('AML_COMPUTE_VM_SIZE', 'Standard_DS3_v2')
param amlComputeMaxNodes = int(readEnvironmentVariable('AML_COMPUTE_MAX_NODES', '2'))
param fallbackAlertShare = readEnvironmentVariable('FORECASTOPS_FALLBACK_ALERT_SHARE', '0.25')
