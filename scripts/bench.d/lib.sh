# Functions for scripts/bench (sourced; relies on the variables that script sets).
# shellcheck shell=bash

say() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 1
}

declare -a TRACKED_PIDS=() TRACKED_NAMES=() CURL_PIDS=() CLEAN_DIRS=() USED_PORTS=() EXTRA_PG_DIRS=()
declare -A TP=() TPCPU=() IO_ACC=() UPLOADED=() CONC_RES=() LAT=() LATCPU=()
declare -a TARGET_ROWS=()
PG_STARTED=0
CUR_MAP=""
IO_PHASE=""
IO_LAST=""
MISSES=0

# --- processes and cleanup -------------------------------------------------------------------

track_pid() {
    TRACKED_PIDS+=("$1")
    TRACKED_NAMES+=("$2")
}

# Stops one process we started: TERM, up to 10 s, then KILL. Works for grandchildren too.
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    set +e
    for pid in "${CURL_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    done
    # filebridge first (the strace wrapper ends with it), then nginx, Apache, the fake Jira.
    [[ -n ${FB_PID:-} ]] && stop_pid "$FB_PID"
    for ((i = ${#TRACKED_PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${TRACKED_PIDS[i]}"
    done
    if ((PG_STARTED)); then
        "$PG_CLUSTER" stop "$PG_DIR" >/dev/null 2>&1 || say "could not stop the database in $PG_DIR"
    fi
    for d in "${EXTRA_PG_DIRS[@]}"; do
        if ((KEEP)); then
            "$PG_CLUSTER" pause "$d" >/dev/null 2>&1 || say "could not stop the database in $d"
        else
            "$PG_CLUSTER" stop "$d" >/dev/null 2>&1 || say "could not stop the database in $d"
        fi
    done
    if ((KEEP)); then
        say "work directory kept: ${CLEAN_DIRS[*]}"
    else
        for d in "${CLEAN_DIRS[@]}"; do
            [[ -n $d && $d == */filebridge-bench.* ]] && rm -rf -- "$d"
        done
    fi
    exit "$rc"
}

# --- packages --------------------------------------------------------------------------------

ensure_packages() {
    local -a missing=()
    if ((!HOOKS_ONLY)); then
        [[ -x /usr/sbin/apache2 && -f /usr/lib/apache2/modules/mod_dav_fs.so ]] || missing+=(apache2)
        command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
        command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
        command -v strace >/dev/null 2>&1 || missing+=(strace)
        command -v fatrace >/dev/null 2>&1 || missing+=(fatrace)
        command -v cmp >/dev/null 2>&1 || missing+=(diffutils)
    fi
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v jq >/dev/null 2>&1 || missing+=(jq)
    command -v pgrep >/dev/null 2>&1 || missing+=(procps)
    ((${#missing[@]})) || return 0
    local hint="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
        printf 'bench: missing packages. Install them with:\n\n    sudo %s\n\n' "$hint" >&2
        exit 1
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get is not available; install by hand: ${missing[*]}"
    exec 7>/tmp/filebridge-bench-apt.lock
    flock 7
    say "installing ${missing[*]} with apt-get..."
    # Keep the packages' own services (Apache, nginx on port 80) from starting.
    local policy=/usr/sbin/policy-rc.d ours=0 status=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        ours=1
    fi
    if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get update -o DPkg::Lock::Timeout=300 >&2 || status=$?
    fi
    if ((status == 0)); then
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            -o DPkg::Lock::Timeout=300 "${missing[@]}" >&2 || status=$?
    fi
    ((ours)) && rm -f "$policy"
    exec 7>&-
    ((status == 0)) || die "apt-get failed (exit $status); try by hand: $hint"
    export PATH=$PATH:/usr/sbin
}

# --- small helpers ---------------------------------------------------------------------------

# pick_port VAR: a free loopback port not handed out before in this run.
pick_port() {
    local var=$1 p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        [[ " ${USED_PORTS[*]} " == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS+=("$p")
            printf -v "$var" '%s' "$p"
            return 0
        fi
    done
    die "no free port found"
}

# wait_http URL CODE PID NAME [curl args...]: until URL answers CODE (60 s at most).
wait_http() {
    local url=$1 want=$2 pid=$3 name=$4 code deadline
    shift 4
    deadline=$((SECONDS + 60))
    while :; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$url" 2>/dev/null || true)
        [[ $code == "$want" ]] && return 0
        kill -0 "$pid" 2>/dev/null || die "$name exited early; see $LOGS ($(tail -n 3 "$LOGS/$name".* 2>/dev/null | tr '\n' ' '))"
        ((SECONDS < deadline)) || die "$name did not answer $want at $url within 60 s (last: $code)"
        sleep 0.2
    done
}

# Starts the fake Jira on a free port; sets JIRA_PID, FAKE_JIRA_URL, DEMO_TOKEN, ADMIN_TOKEN.
start_fake_jira() {
    pick_port JIRA_PORT
    say "starting the fake Jira on 127.0.0.1:$JIRA_PORT..."
    "$BIN/fake-jira" --listen "127.0.0.1:$JIRA_PORT" >"$LOGS/fake-jira.out" 2>"$LOGS/fake-jira.log" &
    track_pid $! fake-jira
    JIRA_PID=$!
    local deadline=$((SECONDS + 30))
    while :; do
        FAKE_JIRA_URL=$(sed -n 's/^FAKE_JIRA_URL=//p' "$LOGS/fake-jira.out" | head -n 1)
        DEMO_TOKEN=$(sed -n 's/^DEMO_TOKEN=//p' "$LOGS/fake-jira.out" | head -n 1)
        ADMIN_TOKEN=$(sed -n 's/^ADMIN_TOKEN=//p' "$LOGS/fake-jira.out" | head -n 1)
        [[ -n $FAKE_JIRA_URL && -n $DEMO_TOKEN && -n $ADMIN_TOKEN ]] && break
        kill -0 "$JIRA_PID" 2>/dev/null || die "the fake Jira exited early: $(tail -n 5 "$LOGS/fake-jira.log")"
        ((SECONDS < deadline)) || die "the fake Jira printed no tokens within 30 s"
        sleep 0.1
    done
}

# The files filebridge reads its secrets from, in WORK (the service token is the fake's admin).
write_fb_secrets() {
    umask 077
    head -c 32 /dev/urandom | base64 >"$WORK/master.key"
    head -c 32 /dev/urandom | base64 >"$WORK/jira-webhook.secret"
    printf '%s\n' "$ADMIN_TOKEN" >"$WORK/jira-service.token"
    umask 022
    mkdir -p "$WORK/cwd"
}

# admin METHOD PATH EXPECTED_CODE JSON: an admin API call; prints the answer's body.
admin() {
    local method=$1 path=$2 want=$3 body=$4 out code
    out=$(mktemp "$WORK/res/admin.XXXXXX")
    code=$(curl -sS -o "$out" -w '%{http_code}' --max-time 60 -X "$method" \
        -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
        --data-binary "$body" "$FB$path") || die "$method $path failed"
    [[ $code == "$want" ]] || die "$method $path answered $code, not $want: $(head -c 500 "$out")"
    cat "$out"
    rm -f "$out"
}

# map_to filesystem|webdav: points project DEMO at that connection (folder "bench").
map_to() {
    local kind=$1 id code
    [[ $kind == fs ]] && kind=filesystem
    [[ $CUR_MAP == "$kind" ]] && return 0
    if [[ $kind == webdav ]]; then id=$DAV_ID; else id=$FS_ID; fi
    code=$(curl -sS -o "$WORK/res/mapping.json" -w '%{http_code}' --max-time 60 -X PUT \
        -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
        --data-binary "$(jq -nc --arg id "$id" '{connection_id:$id,root:"bench"}')" \
        "$FB/api/v1/admin/projects/DEMO/mapping") || die "PUT mapping failed"
    [[ $code == 200 || $code == 201 ]] || die "PUT mapping answered $code: $(head -c 500 "$WORK/res/mapping.json")"
    # The first write into DEMO-1's folder records that folder (issue_folders), and from then
    # on its files stay there whatever the mapping says: that is how folders follow their
    # issues. The benchmark moves DEMO between connections on purpose, so it forgets the
    # record and the next request finds the folder through the mapping again.
    psql -q -X -v ON_ERROR_STOP=1 "$DB_URL" -c "DELETE FROM issue_folders" >/dev/null ||
        die "could not clear issue_folders"
    CUR_MAP=$kind
}

CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# CPU time (user + system, ms) used so far by all processes of filebridge, nginx or Apache
# (reaped children included).
cpu_ms() {
    local -a pids=()
    case $1 in
    filebridge) pids=("$FB_PID") ;;
    nginx) mapfile -t pids < <(echo "$NGINX_PID"; pgrep -P "$NGINX_PID" || true) ;;
    apache) mapfile -t pids < <(echo "$APACHE_PID"; pgrep -P "$APACHE_PID" || true) ;;
    esac
    local p total=0 t
    for p in "${pids[@]}"; do
        t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null || echo 0)
        total=$((total + t))
    done
    echo $((total * 1000 / CLK_TCK))
}

# "filebridge nginx apache" CPU ms now.
cpu_snapshot() { echo "$(cpu_ms filebridge) $(cpu_ms nginx) $(cpu_ms apache)"; }

# cpu_used METHOD BEFORE AFTER: "relay_ms apache_ms" for that method ('-' where none).
cpu_used() {
    local m=$1 a b
    read -r -a a <<<"$2"
    read -r -a b <<<"$3"
    local fb=$((b[0] - a[0])) ngx=$((b[1] - a[1])) ap=$((b[2] - a[2]))
    case $m in
    fb-webdav) echo "$fb $ap" ;;
    fb-fs) echo "$fb -" ;;
    nginx-proxy) echo "$ngx $ap" ;;
    apache-direct | propfind-direct) echo "- $ap" ;;
    *) echo "- -" ;;
    esac
}

