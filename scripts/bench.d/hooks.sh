# Section 5 of scripts/bench: Jira webhook intake (sourced; relies on lib.sh and the
# variables scripts/bench sets: REPO, BIN, WORK, LOGS, PG_CLUSTER, FAKE_JIRA_URL,
# ADMIN_TOKEN, QUICK).
#
# filebridge answers POST {base}/hooks/jira with 202 once the webhook's job row is committed
# in PostgreSQL. "Accepted and durably queued" therefore depends on the database's commit
# being durable: this section runs its own PostgreSQL cluster on a disk-backed directory
# with fsync, synchronous_commit and full_page_writes on (the other sections' cluster is a
# throwaway with all three off, on a tmpfs). Then, for jobs.workers = 1 (the minimum) and
# the default, a fresh database and a filebridge of its own with jira.webhook_secret set:
#   - warm-up: HOOKS_WARM webhooks;
#   - capacity: HOOKS_COUNT webhooks in a closed loop at HOOKS_CONC concurrent connections;
#   - latency at the target rate: HOOKS_COUNT webhooks paced at HOOKS_RATE_TARGET/s;
#   - latency at half the target rate (for information);
# after each, the rows in `jobs` for that run's issue ids must equal the accepted count.
# The job workers work the queued jobs meanwhile (against the fake Jira, which answers 404
# for these issues); they compete with the intake for the CPUs and the disk, which is why
# both worker counts are measured. Then PostgreSQL alone (pgbench) runs the intake's
# transaction, with and without its pg_notify, for reference.
# shellcheck shell=bash

declare -A HK=()
HOOKS_RATE_TARGET=2000 # accepted webhooks per second
HOOKS_P99_TARGET=20    # ms, at HOOKS_RATE_TARGET/s
HOOKS_CONC=32
HOOKS_PACED_CONC=64
HOOKS_REF_CLIENTS=16 # pgbench clients: filebridge's database.max_connections default
HOOKS_REF_SECS=8
HOOKS_PG_DIR=""
HOOKS_RUNS=()

# Sizes, once the options are known.
hooks_init() {
    if ((QUICK)); then
        HOOKS_COUNT=5000 HOOKS_WARM=500
    else
        HOOKS_COUNT=20000 HOOKS_WARM=2000
    fi
}

