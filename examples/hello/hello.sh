#!/bin/sh
echo "$(cat "${GREETING_FILE:-/srv/greeting.upper}") ($(cat /srv/build-info))"
