#!/usr/bin/env bash
# The whole test suite, as CI runs it: install (idempotent), lint, type-check, test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
./scripts/system-deps.sh  # sshd and iproute2 for the multi-machine tests (needs root)
.venv/bin/ruff check src tests bench
.venv/bin/mypy
.venv/bin/pytest "$@"
