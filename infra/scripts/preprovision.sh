#!/bin/sh
# azd preprovision hook: the Key Vault name this provision may use, then ADF's weekly trigger
# stopped (ADF refuses to update a started trigger; postprovision starts it again).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
"$here/keyvault-generation.sh"
"$here/adf-trigger.sh" stop
