#!/usr/bin/env bash
# Creates the packgate cloud's stream and bucket on a running cluster, with
# the nats CLI (https://github.com/nats-io/natscli), as the ops user:
#   NATS_URL=nats://cloud-1.example.internal:4222 NATS_USER=ops \
#   NATS_PASSWORD=... ./setup.sh
# Run once, from anywhere that reaches a node; both have three replicas,
# so they stay available with one node down.
set -euo pipefail
cd "$(dirname "$0")"
# Samples and events of every gateway, kept 90 days.
nats stream add --config PACKGATE_CLOUD.json
# The desired settings, five versions kept per key (the same bucket as
# `nats kv add PACKGATE_DESIRED --replicas 3 --history 5`).
nats stream add --config PACKGATE_DESIRED.json
nats stream ls