proc_status_kib() {
    awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"
}

# The counters of /proc/PID/io as "rchar wchar read_bytes write_bytes cancelled_write_bytes".
proc_io() {
    awk '{v[$1]=$2} END {print v["rchar:"], v["wchar:"], v["read_bytes:"], v["write_bytes:"], v["cancelled_write_bytes:"]}' \
        "/proc/$FB_PID/io"
}

io_mark() {
    local now
    now=$(proc_io)
    [[ $1 == start ]] && IO_START=$now
    [[ $1 == end ]] && IO_END=$now
    IO_LAST=$now
    IO_PHASE=idle
}

# io_phase KIND: charges what filebridge did since the last call to the phase then running.
io_phase() {
    local now i
    now=$(proc_io)
    local -a a b
    read -r -a a <<<"$IO_LAST"
    read -r -a b <<<"$now"
    local -a acc
    read -r -a acc <<<"${IO_ACC[$IO_PHASE]:-0 0 0 0 0}"
    for i in 0 1 2 3 4; do
        acc[i]=$((acc[i] + b[i] - a[i]))
    done
    IO_ACC[$IO_PHASE]="${acc[*]}"
    IO_LAST=$now
    IO_PHASE=$1
}

# per_gib "ms1 ms2 ..." -> median ms per GiB of BIG ('-' when not measured).
per_gib() {
    local m
    m=$(tr ' ' '\n' <<<"$1" | grep -E '^[0-9]+$' | tr '\n' ' ' | median)
    [[ $m == nan ]] && { echo "-"; return; }
    awk -v m="$m" -v b="$BIG" 'BEGIN {printf "%.0f", m * 1073741824 / b}'
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
# Nearest-rank percentile.
percentile() { tr ' ' '\n' | grep -v '^$' | sort -g | awk -v p="$1" '{v[NR]=$1} END {r=int(p/100*NR); if (r < p/100*NR) r++; if (r < 1) r = 1; print v[r]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b == 0 || a == "nan" || b == "nan") print "nan"; else printf "%.2f", a/b}'; }
fmt_mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k/1024}'; }
human_bytes() { awk -v b="$1" 'BEGIN {if (b < 1024) printf "%d B", b; else if (b < 1048576) printf "%.1f KiB", b/1024; else if (b < 1073741824) printf "%.1f MiB", b/1048576; else printf "%.2f GiB", b/1073741824}'; }

