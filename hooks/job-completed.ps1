# Self-hosted GitHub Actions runner hook (Windows): removes what job-started.ps1 wrote for
# this job, whether the job passed or failed. See job-started.ps1 for the .env settings.
$bin = if ($env:IDBOT_BIN) { $env:IDBOT_BIN } else { "idbot" }
if (-not (Get-Command $bin -ErrorAction SilentlyContinue)) {
  Write-Warning "idbot hook: $bin not found (set IDBOT_BIN); credentials under RUNNER_TEMP were not removed by idbot"
  if ($env:IDBOT_HOOK_STRICT -eq "true") { exit 1 }
  exit 0
}
& $bin hook job-completed
exit $LASTEXITCODE
