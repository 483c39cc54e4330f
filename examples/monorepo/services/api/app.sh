#!/bin/sh
echo "$(cat /etc/banner): $(cat /app/version)"