section() {
    printf '\n== %s ==\n\n' "$1"
}

# add_target NAME MEASURED TARGET PASS|MISS|n/a [NOTE]
add_target() {
    [[ $4 == MISS ]] && MISSES=$((MISSES + 1))
    TARGET_ROWS+=("$(printf '%-52s %-14s %-12s %-5s %s' "$1" "$2" "$3" "$4" "${5:-}")")
}

# --- 1. throughput -------------------------------------------------------------------------

# transfer DIRECTION METHOD VERIFY: one transfer; prints MB/s. VERIFY=1 compares every byte
# (on a warm-up run, not timed); timed runs check status and size.
transfer() {
    local direction=$1 m=$2 verify=$3 url="" out=$WORK/res/transfer
    local -a auth=()
    case $m in
    fb-fs | fb-webdav) auth=("${AUTH_FB[@]}") ;;
    apache-direct | nginx-proxy) auth=("${AUTH_DAV[@]}") ;;
    esac
    if [[ $direction == download ]]; then
        case $m in
        fb-fs | fb-webdav) url="$FILES/content?path=big.bin" ;;
        apache-direct) url=$DAV_ISSUE_URL/big.bin ;;
        nginx-proxy) url=$NGX_ISSUE_URL/big.bin ;;
        fs-direct)
            local t0 t1 bytes
            t0=$EPOCHREALTIME
            dd if="$FS_DIR/big.bin" of=/dev/null bs=1M 2>"$out.err" || die "dd failed: $(cat "$out.err")"
            t1=$EPOCHREALTIME
            bytes=$(awk '/bytes/ {print $1; exit}' "$out.err")
            [[ $bytes == "$BIG" ]] || die "dd read $bytes bytes, not $BIG"
            ((verify == 0)) || cmp -s "$FS_DIR/big.bin" "$SRC_BIG" || die "the stored file differs from the source"
            awk -v b="$bytes" -v a="$t0" -v z="$t1" 'BEGIN {printf "%.0f", b/(z-a)/1e6}'
            return 0
            ;;
        esac
        local code size time
        if ((verify)); then
            curl -sS --max-time "$TRANSFER_TIMEOUT" "${auth[@]}" -o - \
                -w '%{stderr}%{http_code} %{size_download} %{time_total}\n' "$url" 2>"$out.w" |
                cmp -s - "$SRC_BIG" || die "download $m: the bytes differ from the source ($(tail -n 2 "$out.w"))"
            read -r code size time < <(tail -n 1 "$out.w")
        else
            read -r code size time < <(curl -sS --max-time "$TRANSFER_TIMEOUT" "${auth[@]}" -o /dev/null \
                -w '%{http_code} %{size_download} %{time_total}\n' "$url" 2>"$out.err" || true)
        fi
        [[ ${code:-} == 200 && ${size:-} == "$BIG" ]] ||
            die "download $m: status ${code:-none}, $size bytes (want 200, $BIG): $(cat "$out.err" 2>/dev/null)"
        awk -v b="$size" -v t="$time" 'BEGIN {printf "%.0f", b/t/1e6}'
        return 0
    fi

    # upload: into a fresh name each run (the previous copy removed first, untimed)
    local stored want=201
    case $m in
    fs-direct) stored=$FS_DIR/up-direct.bin ;;
    fb-fs) stored=$FS_DIR/up-fb.bin url="$FILES/content?path=up-fb.bin" ;;
    fb-webdav) stored=$DAV_DIR/up-fb.bin url="$FILES/content?path=up-fb.bin" ;;
    apache-direct) stored=$DAV_DIR/up-apache.bin url=$DAV_ISSUE_URL/up-apache.bin ;;
    nginx-proxy) stored=$DAV_DIR/up-nginx.bin url=$NGX_ISSUE_URL/up-nginx.bin ;;
    esac
    rm -f "$stored"
    local mbps
    if [[ $m == fs-direct ]]; then
        local t0 t1
        t0=$EPOCHREALTIME
        # conv=fsync: filebridge's filesystem kind syncs a file before renaming it into place.
        dd if="$SRC_BIG" of="$stored" bs=1M conv=fsync 2>"$out.err" || die "dd failed: $(cat "$out.err")"
        t1=$EPOCHREALTIME
        mbps=$(awk -v b="$BIG" -v a="$t0" -v z="$t1" 'BEGIN {printf "%.0f", b/(z-a)/1e6}')
    else
        local code size time
        read -r code size time < <(curl -sS --max-time "$TRANSFER_TIMEOUT" "${auth[@]}" -X PUT \
            -H 'Expect:' -H 'Content-Type: application/octet-stream' -T "$SRC_BIG" \
            -o "$out.body" -w '%{http_code} %{size_upload} %{time_total}\n' "$url" 2>"$out.err" || true)
        [[ ${code:-} == "$want" && ${size:-} == "$BIG" ]] ||
            die "upload $m: status ${code:-none}, $size bytes sent (want $want, $BIG): $(cat "$out.err") $(head -c 300 "$out.body")"
        if [[ $m == fb-* ]]; then
            [[ $(jq -r .size "$out.body") == "$BIG" ]] || die "upload $m: filebridge reports size $(jq -r .size "$out.body")"
        fi
        mbps=$(awk -v b="$size" -v t="$time" 'BEGIN {printf "%.0f", b/t/1e6}')
    fi
    [[ -f $stored && $(stat -c %s "$stored") == "$BIG" ]] || die "upload $m: $stored is missing or has the wrong size"
    ((verify == 0)) || cmp -s "$stored" "$SRC_BIG" || die "upload $m: the stored bytes differ from the source"
    printf '%s' "$mbps"
}

