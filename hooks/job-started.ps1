# Self-hosted GitHub Actions runner hook (Windows): joins idbot at the start of each job
# that grants `permissions: id-token: write`, and exports IDBOT_DIR, IDBOT_SSH_CONFIG,
# KUBECONFIG, ... to the job's steps. Other jobs get a warning and run as before: this hook
# never fails a job unless IDBOT_HOOK_STRICT=true.
#
# In the runner's .env file (next to run.cmd), then restart the runner service:
#   ACTIONS_RUNNER_HOOK_JOB_STARTED=C:\idbot\hooks\job-started.ps1
#   ACTIONS_RUNNER_HOOK_JOB_COMPLETED=C:\idbot\hooks\job-completed.ps1
#   IDBOT_SERVER=https://idbot.example.com
#   IDBOT_TOKEN=github-runner
#   IDBOT_BIN=C:\idbot\idbot.cmd          # optional: where idbot is (default: idbot on PATH)
$bin = if ($env:IDBOT_BIN) { $env:IDBOT_BIN } else { "idbot" }
if (-not (Get-Command $bin -ErrorAction SilentlyContinue)) {
  Write-Warning "idbot hook: $bin not found (install with 'npm install -g idbot' or set IDBOT_BIN); no idbot credentials for this job"
  if ($env:IDBOT_HOOK_STRICT -eq "true") { exit 1 }
  exit 0
}
& $bin hook job-started
exit $LASTEXITCODE