# The durable cluster: on BENCH_PG_DIR (default /var/tmp), not on the tmpfs work directory.
hooks_start_pg() {
    local parent=${BENCH_PG_DIR:-/var/tmp} dir
    dir=$(mktemp -d "$parent/filebridge-bench.XXXXXXXX")
    chmod 0755 "$dir" # as root, the postgres user must reach the cluster inside
    CLEAN_DIRS+=("$dir")
    HOOKS_PG_DIR=$dir/pg
    say "starting a durable PostgreSQL in $HOOKS_PG_DIR..."
    HOOKS_PG_URL=$("$PG_CLUSTER" start "$HOOKS_PG_DIR")
    EXTRA_PG_DIRS+=("$HOOKS_PG_DIR")
    local root=$HOOKS_PG_DIR
    [[ -f $HOOKS_PG_DIR/root ]] && root=$(<"$HOOKS_PG_DIR/root")
    HOOKS_PG_DATA=$root/data
    HOOKS_PG_FS="$(df -PT "$HOOKS_PG_DATA" | awk 'NR==2 {print $2" on "$1}')"
    # scripts/pg-cluster makes throwaway clusters with fsync, synchronous_commit and
    # full_page_writes off; postgresql.auto.conf is read last and turns them back on.
    psql -q -X -v ON_ERROR_STOP=1 "$HOOKS_PG_URL" \
        -c "ALTER SYSTEM SET fsync = on" \
        -c "ALTER SYSTEM SET synchronous_commit = on" \
        -c "ALTER SYSTEM SET full_page_writes = on" \
        -c "SELECT pg_reload_conf()" >/dev/null
    sync
    local i
    for ((i = 0; i < 50; i++)); do
        [[ $(psql -X -At "$HOOKS_PG_URL" -c "SELECT current_setting('fsync') || current_setting('synchronous_commit') || current_setting('full_page_writes')") == ononon ]] && break
        sleep 0.1
    done
    # pg_stat_statements (when the server has it) says where PostgreSQL's time went; loading
    # it needs a restart, which also starts the server with the settings above from the off.
    HOOKS_PGSS=0
    if [[ $(psql -X -At "$HOOKS_PG_URL" -c "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_stat_statements'") == 1 ]]; then
        psql -q -X -v ON_ERROR_STOP=1 "$HOOKS_PG_URL" -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'" >/dev/null
        "$PG_CLUSTER" pause "$HOOKS_PG_DIR" >&2
        HOOKS_PG_URL=$("$PG_CLUSTER" resume "$HOOKS_PG_DIR")
        psql -q -X -v ON_ERROR_STOP=1 "$HOOKS_PG_URL" -c "CREATE EXTENSION pg_stat_statements" >/dev/null && HOOKS_PGSS=1
    fi
    # Everything written while fsync was off goes to disk now.
    psql -q -X -v ON_ERROR_STOP=1 "$HOOKS_PG_URL" -c CHECKPOINT >/dev/null
    HOOKS_PG_SETTINGS=$(psql -X -At "$HOOKS_PG_URL" -c "SELECT string_agg(n || '=' || current_setting(n), ' ' ORDER BY o) FROM unnest(ARRAY['fsync','synchronous_commit','full_page_writes','wal_sync_method','commit_delay','wal_buffers','shared_buffers','max_wal_size','checkpoint_timeout']) WITH ORDINALITY AS t(n, o)")
    HOOKS_PG_VERSION=$(psql -X -At "$HOOKS_PG_URL" -c "SHOW server_version")
    [[ $HOOKS_PG_SETTINGS == "fsync=on synchronous_commit=on full_page_writes=on "* ]] ||
        die "the durable cluster did not take fsync/synchronous_commit/full_page_writes = on: $HOOKS_PG_SETTINGS"
    # How long this disk takes to make 8 KiB durable: synchronous writes over a file written
    # before (WAL segments are preallocated, so a flush needs no metadata), as a WAL flush.
    local out
    dd if=/dev/zero of="$dir/dsync.bin" bs=8k count=1000 conv=fsync 2>/dev/null
    out=$(dd if=/dev/zero of="$dir/dsync.bin" bs=8k count=1000 oflag=dsync conv=notrunc 2>&1 | tail -n 1)
    rm -f "$dir/dsync.bin"
    # "... copied, SECONDS s, ..." for 1000 writes: SECONDS * 1000 / 1000 ms each.
    HOOKS_DSYNC=$(awk '{for (i = 1; i <= NF; i++) if ($i == "s,") print $(i-1)}' <<<"$out" |
        awk '{ms = $1 * 1000 / 1000; printf "%.3f ms each (%.0f/s)", ms, 1000 / ms}')
    [[ -n $HOOKS_DSYNC ]] || HOOKS_DSYNC="not measured ($out)"
}

hooks_postmaster() { head -n 1 "$HOOKS_PG_DATA/postmaster.pid"; }

# CPU ms of the whole PostgreSQL cluster (postmaster, its live children, reaped children).
hooks_pg_cpu() {
    local pm p total=0 t
    pm=$(hooks_postmaster)
    for p in "$pm" $(pgrep -P "$pm" || true); do
        t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null || echo 0)
        total=$((total + t))
    done
    echo $((total * 1000 / CLK_TCK))
}

hooks_proc_cpu() {
    local t
    t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat" 2>/dev/null || echo 0)
    echo $((t * 1000 / CLK_TCK))
}

# CPU ms used so far by this shell's reaped children (the generator runs in the foreground).
# `times` runs in this shell, not in a command substitution, which would report its own.
children_cpu_ms() {
    local var=$1 line
    times >"$WORK/res/times"
    line=$(tail -n 1 "$WORK/res/times")
    printf -v "$var" '%s' "$(awk '{
        total = 0
        for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); total += a[1] * 60 + a[2] }
        printf "%.0f", total * 1000
    }' <<<"$line")"
}

