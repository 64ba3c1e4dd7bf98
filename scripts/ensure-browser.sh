#!/bin/sh
# Install Debian's Chromium for the browser tests of report.html when it is missing.
# Best effort: without root or apt (or with no network) it says why and the tests skip.
set -u
for b in chromium chromium-browser google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then exit 0; fi
done
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-browser: no Chromium and no root apt-get; browser tests will be skipped" >&2
  exit 0
fi
echo "ensure-browser: installing Debian's chromium package" >&2
(apt-get install -y -qq chromium >/dev/null 2>&1 || \
  (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1)) || \
  echo "ensure-browser: could not install chromium; browser tests will be skipped" >&2
exit 0
