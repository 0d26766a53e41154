#!/usr/bin/env bash
# scripts/emulators.sh: local SQS and DynamoDB emulators for sqspool's
# integration tests.
#
#   SQS       local-aws-sqs 2.0.2 (speaks AWS JSON 1.0, what aws-sdk-go-v2 sends)
#   DynamoDB  dynalite 4.0.0 (in memory)
#
# Both are pinned in test/emulators/package-lock.json and started by
# test/emulators/serve.js on 127.0.0.1, on free ports the kernel picks.
#
# Standalone use, from the repo root:
#
#   ./scripts/emulators.sh
#       Starts both, prints the environment and opens a shell ($SHELL) that has
#       it. `go test -race ./...` in that shell runs the integration tests.
#       Leaving the shell stops the emulators.
#
#   ./scripts/emulators.sh go test -race -run TestEmulator ./internal/awstest/
#       Runs one command with the emulators up, stops them afterwards and
#       exits with the command's status.
#
# Use from another bash script (scripts/test does this):
#
#   source scripts/emulators.sh
#   emulators_install   # npm ci --prefix test/emulators, skipped if up to date
#   emulators_start     # start, wait until both answer, export the env below
#
# emulators_start installs an EXIT trap (plus INT/TERM traps that exit) that
# stops the emulators also when a later step fails, and prints their logs if
# the script exits non-zero. A caller with its own EXIT trap must call
# emulators_stop from it. Call emulators_start in the main shell, not in a
# subshell, a pipeline or $(...).
#
# Exported by emulators_start:
#   AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL_DYNAMODB   the emulators' URLs
#   AWS_REGION                                        us-east-1, only if unset
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY          dummy values, so no real
#       credentials are ever sent to the emulators (AWS_SESSION_TOKEN is unset)
#   SQSPOOL_INTEGRATION=1                             turns integration tests on
# It also unsets AWS_IGNORE_CONFIGURED_ENDPOINT_URLS, which would make the SDK
# ignore the endpoint variables and go to real AWS.
#
# Optional settings:
#   SQSPOOL_EMULATOR_HOST      listen address (default 127.0.0.1)
#   SQSPOOL_SQS_PORT           fixed SQS port (default 0: a free port)
#   SQSPOOL_DYNAMODB_PORT      fixed DynamoDB port (default 0: a free port)
#   SQSPOOL_EMULATOR_TIMEOUT   seconds to wait for both to answer (default 30)
#
# Needs node >= 20, npm and curl.

# Repo root, wherever this file is run or sourced from.
EMULATORS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EMULATORS_PKG="$EMULATORS_ROOT/test/emulators"
EMULATORS_DIR=""  # temp dir with logs and port files, set by emulators_start
EMULATORS_PIDS=() # background emulator processes

# emulators_install runs `npm ci` in test/emulators unless node_modules was
# already installed from the same package.json, package-lock.json and node.
emulators_install() {
  local stamp="$EMULATORS_PKG/node_modules/.sqspool-installed" want
  command -v node >/dev/null || { echo "emulators: node (>= 20) is not installed" >&2; return 1; }
  command -v npm >/dev/null || { echo "emulators: npm is not installed" >&2; return 1; }
  want="$(node --version; cat "$EMULATORS_PKG/package.json" "$EMULATORS_PKG/package-lock.json" "$EMULATORS_PKG/patch-local-aws-sqs.js" | cksum)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "emulators: test/emulators/node_modules is up to date"
    return 0
  fi
  # The lock file pins every package; npm ci installs exactly that, removing
  # any old node_modules first. Dependency install scripts stay off (see
  # allowScripts in package.json): classic-level ships prebuilt binaries.
  npm ci --prefix "$EMULATORS_PKG" --no-audit --no-fund
  # Make local-aws-sqs behave as SQS (test/emulators/PATCHES.md).
  node "$EMULATORS_PKG/patch-local-aws-sqs.js"
  printf '%s\n' "$want" >"$stamp"
}

# emulators_start starts both emulators, waits until each answers HTTP and
# exports the environment described at the top of this file.
emulators_start() {
  local host="${SQSPOOL_EMULATOR_HOST:-127.0.0.1}"
  local timeout="${SQSPOOL_EMULATOR_TIMEOUT:-30}"
  command -v node >/dev/null || { echo "emulators: node (>= 20) is not installed" >&2; return 1; }
  command -v curl >/dev/null || { echo "emulators: curl is not installed" >&2; return 1; }
  if [[ ! -d "$EMULATORS_PKG/node_modules/local-aws-sqs" || ! -d "$EMULATORS_PKG/node_modules/dynalite" ]]; then
    echo "emulators: missing test/emulators/node_modules; run: npm ci --prefix test/emulators" >&2
    return 1
  fi

  EMULATORS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sqspool-emulators.XXXXXX")"
  trap emulators_stop EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  _emulator_launch sqs "$host" "${SQSPOOL_SQS_PORT:-0}"
  _emulator_launch dynamodb "$host" "${SQSPOOL_DYNAMODB_PORT:-0}"

  local sqs_url ddb_url
  sqs_url="$(_emulator_wait sqs "$host" "$timeout")" || return 1
  ddb_url="$(_emulator_wait dynamodb "$host" "$timeout")" || return 1

  export AWS_ENDPOINT_URL_SQS="$sqs_url"
  export AWS_ENDPOINT_URL_DYNAMODB="$ddb_url"
  export AWS_REGION="${AWS_REGION:-us-east-1}"
  export AWS_ACCESS_KEY_ID="emulator-dummy-key"
  export AWS_SECRET_ACCESS_KEY="emulator-dummy-secret"
  unset AWS_SESSION_TOKEN AWS_IGNORE_CONFIGURED_ENDPOINT_URLS
  export SQSPOOL_INTEGRATION=1
  echo "emulators: SQS at $sqs_url, DynamoDB at $ddb_url (logs in $EMULATORS_DIR)"
}