method_label() {
    case $1 in
    fs-direct) echo "filesystem directly (dd)" ;;
    fb-fs) echo "filebridge -> filesystem" ;;
    apache-direct) echo "Apache mod_dav directly (curl)" ;;
    nginx-proxy) echo "nginx proxy_pass -> Apache" ;;
    fb-webdav) echo "filebridge -> WebDAV (Apache)" ;;
    propfind-direct) echo "PROPFIND Depth: 1 on Apache directly" ;;
    esac
}

print_throughput() {
    local m d
    printf '%-32s %-40s %s\n' "path" "download MB/s  median (runs)" "upload MB/s  median (runs)"
    for m in fs-direct fb-fs apache-direct nginx-proxy fb-webdav; do
        [[ -n ${TP[download/$m]:-} ]] || continue
        local cells=()
        for d in download upload; do
            cells+=("$(printf '%6s  (%s)' "$(median <<<"${TP[$d/$m]}")" "$(xargs <<<"${TP[$d/$m]}")")")
        done
        printf '%-32s %-40s %s\n' "$(method_label "$m")" "${cells[0]}" "${cells[1]}"
    done
    echo
    echo "CPU time per GiB moved, median of the timed runs (ms; relay = filebridge or nginx):"
    printf '%-32s %-24s %s\n' "path" "download relay/Apache" "upload relay/Apache"
    for m in fb-fs apache-direct nginx-proxy fb-webdav; do
        [[ -n ${TPCPU[download/$m]:-} ]] || continue
        local cells=()
        for d in download upload; do
            local relay apache
            relay=$(per_gib "$(cut -d' ' -f1 <<<"${TPCPU[$d/$m]}" | tr ',' ' ')")
            apache=$(per_gib "$(cut -d' ' -f2 <<<"${TPCPU[$d/$m]}" | tr ',' ' ')")
            cells+=("$relay / $apache")
        done
        printf '%-32s %-24s %s\n' "$(method_label "$m")" "${cells[0]}" "${cells[1]}"
    done
    echo
    local fb=fb-webdav why="same backend (Apache), same loopback hops"
    if ((!WEBDAV_OK)); then
        fb="fb-fs"
        why="webdav kind not working: filebridge over the filesystem kind instead"
    fi
    for d in download upload; do
        local r
        r=$(ratio "$(median <<<"${TP[$d/$fb]}")" "$(median <<<"${TP[$d/nginx-proxy]}")")
        local verdict=MISS
        awk -v r="$r" -v t="$RATIO_TARGET" 'BEGIN {exit !(r != "nan" && r >= t)}' && verdict=PASS
        printf '%-8s %s / nginx proxy_pass = %sx   target >= %sx   %s\n' "$d" "$(method_label $fb)" "$r" "$RATIO_TARGET" "$verdict"
        add_target "$d: filebridge / nginx proxy_pass" "${r}x" ">= ${RATIO_TARGET}x" "$verdict" "($why)"
        if ((WEBDAV_OK)); then
            r=$(ratio "$(median <<<"${TP[$d/fb-fs]}")" "$(median <<<"${TP[$d/nginx-proxy]}")")
            printf '%-8s %s / nginx proxy_pass = %sx   (for information: a different backend)\n' "$d" "$(method_label fb-fs)" "$r"
        fi
    done
}

# --- 2. concurrency --------------------------------------------------------------------------

