#!/usr/bin/env bash
# System packages the e2e tests need: a real OpenSSH server (private sshd instances per test
# "machine", see tests/support/machines.py), iproute2 (`ip netns`, veth pairs), and Node.js
# with npm (the official OpenAI Node SDK, tests/e2e/test_node_sdk.py), Chromium (the dashboard's
# browser tests drive it with Playwright; `playwright install` is never needed) and Prometheus
# (a real scrape of /metrics, and promtool).
# Idempotent: installs only the packages whose command is missing from PATH. Needs root for apt.
# It never starts an sshd service; the tests start their own private sshd processes.
set -euo pipefail

# sshd and ip live in /usr/sbin, which is not on every user's PATH.
export PATH="$PATH:/usr/sbin:/sbin"

declare -A package_of=([sshd]=openssh-server [ip]=iproute2 [node]=nodejs [npm]=npm
                       [chromium]=chromium [prometheus]=prometheus [promtool]=prometheus)
missing=()
for command in sshd ip node npm chromium prometheus promtool; do
    command -v "$command" >/dev/null 2>&1 || missing+=("${package_of[$command]}")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "system-deps.sh: installing ${missing[*]} needs root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# policy-rc.d exit code 101 tells invoke-rc.d not to start services during the install, so the
# package's post-install script does not start a system-wide sshd. Restore any existing file.
policy=/usr/sbin/policy-rc.d
backup=""
if [[ -e $policy ]]; then
    backup=$(mktemp)
    cp -p "$policy" "$backup"
fi
restore_policy() {
    if [[ -n $backup ]]; then mv -f "$backup" "$policy"; else rm -f "$policy"; fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' >"$policy"
chmod 755 "$policy"

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

for command in sshd ip node npm chromium prometheus promtool; do
    command -v "$command" >/dev/null
done
