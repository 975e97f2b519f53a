#!/usr/bin/env bash
# Self-hosted GitHub Actions runner hook: removes what job-started.sh wrote for this job,
# whether the job passed or failed. See job-started.sh for the runner's .env settings.
set -u
bin="${IDBOT_BIN:-idbot}"
if ! command -v "$bin" >/dev/null 2>&1; then
  echo "idbot hook: warning: $bin not found (set IDBOT_BIN); credentials under RUNNER_TEMP were not removed by idbot" >&2
  [ "${IDBOT_HOOK_STRICT:-}" = "true" ] && exit 1
  exit 0
fi
exec "$bin" hook job-completed
