#!/usr/bin/env bash
# Installs Debian's headless Chromium and its WebDriver for the console's browser tests
# (crates/rcjobs-console/tests/browser.rs). Idempotent: does nothing when both are present.
# Debian's package versions cannot be pinned across releases; the version installed is
# printed so CI logs record it (docs/console.md).
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
fi
echo "chromium: $(chromium --version 2>/dev/null || echo '?') / $(chromedriver --version 2>/dev/null | head -n1)"