concurrency() {
    local kind=$1 i p rc idle_before peak after t0 t1 ok=0 failed=0 stored_dir
    if [[ $kind == webdav ]]; then stored_dir=$DAV_DIR; else stored_dir=$FS_DIR; fi
    rm -f "$stored_dir"/conc-up-*.bin "$WORK"/res/conc-*
    idle_before=$(proc_status_kib "$FB_PID" VmRSS)
    local reset=1
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    echo 5 >"/proc/$FB_PID/clear_refs" 2>/dev/null || reset=0
    say "$kind: $CONC downloads + $CONC uploads of ${CONC_MIB} MiB at once..."
    local -a pids=()
    t0=$EPOCHREALTIME
    for ((i = 1; i <= CONC; i++)); do
        curl -sS --max-time "$TRANSFER_TIMEOUT" "${AUTH_FB[@]}" -o /dev/null \
            -w '%{http_code} %{size_download}\n' "$FILES/content?path=conc.bin" \
            >"$WORK/res/conc-dl-$i" 2>"$WORK/res/conc-dl-$i.err" &
        pids+=($!)
        curl -sS --max-time "$TRANSFER_TIMEOUT" "${AUTH_FB[@]}" -X PUT -H 'Expect:' \
            -H 'Content-Type: application/octet-stream' -T "$SRC_CONC" -o "$WORK/res/conc-ul-$i.body" \
            -w '%{http_code} %{size_upload}\n' "$FILES/content?path=conc-up-$i.bin" \
            >"$WORK/res/conc-ul-$i" 2>"$WORK/res/conc-ul-$i.err" &
        pids+=($!)
    done
    CURL_PIDS+=("${pids[@]}")
    for p in "${pids[@]}"; do
        wait "$p" || true
    done
    t1=$EPOCHREALTIME
    peak=$(proc_status_kib "$FB_PID" VmHWM)
    after=$(proc_status_kib "$FB_PID" VmRSS)
    local code size
    for ((i = 1; i <= CONC; i++)); do
        read -r code size <"$WORK/res/conc-dl-$i" || true
        if [[ ${code:-} == 200 && ${size:-} == "$CONC_SIZE" ]]; then ok=$((ok + 1)); else failed=$((failed + 1)); fi
        read -r code size <"$WORK/res/conc-ul-$i" || true
        if [[ ${code:-} == 201 && ${size:-} == "$CONC_SIZE" ]] && cmp -s "$stored_dir/conc-up-$i.bin" "$SRC_CONC"; then
            ok=$((ok + 1))
        else
            failed=$((failed + 1))
        fi
    done
    ((failed == 0)) || say "$kind: $failed of $((2 * CONC)) concurrent transfers failed (see $WORK/res/conc-*)"
    UPLOADED[$kind]=$((${UPLOADED[$kind]:-0} + CONC * CONC_SIZE))
    local secs mbps
    secs=$(awk -v a="$t0" -v z="$t1" 'BEGIN {printf "%.1f", z-a}')
    mbps=$(awk -v n="$((2 * CONC))" -v s="$CONC_SIZE" -v a="$t0" -v z="$t1" 'BEGIN {printf "%.0f", n*s/(z-a)/1e6}')
    CONC_RES[$kind]="$idle_before $peak $after $secs $mbps $ok $failed $reset"
    rm -f "$stored_dir"/conc-up-*.bin
}

print_concurrency() {
    local kind idle_before peak after secs mbps ok failed reset
    printf 'idle RSS right after start-up and warm-up: %s MiB\n\n' "$(fmt_mib "$RSS_IDLE_START")"
    printf '%-12s %-16s %-14s %-18s %-18s %-16s %s\n' connection "idle before MiB" "peak MiB" "peak-idle(start)" "peak-idle(before)" "RSS after MiB" "transfers (time, aggregate)"
    for kind in "${CONC_KINDS[@]}"; do
        read -r idle_before peak after secs mbps ok failed reset <<<"${CONC_RES[$kind]}"
        local d_start d_before
        d_start=$(awk -v p="$peak" -v i="$RSS_IDLE_START" 'BEGIN {printf "%.1f", (p-i)/1024}')
        d_before=$(awk -v p="$peak" -v i="$idle_before" 'BEGIN {printf "%.1f", (p-i)/1024}')
        printf '%-12s %-16s %-14s %-18s %-18s %-16s %s\n' "$kind" "$(fmt_mib "$idle_before")" "$(fmt_mib "$peak")" \
            "+$d_start" "+$d_before" "$(fmt_mib "$after")" "$ok ok, $failed failed ($secs s, $mbps MB/s)"
        local verdict=MISS
        awk -v d="$d_start" -v t="$RSS_TARGET_MIB" 'BEGIN {exit !(d <= t)}' && verdict=PASS
        ((failed == 0)) || verdict=MISS
        local note="(VmHWM; baseline: idle RSS at start-up)"
        ((reset)) || note="(VmHWM not resettable here: peak since start-up)"
        ((failed == 0)) || note="($failed transfers failed)"
        add_target "peak RSS above idle, $kind ($CONC+$CONC x ${CONC_MIB} MiB)" "+$d_start MiB" "<= ${RSS_TARGET_MIB} MiB" "$verdict" "$note"
    done
    echo
    echo "peak = VmHWM of the filebridge process over the test (reset with clear_refs just before);"
    echo "every download's size and every upload's bytes (cmp against the source) were checked."
}

# --- 3. listing -----------------------------------------------------------------------------

PROPFIND_BODY='<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/><D:getetag/></D:prop></D:propfind>'

make_listing_folder() {
    local i d
    for d in "$FS_DIR/list" "$DAV_DIR/list"; do
        rm -rf "$d"
        mkdir -p "$d"
        for ((i = 1; i <= ITEMS; i++)); do
            printf 'item %d\n' "$i" >"$d/$(printf 'file-%05d.txt' "$i")"
        done
    done
    [[ $(id -u) -ne 0 ]] || chown -R www-data:www-data "$DAV_DIR/list"
}

# listing METHOD: LAT_WARM + LAT_N requests over one keep-alive connection; stores the
# timed ones (ms) in LAT[METHOD].
listing() {
    local m=$1 url want n i
    local -a common=()
    case $m in
    propfind-direct)
        url=$DAV_ISSUE_URL/list/
        want=207
        common=("${AUTH_DAV[@]}" -X PROPFIND -H 'Depth: 1' -H 'Content-Type: application/xml; charset=utf-8' --data-binary "$PROPFIND_BODY")
        ;;
    *)
        url="$FILES?path=list"
        want=200
        common=("${AUTH_FB[@]}")
        ;;
    esac
    # Completeness, once: all items there.
    curl -sS --max-time 60 "${common[@]}" -o "$WORK/res/list-$m.body" "$url" || die "listing $m failed"
    if [[ $m == propfind-direct ]]; then
        n=$(grep -o '<D:response' "$WORK/res/list-$m.body" | wc -l)
        n=$((n - 1))
    else
        n=$(jq '[.. | objects | select(has("name") and has("kind"))] | length' "$WORK/res/list-$m.body" 2>/dev/null || echo 0)
    fi
    [[ $n == "$ITEMS" ]] || die "listing $m returned $n items, not $ITEMS: $(head -c 300 "$WORK/res/list-$m.body")"
    local -a args=()
    for ((i = 0; i < LAT_WARM + LAT_N; i++)); do
        args+=(-o /dev/null "$url")
    done
    local c0 c1
    c0=$(cpu_snapshot)
    curl -sS --max-time 600 "${common[@]}" -w '%{http_code} %{time_total}\n' "${args[@]}" \
        >"$WORK/res/lat-$m" 2>"$WORK/res/lat-$m.err" || die "listing $m: curl failed: $(cat "$WORK/res/lat-$m.err")"
    c1=$(cpu_snapshot)
    LATCPU[$m]=$(cpu_used "$m" "$c0" "$c1")
    local bad
    bad=$(awk -v w="$want" '$1 != w' "$WORK/res/lat-$m" | wc -l)
    ((bad == 0)) || die "listing $m: $bad requests did not answer $want"
    LAT[$m]=$(tail -n "$LAT_N" "$WORK/res/lat-$m" | awk '{printf "%.3f ", $2 * 1000}')
}