# hooks_filebridge LABEL WORKERS: a filebridge of its own on a fresh database; sets HOOK_FB_PID, HOOK_URL.
hooks_filebridge() {
    local label=$1 workers=$2 port db
    db=hooks_$label
    psql -q -X -v ON_ERROR_STOP=1 "$HOOKS_PG_URL" -c "CREATE DATABASE $db" >/dev/null
    pick_port port
    local base=http://127.0.0.1:$port/filebridge
    HOOK_URL=$base/hooks/jira
    HOOK_DB_URL=${HOOKS_PG_URL%/postgres}/$db
    HOOK_LOG=$LOGS/filebridge-hooks-$label.log
    # The same FILEBRIDGE__* settings as the main filebridge, on this database and port.
    local -a env=(
        -u FILEBRIDGE__JOBS__WORKERS
        "FILEBRIDGE__SERVER__LISTEN=127.0.0.1:$port"
        "FILEBRIDGE__SERVER__PUBLIC_URL=$base"
        "FILEBRIDGE__DATABASE__URL=$HOOK_DB_URL"
        "FILEBRIDGE__JIRA__BASE_URL=$FAKE_JIRA_URL"
        "FILEBRIDGE__JIRA__SERVICE_TOKEN_FILE=$WORK/jira-service.token"
        "FILEBRIDGE__JIRA__WEBHOOK_SECRET_FILE=$WORK/jira-webhook.secret"
        "FILEBRIDGE__SECURITY__MASTER_KEY_FILE=$WORK/master.key"
        "FILEBRIDGE__LOG__FORMAT=json"
    )
    [[ $workers == default ]] || env+=("FILEBRIDGE__JOBS__WORKERS=$workers")
    (cd "$WORK/cwd" && exec env "${env[@]}" "$BIN/filebridge" serve) >"$HOOK_LOG" 2>&1 &
    HOOK_FB_PID=$!
    track_pid "$HOOK_FB_PID" "filebridge-hooks-$label"
    wait_http "$base/readyz" 200 "$HOOK_FB_PID" "filebridge-hooks-$label"
    local n
    n=$(grep -m 1 '"job workers started"' "$HOOK_LOG" | jq -r '.workers // empty' 2>/dev/null || true)
    HK[$label/workers]=${n:-?}
}

