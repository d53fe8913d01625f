#!/usr/bin/env bash
# Lints the SAM template offline: cfn-lint, then SAM's own validation with --lint.
# Installs both into .venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] || python3 -m venv .venv
[ -x .venv/bin/cfn-lint ] || .venv/bin/pip install -q cfn-lint
[ -x .venv/bin/sam ] || .venv/bin/pip install -q aws-sam-cli
.venv/bin/cfn-lint infra/template.yaml
SAM_CLI_TELEMETRY=0 .venv/bin/sam validate --lint -t infra/template.yaml --region us-east-1
