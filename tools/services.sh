#!/usr/bin/env bash
# Start PostgreSQL and RabbitMQ on 127.0.0.1 when they are installed and not running (the services-marked tests
# and the production profile use them). Idempotent; a machine without them is left alone (those tests then fail
# with a message that names the missing service).
set -uo pipefail

port_open() { (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {  # start NAME PORT
    local name=$1 port=$2
    if port_open "$port"; then
        echo "services: $name is up on 127.0.0.1:$port"
        return 0
    fi
    if [ ! -x "/etc/init.d/$name" ] && ! command -v "$name" >/dev/null 2>&1; then
        echo "services: $name is not installed here; tests that need it will say so"
        return 0
    fi
    echo "services: starting $name"
    service "$name" start >/dev/null 2>&1 || /etc/init.d/"$name" start >/dev/null 2>&1 || true
    for _ in $(seq 1 60); do
        port_open "$port" && { echo "services: $name is up on 127.0.0.1:$port"; return 0; }
        sleep 1
    done
    echo "services: $name did not open 127.0.0.1:$port within 60 s"
}

start postgresql 5432
start rabbitmq-server 5672