# emulators_stop stops the emulators. As the EXIT trap it keeps the script's
# exit status; on a non-zero status it prints the emulators' logs and keeps
# them, otherwise it removes the temp dir.
emulators_stop() {
  local status=$? pid i
  for pid in "${EMULATORS_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  # Give them up to 5 s to exit, then kill what is left.
  for pid in "${EMULATORS_PIDS[@]}"; do
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  EMULATORS_PIDS=()
  if [[ -n "$EMULATORS_DIR" && -d "$EMULATORS_DIR" ]]; then
    if ((status != 0)); then
      _emulator_show_logs
      echo "emulators: logs kept in $EMULATORS_DIR" >&2
    else
      rm -rf "$EMULATORS_DIR"
    fi
  fi
  EMULATORS_DIR=""
  return "$status"
}

# _emulator_launch KIND HOST PORT starts one emulator in the background.
_emulator_launch() {
  local kind="$1" host="$2" port="$3" parent="$BASHPID"
  # The emulator exits by itself once this shell is gone (even on kill -9).
  SQSPOOL_EMULATOR_PARENT_PID="$parent" \
    node "$EMULATORS_PKG/serve.js" "$kind" "$host" "$port" "$EMULATORS_DIR/$kind.port" \
    </dev/null >"$EMULATORS_DIR/$kind.log" 2>&1 &
  EMULATORS_PIDS+=("$!")
  printf '%s\n' "$!" >"$EMULATORS_DIR/$kind.pid"
}

# _emulator_wait KIND HOST TIMEOUT waits until the emulator has written its
# port and answers an HTTP request, then prints its URL. Polls every 0.1 s.
_emulator_wait() {
  local kind="$1" host="$2" timeout="$3"
  local pid port="" url deadline=$((SECONDS + timeout))
  pid="$(cat "$EMULATORS_DIR/$kind.pid")"
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "emulators: $kind emulator exited during startup" >&2
      return 1
    fi
    if [[ -z "$port" && -s "$EMULATORS_DIR/$kind.port" ]]; then
      port="$(cat "$EMULATORS_DIR/$kind.port")"
    fi
    if [[ -n "$port" ]]; then
      url="http://$host:$port"
      if _emulator_probe "$kind" "$url"; then
        printf '%s\n' "$url"
        return 0
      fi
    fi
    if ((SECONDS >= deadline)); then
      echo "emulators: $kind emulator did not answer within ${timeout}s" >&2
      return 1
    fi
    sleep 0.1
  done
}

# _emulator_probe KIND URL succeeds when the emulator answers a real request.
_emulator_probe() {
  local kind="$1" url="$2"
  case "$kind" in
    sqs) # A JSON-protocol ListQueues, as the Go SDK would send it.
      curl -fsS -o /dev/null --max-time 2 -X POST \
        -H 'Content-Type: application/x-amz-json-1.0' \
        -H 'X-Amz-Target: AmazonSQS.ListQueues' \
        --data '{}' "$url/" 2>/dev/null ;;
    dynamodb) # dynalite answers GET / with "healthy: ...".
      curl -fsS -o /dev/null --max-time 2 "$url/" 2>/dev/null ;;
  esac
}

_emulator_show_logs() {
  local log
  for log in "$EMULATORS_DIR"/*.log; do
    [[ -f "$log" ]] || continue
    echo "----- emulator log: $(basename "$log") (last 50 lines) -----" >&2
    tail -n 50 "$log" >&2
  done
}

# Standalone: ./scripts/emulators.sh [command...]
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  emulators_install
  emulators_start
  if (($# > 0)); then
    "$@"
  else
    echo
    echo "Emulators are up. This shell has:"
    env | grep -E '^(AWS_ENDPOINT_URL_SQS|AWS_ENDPOINT_URL_DYNAMODB|AWS_REGION|AWS_ACCESS_KEY_ID|SQSPOOL_INTEGRATION)=' | sed 's/^/  /'
    echo "Run e.g. 'go test -race ./...'; exit the shell to stop the emulators."
    "${SHELL:-bash}" -i || true
  fi
fi