print_listing() {
    local m med p95
    printf '%-40s %-10s %-10s %-18s %s\n' path "median ms" "p95 ms" "min / max ms" "CPU ms/request filebridge / Apache"
    for m in "${LIST_METHODS[@]}"; do
        med=$(median <<<"${LAT[$m]}")
        p95=$(percentile 95 <<<"${LAT[$m]}")
        local cpu_fb cpu_ap
        read -r cpu_fb cpu_ap <<<"${LATCPU[$m]}"
        [[ $cpu_fb == - ]] || cpu_fb=$(awk -v c="$cpu_fb" -v n=$((LAT_WARM + LAT_N)) 'BEGIN {printf "%.2f", c/n}')
        [[ $cpu_ap == - ]] || cpu_ap=$(awk -v c="$cpu_ap" -v n=$((LAT_WARM + LAT_N)) 'BEGIN {printf "%.2f", c/n}')
        printf '%-40s %-10s %-10s %-18s %s / %s\n' "$(method_label "$m")" "$med" "$p95" \
            "$(percentile 0 <<<"${LAT[$m]}") / $(percentile 100 <<<"${LAT[$m]}")" "$cpu_fb" "$cpu_ap"
    done
    echo
    local fb=fb-webdav
    ((WEBDAV_OK)) || fb="fb-fs"
    local rm rp verdict=MISS
    rm=$(ratio "$(median <<<"${LAT[$fb]}")" "$(median <<<"${LAT[propfind-direct]}")")
    rp=$(ratio "$(percentile 95 <<<"${LAT[$fb]}")" "$(percentile 95 <<<"${LAT[propfind-direct]}")")
    awk -v r="$rm" -v t="$LIST_TARGET" 'BEGIN {exit !(r != "nan" && r <= t)}' && verdict=PASS
    printf '%s / direct PROPFIND: median %sx, p95 %sx   target <= %sx (median)   %s\n' "$(method_label $fb)" "$rm" "$rp" "$LIST_TARGET" "$verdict"
    add_target "listing $ITEMS items: filebridge / PROPFIND (median)" "${rm}x" "<= ${LIST_TARGET}x" "$verdict" "(p95 ${rp}x)"
    if ((WEBDAV_OK)); then
        printf '%s / direct PROPFIND: median %sx (for information: no PROPFIND involved)\n' "$(method_label fb-fs)" \
            "$(ratio "$(median <<<"${LAT[fb-fs]}")" "$(median <<<"${LAT[propfind-direct]}")")"
    fi
}

# --- 4. disk writes --------------------------------------------------------------------------

