#!/usr/bin/env bash
# Self-hosted GitHub Actions runner hook: joins idbot at the start of each job that grants
# `permissions: id-token: write`, and exports IDBOT_DIR, IDBOT_SSH_CONFIG, KUBECONFIG, ...
# to the job's steps. Other jobs get a warning and run as before: this hook never fails a
# job unless IDBOT_HOOK_STRICT=true.
#
# In the runner's .env file (next to run.sh), then restart the runner service:
#   ACTIONS_RUNNER_HOOK_JOB_STARTED=/opt/idbot/hooks/job-started.sh
#   ACTIONS_RUNNER_HOOK_JOB_COMPLETED=/opt/idbot/hooks/job-completed.sh
#   IDBOT_SERVER=https://idbot.example.com
#   IDBOT_TOKEN=github-runner
#   IDBOT_BIN=/usr/local/bin/idbot        # optional: where idbot is (default: idbot on PATH)
set -u
bin="${IDBOT_BIN:-idbot}"
if ! command -v "$bin" >/dev/null 2>&1; then
  echo "idbot hook: warning: $bin not found (install with 'npm install -g idbot' or set IDBOT_BIN); no idbot credentials for this job" >&2
  [ "${IDBOT_HOOK_STRICT:-}" = "true" ] && exit 1
  exit 0
fi
exec "$bin" hook job-started