# hooks_load LABEL/RUN ID_BASE COUNT CONC [RATE]: one generator run; keeps its figures in HK.
hooks_load() {
    local key=$1 base=$2 count=$3 conc=$4 rate=${5:-} out=$WORK/res/hooks-${1//\//-}
    local -a extra=()
    [[ -n $rate ]] && extra=(--rate "$rate")
    local fb0 pg0 gen0 fb1 pg1 gen1
    # During the closed loop, what the busy database sessions wait for, sampled every 50 ms
    # by one psql (Lock:object is the lock that serialises NOTIFYing commits).
    local sampler=""
    if [[ ${key#*/} == closed ]]; then
        printf '%s\n' "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), count(*) FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND state <> 'idle' AND pid <> pg_backend_pid() GROUP BY 1 \\watch 0.05" >"$out.waits.sql"
        psql -X -At -f "$out.waits.sql" "$HOOK_DB_URL" >"$out.waits" 2>&1 &
        sampler=$!
        track_pid "$sampler" wait-sampler
    fi
    fb0=$(hooks_proc_cpu "$HOOK_FB_PID")
    pg0=$(hooks_pg_cpu)
    children_cpu_ms gen0
    "$HOOKS_LOAD" --url "$HOOK_URL" --secret-file "$WORK/jira-webhook.secret" --count "$count" \
        --concurrency "$conc" --id-base "$base" "${extra[@]}" >"$out" 2>"$out.err" || true
    children_cpu_ms gen1
    fb1=$(hooks_proc_cpu "$HOOK_FB_PID")
    pg1=$(hooks_pg_cpu)
    if [[ -n $sampler ]]; then
        stop_pid "$sampler"
        HK[$key/waits]=$(awk -F'|' 'NF == 2 {n[$1] += $2; t += $2} END {for (k in n) printf "%.0f%% %s\n", 100 * n[k] / t, k}' "$out.waits" |
            sort -rn | head -n 6 | paste -sd ',' - | sed 's/,/, /g')
    fi
    local result
    result=$(grep '^RESULT ' "$out" | tail -n 1)
    [[ -n $result ]] || die "the webhook load generator failed: $(head -c 500 "$out.err") $(head -c 500 "$out")"
    local kv
    for kv in ${result#RESULT }; do
        HK[$key/${kv%%=*}]=${kv#*=}
    done
    HK[$key/errlist]=$(sed -n 's/^ERRORS //p' "$out" | tail -n 1)
    HK[$key/cpu]="$(awk -v a=$((fb1 - fb0)) -v b=$((pg1 - pg0)) -v c=$((gen1 - gen0)) -v n="$count" \
        'BEGIN {printf "%.2f / %.2f / %.2f", a/n, b/n, c/n}')"
    # Durably queued: every accepted webhook's row is in `jobs` (queried after the run).
    HK[$key/rows]=$(psql -X -At "$HOOK_DB_URL" -c \
        "SELECT count(*) FROM jobs WHERE kind = 'jira_event' AND (payload #>> '{issue,id}')::bigint BETWEEN $base AND $((base + count - 1))")
    say "  $key: ${HK[$key/accepted]}/${HK[$key/sent]} accepted, ${HK[$key/rows]} rows, ${HK[$key/rate]}/s, p99 ${HK[$key/p99_ms]} ms"
}

# The statements that took PostgreSQL the most time during one worker setting's runs.
hooks_statements() {
    local label=$1
    ((HOOKS_PGSS)) || return 0
    HK[$label/statements]=$(psql -X -At -F '|' "$HOOKS_PG_URL" -c "
        SELECT calls, round(total_exec_time::numeric / 1000, 2), round(mean_exec_time::numeric, 3),
               left(regexp_replace(query, '\s+', ' ', 'g'), 70)
        FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'hooks_$label')
        ORDER BY total_exec_time DESC LIMIT 4" |
        awk -F'|' '{printf "    %8s calls %8s s %9s ms each  %s\n", $1, $2, $3, $4}')
}

hooks_jobs_states() {
    psql -X -At "$HOOK_DB_URL" -c "SELECT coalesce(string_agg(state || ' ' || n, ', ' ORDER BY state), 'none') FROM (SELECT state, count(*) n FROM jobs GROUP BY state) s"
}

# pgbench: the intake's transaction without filebridge, for reference.
hooks_reference() {
    local pgbench
    pgbench=$(compgen -G '/usr/lib/postgresql/*/bin/pgbench' | sort -V | tail -n 1 || true)
    [[ -n $pgbench ]] || pgbench=$(command -v pgbench || true)
    if [[ -z $pgbench ]]; then
        HK[ref]="pgbench is missing: no reference"
        return 0
    fi
    # An empty copy of `jobs` as filebridge's migrations left it (indexes, constraints and
    # defaults included), in the first run's database; filebridge has stopped by now.
    local db=$WORK/res/hooks-ref db_url=${HOOKS_PG_URL%/postgres}/hooks_${HOOKS_RUNS[0]}
    psql -q -X -v ON_ERROR_STOP=1 "$db_url" -c "CREATE TABLE jobs_reference (LIKE jobs INCLUDING ALL)" >/dev/null
    # The statements of jobs::enqueue (src/jobs/mod.rs), with a job payload of the size
    # the intake stores; simple protocol (pgbench cannot infer the parameters' types).
    local payload='{"kind":"jira:issue_updated","timestamp_ms":1700000000000,"issue":{"id":"10100","key":"LOAD-10100","project_id":"10000","project_key":"LOAD"},"previous_key":null,"project":null,"previous_project_key":null,"previous_project_id":null}'
    local insert="INSERT INTO jobs_reference (kind, payload, dedupe_key, run_at) VALUES ('jira_event', '$payload'::jsonb, 'ref:' || :client_id || ':' || :n || ':' || random(), COALESCE(NULL::timestamptz, now())) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id;"
    printf '\\set n random(1, 2000000000)\nBEGIN;\n%s\nSELECT pg_notify('"'"'filebridge_jobs'"'"', '"'"''"'"');\nCOMMIT;\n' "$insert" >"$db.notify.sql"
    printf '\\set n random(1, 2000000000)\nBEGIN;\n%s\nCOMMIT;\n' "$insert" >"$db.plain.sql"
    local v out
    for v in notify plain; do
        say "  pgbench: the intake's transaction ($v), $HOOKS_REF_CLIENTS clients, $HOOKS_REF_SECS s"
        out=$("$pgbench" -n -M simple -c "$HOOKS_REF_CLIENTS" -j 2 -T "$HOOKS_REF_SECS" -f "$db.$v.sql" "$db_url" 2>&1 || true)
        HK[ref/$v/tps]=$(awk '/^tps = / {printf "%.0f", $3}' <<<"$out")
        HK[ref/$v/lat]=$(awk '/^latency average = / {print $4}' <<<"$out")
        [[ -n ${HK[ref/$v/tps]} ]] || HK[ref/$v/tps]="failed: $(tail -n 2 <<<"$out" | tr '\n' ' ' | head -c 200)"
    done
    HK[ref]=ok
}

hooks_section() {
    section "5. Webhook intake: signed POST /hooks/jira, one job row committed per webhook before the 202"
    HOOKS_LOAD=$BIN/examples/webhook_load
    [[ -x $HOOKS_LOAD ]] || die "$HOOKS_LOAD is missing (cargo build --release -p fake-jira --example webhook_load)"
    hooks_start_pg
    local id=1000000 label
    for label in w1 default; do
        local workers=1
        [[ $label == default ]] && workers=default
        say "webhook intake, jobs.workers = $workers..."
        hooks_filebridge "$label" "$workers"
        ((HOOKS_PGSS)) && psql -q -X "$HOOKS_PG_URL" -c "SELECT pg_stat_statements_reset()" >/dev/null
        HOOKS_RUNS+=("$label")
        hooks_load "$label/warm" "$id" "$HOOKS_WARM" "$HOOKS_CONC"
        id=$((id + 1000000))
        hooks_load "$label/closed" "$id" "$HOOKS_COUNT" "$HOOKS_CONC"
        id=$((id + 1000000))
        hooks_load "$label/paced" "$id" "$HOOKS_COUNT" "$HOOKS_PACED_CONC" "$HOOKS_RATE_TARGET"
        id=$((id + 1000000))
        hooks_load "$label/half" "$id" "$((HOOKS_COUNT / 2))" "$HOOKS_PACED_CONC" "$((HOOKS_RATE_TARGET / 2))"
        id=$((id + 1000000))
        HK[$label/jobs]=$(hooks_jobs_states)
        hooks_statements "$label"
        HK[$label/warn]=$(grep -c '"level":"WARN"' "$HOOK_LOG" || true)
        HK[$label/error]=$(grep -c '"level":"ERROR"' "$HOOK_LOG" || true)
        stop_pid "$HOOK_FB_PID"
    done
    hooks_reference
    print_hooks
}

print_hooks() {
    local body=${HK[w1/closed/body_bytes]:-?}
    cat <<EOF
PostgreSQL $HOOKS_PG_VERSION, a cluster of its own for this section in $HOOKS_PG_DIR ($HOOKS_PG_FS):
  $HOOKS_PG_SETTINGS
  this disk, 8 KiB O_DSYNC overwrites (dd): $HOOKS_DSYNC
payload: jira:issue_updated in the fake Jira's shape, $body bytes on average, every one a
  distinct event (issue id and timestamp), signed X-Hub-Signature sha256; no delivery id header
generator: tests/fake-jira/examples/webhook_load.rs, one thread, keep-alive HTTP/1.1

EOF
    printf '%-34s %-7s %-9s %-7s %-8s %-8s %-7s %-7s %-8s %-8s %s\n' "run" sent accepted rows errors "rate/s" "p50 ms" "p90 ms" "p99 ms" "max ms" "CPU ms/webhook fb / pg / generator"
    local label run name
    for label in "${HOOKS_RUNS[@]}"; do
        for run in warm closed paced half; do
            local k=$label/$run
            case $run in
            warm) name="warm-up, c=$HOOKS_CONC" ;;
            closed) name="closed loop, c=$HOOKS_CONC" ;;
            paced) name="paced ${HOOKS_RATE_TARGET}/s, c<=$HOOKS_PACED_CONC" ;;
            half) name="paced $((HOOKS_RATE_TARGET / 2))/s, c<=$HOOKS_PACED_CONC" ;;
            esac
            printf '%-34s %-7s %-9s %-7s %-8s %-8s %-7s %-7s %-8s %-8s %s\n' "workers=${HK[$label/workers]} $name" \
                "${HK[$k/sent]}" "${HK[$k/accepted]}" "${HK[$k/rows]}" "${HK[$k/errors]}" "${HK[$k/rate]%.*}" \
                "${HK[$k/p50_ms]}" "${HK[$k/p90_ms]}" "${HK[$k/p99_ms]}" "${HK[$k/max_ms]}" "${HK[$k/cpu]}"
            [[ ${HK[$k/errlist]} == none ]] || echo "    not accepted: ${HK[$k/errlist]}"
        done
    done
    cat <<EOF

workers=N: jobs.workers of that filebridge (1 = the minimum; the other is the default). They
  work the queued jobs during the runs (each asks the fake Jira for its issue: 404, nothing to do).
closed loop: each connection sends its next webhook when the previous one is answered; its rate
  is the intake's capacity, and its latency is queueing (c / rate), not a target.
paced: webhook i is due at start + i/rate; latency counts from when it was due, so falling
  behind shows. rows: job rows for that run's issue ids, counted in PostgreSQL afterwards.
CPU: per webhook, of filebridge, of every PostgreSQL process, and of the generator (2 cores).
EOF
    local label2
    for label2 in "${HOOKS_RUNS[@]}"; do
        echo
        echo "workers=${HK[$label2/workers]}: jobs after the runs: ${HK[$label2/jobs]}; filebridge log: ${HK[$label2/warn]} WARN, ${HK[$label2/error]} ERROR"
        echo "  busy database sessions during the closed loop, sampled every 50 ms: ${HK[$label2/closed/waits]:-not sampled}"
        if [[ -n ${HK[$label2/statements]:-} ]]; then
            echo "  statements that took PostgreSQL the most time over these runs (pg_stat_statements; a COMMIT's flush and lock waits are not in it):"
            printf '%s\n' "${HK[$label2/statements]}"
        fi
    done
    if [[ ${HK[ref]:-} == ok ]]; then
        echo
        echo "PostgreSQL alone (pgbench, $HOOKS_REF_CLIENTS clients = filebridge's pool, $HOOKS_REF_SECS s), the intake's transaction:"
        printf '  %-52s %6s tps, %s ms average\n' "INSERT ... ON CONFLICT + pg_notify, COMMIT (as filebridge)" "${HK[ref/notify/tps]}" "${HK[ref/notify/lat]}"
        printf '  %-52s %6s tps, %s ms average\n' "the same without pg_notify" "${HK[ref/plain/tps]}" "${HK[ref/plain/lat]}"
    else
        echo
        echo "${HK[ref]:-no pgbench reference}"
    fi
    echo

    # Targets: rate from the closed loop, p99 from the paced run at the target rate, and no
    # accepted webhook without its row; for each worker count.
    for label in "${HOOKS_RUNS[@]}"; do
        local w=${HK[$label/workers]} rate p99 verdict lost errs
        rate=${HK[$label/closed/rate]%.*}
        errs=${HK[$label/closed/errors]}
        verdict=MISS
        ((rate >= HOOKS_RATE_TARGET && errs == 0)) && verdict=PASS
        printf 'webhook intake rate, workers=%s: %s/s accepted   target >= %s/s   %s\n' "$w" "$rate" "$HOOKS_RATE_TARGET" "$verdict"
        add_target "webhook intake rate (jobs.workers=$w)" "$rate/s" ">= $HOOKS_RATE_TARGET/s" "$verdict" "(closed loop, c=$HOOKS_CONC, durable commits)"
        p99=${HK[$label/paced/p99_ms]}
        errs=${HK[$label/paced/errors]}
        verdict=MISS
        awk -v p="$p99" -v t="$HOOKS_P99_TARGET" 'BEGIN {exit !(p + 0 < t)}' && ((errs == 0)) && verdict=PASS
        printf 'webhook latency p99 at %s/s, workers=%s: %s ms   target < %s ms   %s\n' "$HOOKS_RATE_TARGET" "$w" "$p99" "$HOOKS_P99_TARGET" "$verdict"
        add_target "webhook p99 at $HOOKS_RATE_TARGET/s (jobs.workers=$w)" "$p99 ms" "< $HOOKS_P99_TARGET ms" "$verdict" "(paced; achieved ${HK[$label/paced/rate]%.*}/s)"
        lost=0
        local run
        for run in warm closed paced half; do
            local acc=${HK[$label/$run/accepted]} rows=${HK[$label/$run/rows]}
            lost=$((lost + acc - rows))
        done
        verdict=MISS
        ((lost == 0)) && verdict=PASS
        add_target "accepted webhooks without a job row (workers=$w)" "$lost" "0" "$verdict" "(counted in PostgreSQL)"
    done
}