# Untimed replay under strace (ptrace sees every file call, on any filesystem, tmpfs
# included, but slows the daemon, which is why it is not attached during the measurements):
# upload, download, list, move and delete through each connection kind.
strace_replay() {
    STRACE_LOG=""
    if ! command -v strace >/dev/null 2>&1; then
        say "strace is missing: no replay under strace"
        return 0
    fi
    STRACE_LOG=$LOGS/strace.log
    strace -f -qq -p "$FB_PID" -o "$STRACE_LOG" \
        -e trace=open,openat,openat2,creat,truncate,ftruncate,rename,renameat,renameat2,mkdir,mkdirat,link,linkat,symlink,symlinkat,mknod,mknodat,unlink,unlinkat,memfd_create \
        2>"$LOGS/strace.err" &
    STRACE_PID=$!
    track_pid "$STRACE_PID" strace
    # Attached once every thread of the daemon has a tracer.
    local i t attached=0
    for ((i = 0; i < 100; i++)); do
        attached=1
        for t in /proc/"$FB_PID"/task/*/status; do
            [[ $(awk '/^TracerPid:/ {print $2}' "$t" 2>/dev/null) != 0 ]] || attached=0
        done
        ((attached)) && break
        kill -0 "$STRACE_PID" 2>/dev/null || break
        sleep 0.1
    done
    if ((!attached)); then
        say "strace could not attach to filebridge ($(head -c 200 "$LOGS/strace.err")); no replay"
        stop_pid "$STRACE_PID"
        STRACE_LOG=""
        return 0
    fi
    local kind code
    local -a kinds=()
    ((WEBDAV_OK)) && kinds+=(webdav)
    kinds+=(filesystem)
    for kind in "${kinds[@]}"; do
        say "replay under strace: $kind"
        map_to "$kind"
        io_phase "$kind"
        code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 300 "${AUTH_FB[@]}" -X PUT -H 'Expect:' \
            -T "$SRC_SMALL" "$FILES/content?path=replay.bin")
        [[ $code == 201 ]] || die "replay $kind: upload answered $code"
        UPLOADED[$kind]=$((${UPLOADED[$kind]:-0} + $(stat -c %s "$SRC_SMALL")))
        curl -sS --max-time 300 "${AUTH_FB[@]}" "$FILES/content?path=replay.bin" | cmp -s - "$SRC_SMALL" ||
            die "replay $kind: the download differs"
        code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 60 "${AUTH_FB[@]}" "$FILES?path=")
        [[ $code == 200 ]] || die "replay $kind: listing answered $code"
        code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 60 "${AUTH_FB[@]}" -X POST \
            -H 'Content-Type: application/json' --data '{"from":"replay.bin","to":"replay-moved.bin"}' "$FILES/move")
        [[ $code == 200 || $code == 201 ]] || die "replay $kind: move answered $code"
        code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 60 "${AUTH_FB[@]}" -X DELETE "$FILES?path=replay-moved.bin")
        [[ $code == 204 ]] || die "replay $kind: delete answered $code"
    done
    io_phase idle
    stop_pid "$STRACE_PID"
}

# Lines of a strace log that create, open for writing, rename or remove something.
strace_writes() {
    grep -E '(open|openat|openat2)\(.*(O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND)|(creat|truncate|ftruncate|rename|renameat|renameat2|mkdir|mkdirat|link|linkat|symlink|symlinkat|mknod|mknodat|unlink|unlinkat|memfd_create)\(' \
        "$1" || true
}

# Lines naming at least one path outside ROOT (or no path at all).
outside_root() {
    awk -v root="$1/" '{
            n = split($0, parts, "\""); ok = 1; seen = 0
            for (i = 2; i <= n; i += 2) { seen = 1; if (index(parts[i], root) != 1) ok = 0 }
            if (!(seen && ok)) print
        }'
}

print_disk() {
    local kind w wb cwb
    local -a s e
    read -r -a s <<<"$IO_START"
    read -r -a e <<<"$IO_END"
    printf 'work directory (sources, storage roots, logs): %s (%s)\n\n' "$WORK" "$WORK_FS"
    printf '%-24s %-14s %-16s %-14s %s\n' "phases" "write_bytes" "cancelled_write" "wchar" "file content uploaded through filebridge"
    for kind in webdav filesystem idle; do
        [[ -n ${IO_ACC[$kind]:-} ]] || continue
        read -r _ w _ wb cwb <<<"${IO_ACC[$kind]}"
        printf '%-24s %-14s %-16s %-14s %s\n' "$kind" "$wb" "$cwb" "$w" "${UPLOADED[$kind]:-0} ($(human_bytes "${UPLOADED[$kind]:-0}"))"
    done
    local total_up=$((${UPLOADED[webdav]:-0} + ${UPLOADED[filesystem]:-0}))
    printf '%-24s %-14s %-16s %-14s %s\n' "whole run" "$((e[3] - s[3]))" "$((e[4] - s[4]))" "$((e[1] - s[1]))" \
        "$total_up ($(human_bytes "$total_up"))"
    cat <<'EOF'

write_bytes: what the process sent towards a block device (counted when it dirties the page
  cache); the number that says whether content reached a local disk. A tmpfs is not a block
  device: writes there show as 0.
wchar: bytes through write()/writev() on any descriptor: files, and sockets written with
  writev() (hyper's requests to the WebDAV server; actix answers with send(), not counted).
  So wchar ~ uploaded bytes means each uploaded byte was written once: into the storage
  root (filesystem kind) or onto the socket to Apache (webdav kind).
phases: what filebridge did while serving through that connection kind ('idle' = between
  phases); sections 1 to 3 and the replay below.
EOF

    if ((WEBDAV_OK)); then
        local wb_dav
        read -r _ _ _ wb_dav _ <<<"${IO_ACC[webdav]}"
        local verdict=MISS
        ((wb_dav == 0)) && verdict=PASS
        add_target "disk writes during the webdav phases" "$wb_dav B" "0 B" "$verdict" "(write_bytes; $(human_bytes "${UPLOADED[webdav]:-0}") uploaded)"
    fi

    echo
    if [[ -n $FATRACE_LOG ]] && ! grep -q "^filebridge($CANARY_PID): .*$CANARY_DIR/canary.bin" "$FATRACE_LOG"; then
        echo "fatrace did not record the canary's write to $CANARY_DIR (is $(df -PT "$CANARY_DIR" | awk 'NR==2 {print $2}') watched?): its record is not used."
        add_target "files written on disk outside the storage root" "not measured" "0" "n/a" "(fatrace saw no canary)"
        FATRACE_LOG=""
    elif [[ -n $FATRACE_LOG ]]; then
        local all outside
        all=$(grep -c "^filebridge($FB_PID)" "$FATRACE_LOG" || true)
        outside=$(grep "^filebridge($FB_PID)" "$FATRACE_LOG" | sed 's/^[^ ]* [^ ]* //' | grep -v "^$FS_ROOT/" | sort | uniq -c | sort -rn || true)
        local n_out=0
        [[ -n $outside ]] && n_out=$(wc -l <<<"$outside")
        echo "fatrace (fanotify, whole run, disk-backed filesystems only; it did see a canary process"
        echo "named filebridge write 4 KiB to $CANARY_DIR), files the daemon wrote to:"
        echo "  write events: $all; distinct files outside the filesystem connection's root: $n_out"
        [[ -z $outside ]] || sed -n '1,10p' <<<"$outside" | sed 's/^/    /'
        local verdict=MISS
        ((n_out == 0)) && verdict=PASS
        add_target "files written on disk outside the storage root" "$n_out" "0" "$verdict" "(fatrace, whole run)"
    else
        echo "fatrace is not available: no whole-run record of the files written."
    fi

    echo
    if [[ -z $STRACE_LOG ]]; then
        echo "strace is not available: no replay."
        add_target "files opened for writing outside the storage root" "not measured" "0" "n/a" "(no strace)"
        return 0
    fi
    local calls=$WORK/res/strace-writes total inside outside
    strace_writes "$STRACE_LOG" >"$calls"
    outside_root "$FS_ROOT" <"$calls" >"$calls.outside"
    total=$(wc -l <"$calls")
    outside=$(wc -l <"$calls.outside")
    inside=$((total - outside))
    echo "strace replay (upload $(human_bytes "$(stat -c %s "$SRC_SMALL")"), download, list, move, delete through each"
    echo "connection kind), calls that create, open for writing, rename or remove files:"
    echo "  inside the filesystem connection's root: $inside (its temporary upload file, rename, delete)"
    echo "  anywhere else, tmpfs included: $outside"
    ((outside == 0)) || sed -n '1,10p' "$calls.outside" | sed 's/^/    /'
    local verdict=MISS note="(strace replay)"
    ((outside == 0)) && verdict=PASS
    if ((inside == 0)); then
        # The filesystem kind must show its own writes; if not, strace saw nothing.
        verdict=n/a
        note="(strace recorded no call at all: not measured)"
    fi
    add_target "files opened for writing outside the storage root" "$outside" "0" "$verdict" "$note"
}

# --- machine and summary ----------------------------------------------------------------------

print_machine() {
    section "Machine"
    local os rev
    os=$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-unknown}")
    rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
    git -C "$REPO" diff --quiet HEAD 2>/dev/null || rev="$rev (with uncommitted changes)"
    printf '%-14s %s\n' "date" "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf '%-14s %s\n' "cpu" "$(nproc) x $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    printf '%-14s %s\n' "memory" "$(awk '/^MemTotal:/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    printf '%-14s %s\n' "kernel" "$(uname -r)"
    printf '%-14s %s\n' "os" "$os"
    printf '%-14s %s\n' "filebridge" "$("$BIN/filebridge" version 2>/dev/null | head -n 1) at $rev (release build)"
    if ((HOOKS_ONLY)); then
        printf '%-14s %s\n' "work dir" "$WORK ($WORK_FS)"
        printf '%-14s %s\n' "sizes" "webhooks ${HOOKS_COUNT} per run$( ((QUICK)) && echo ' (--quick)'); section 5 only (--hooks)"
    else
        printf '%-14s %s\n' "peers" "$(/usr/sbin/apache2 -v | sed -n 's/^Server version: //p'), $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(curl --version | awk 'NR==1 {print $1" "$2}')"
        printf '%-14s %s\n' "work dir" "$WORK ($WORK_FS)"
        printf '%-14s %s\n' "sizes" "transfers ${BIG_MIB} MiB; concurrency $CONC+$CONC x ${CONC_MIB} MiB; listing $ITEMS items; webhooks ${HOOKS_COUNT} per run$( ((QUICK)) && echo ' (--quick)')"
        printf '%-14s %s\n' "webdav kind" "$( ((WEBDAV_OK)) && echo "working (connection test 200)" || echo "NOT working: connection test failed; filesystem kind only")"
    fi
    printf '%-14s %s\n' "load now" "$(cut -d' ' -f1-3 /proc/loadavg)"
}

# What the daemons complained about during the run.
print_logs() {
    local fb_lines fb_warn fb_err ap ng
    if ((HOOKS_ONLY)); then
        return 0 # section 5 reports its filebridges' logs itself
    fi
    fb_lines=$(grep -c . "$LOGS/filebridge.log" || true)
    fb_warn=$(grep -c '"level":"WARN"' "$LOGS/filebridge.log" || true)
    fb_err=$(grep -c '"level":"ERROR"' "$LOGS/filebridge.log" || true)
    # shellcheck disable=SC2153 # APACHE and NGINX are set by scripts/bench
    ap=$(grep -vc ':notice\]' "$APACHE/error.log" 2>/dev/null || true)
    ng=$(grep -vc '\[notice\]' "$NGINX/error.log" 2>/dev/null || true)
    echo
    echo "logs: filebridge $fb_lines lines ($fb_warn WARN, $fb_err ERROR); Apache error.log $ap lines above notice; nginx error.log $ng lines"
    grep -h '"level":"\(WARN\|ERROR\)"' "$LOGS/filebridge.log" | head -n 3 | cut -c1-300 | sed 's/^/  /' || true
    [[ ${ap:-0} == 0 ]] || grep -v ':notice\]' "$APACHE/error.log" | head -n 3 | cut -c1-300 | sed 's/^/  apache: /'
    [[ ${ng:-0} == 0 ]] || grep -v '\[notice\]' "$NGINX/error.log" | head -n 3 | cut -c1-300 | sed 's/^/  nginx: /'
}

print_summary() {
    print_logs
    section "Summary"
    printf '%-52s %-14s %-12s %-5s %s\n' target measured wanted "" ""
    local row
    for row in "${TARGET_ROWS[@]}"; do
        printf '%s\n' "$row"
    done
    echo
    local what="full run"
    ((HOOKS_ONLY)) && what="--hooks run"
    echo "$MISSES target(s) missed; $what took $((SECONDS - STARTED)) s."
}

print_hold_info() {
    cat <<EOF
FB=$FB
FB_PID=$FB_PID
DEMO_TOKEN=$DEMO_TOKEN
ADMIN_TOKEN=$ADMIN_TOKEN
FS_ID=$FS_ID
DAV_ID=$DAV_ID
DAV_URL=$DAV_URL
NGX_URL=$NGX_URL
DAV_AUTH=$BENCH_USER:$BENCH_PASSWORD
WORK=$WORK
DB_URL=$DB_URL
# mapped to: $CUR_MAP; issue folder bench/DEMO-1 holds big.bin and list/ ($ITEMS items)
EOF
}
