#!/usr/bin/env bash
# Apache Pulsar standalone broker for Sluice's tests and benchmarks, without Docker.
#
#   deploy/pulsar/standalone.sh fetch          download + unpack the distribution (cached)
#   deploy/pulsar/standalone.sh start          fetch, start in the background, wait until ready
#   deploy/pulsar/standalone.sh wait           wait until a started broker is ready
#   deploy/pulsar/standalone.sh status         exit 0 only if running AND ready
#   deploy/pulsar/standalone.sh stop           SIGTERM, up to 30 s, then SIGKILL; idempotent
#   deploy/pulsar/standalone.sh restart        stop + start (fresh data)
#   deploy/pulsar/standalone.sh resume         start again on the data of the last run (the
#                                              broker-restart fault test: nothing is wiped)
#   deploy/pulsar/standalone.sh logs [-f] [N]  last N (default 200) lines of the broker log
#   deploy/pulsar/standalone.sh env            print the variables tests need (eval-able)
#
# See deploy/pulsar/README.md for the environment variables.
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Settings (all overridable from the environment)
# ---------------------------------------------------------------------------------------------
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

# 4.0.x is the current LTS line; 4.0.8 is the newest 4.0.x whose binary distribution is on
# Maven Central (checked against maven-metadata.xml of pulsar-server-distribution).
PULSAR_VERSION=${PULSAR_VERSION:-4.0.8}
PULSAR_MAVEN_REPO=${PULSAR_MAVEN_REPO:-https://repo.maven.apache.org/maven2}
PULSAR_BROKER_PORT=${PULSAR_BROKER_PORT:-6650}
PULSAR_WEB_PORT=${PULSAR_WEB_PORT:-8080}
PULSAR_READY_TIMEOUT=${PULSAR_READY_TIMEOUT:-180}
PULSAR_STOP_TIMEOUT=${PULSAR_STOP_TIMEOUT:-30}
# ~1 GiB heap is plenty for tests; keeps the broker from grabbing a quarter of the RAM.
PULSAR_MEM=${PULSAR_MEM:-"-Xms512m -Xmx1g -XX:MaxDirectMemorySize=1g"}

CACHE_ROOT=${SLUICE_CACHE:-$REPO_ROOT/.cache}/pulsar
DOWNLOAD_DIR=$CACHE_ROOT/downloads
DIST_DIR=$CACHE_ROOT/apache-pulsar-$PULSAR_VERSION
# Everything that belongs to one running broker (config, data, logs, pid) lives in RUN_DIR,
# so the unpacked distribution stays read-only and can be shared.
RUN_DIR=${PULSAR_RUN_DIR:-$CACHE_ROOT/run}
PID_FILE=$RUN_DIR/pulsar.pid
LOG_FILE=$RUN_DIR/pulsar.log
CONF_FILE=$RUN_DIR/standalone.conf
DATA_DIR=$RUN_DIR/data

ARTIFACT=org.apache.pulsar:pulsar-server-distribution:$PULSAR_VERSION:tar.gz:bin
TARBALL_NAME=pulsar-server-distribution-$PULSAR_VERSION-bin.tar.gz
TARBALL_URL=$PULSAR_MAVEN_REPO/org/apache/pulsar/pulsar-server-distribution/$PULSAR_VERSION/$TARBALL_NAME

ADMIN_URL=http://127.0.0.1:$PULSAR_WEB_PORT
READY_PATH=/admin/v2/namespaces/public

log() { printf 'pulsar-standalone: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Fetch
# ---------------------------------------------------------------------------------------------

# Downloads with curl: retries transient failures, resumes a partial file (the tarball is
# ~245 MB), and checks the SHA-1 Maven Central publishes next to the artifact.
download_with_curl() {
    local dest=$1 part=$1.part expected= actual attempt rc
    for attempt in 1 2 3; do
        if [ -z "$expected" ]; then
            rc=0
            expected=$(curl -fsSL --retry 3 --retry-delay 2 --retry-connrefused \
                            --connect-timeout 20 --max-time 60 "$TARBALL_URL.sha1" 2>/dev/null) \
                || rc=$?
            expected=${expected%%[[:space:]]*}
            if [ "$rc" -eq 22 ]; then
                # HTTP error (404): the artifact is not in this repository; retrying won't help.
                log "not found: $TARBALL_URL.sha1"
                return 1
            fi
            if [ "$rc" -ne 0 ] || [ -z "$expected" ]; then
                expected=
                log "could not read $TARBALL_URL.sha1 (curl exit $rc, attempt $attempt/3)"
                sleep $((attempt * 3)); continue
            fi
        fi
        # A complete .part left by an interrupted run (killed before the rename) is accepted
        # as is: resuming it would get HTTP 416 from the server.
        if [ -s "$part" ] && [ "$(sha1sum "$part" | awk '{print $1}')" = "$expected" ]; then
            mv -f "$part" "$dest"
            return 0
        fi
        log "downloading $TARBALL_URL (attempt $attempt/3)"
        # -C - resumes the .part file left by an interrupted earlier attempt.
        # --speed-limit/--speed-time abort a stalled transfer instead of hanging forever.
        if ! curl -fL --retry 5 --retry-delay 5 --retry-connrefused --retry-all-errors \
                  --connect-timeout 20 --speed-limit 10240 --speed-time 60 \
                  -C - --progress-bar -o "$part" "$TARBALL_URL"; then
            log "download failed (attempt $attempt/3)"
            sleep $((attempt * 5)); continue
        fi
        actual=$(sha1sum "$part" | awk '{print $1}')
        if [ "$actual" = "$expected" ]; then
            mv -f "$part" "$dest"
            return 0
        fi
        log "checksum mismatch (want $expected, got $actual); discarding and retrying"
        rm -f "$part"
    done
    return 1
}

# Fallback through Maven itself (honours ~/.m2/settings.xml mirrors and proxies).
download_with_mvn() {
    local dest=$1 tmp
    command -v mvn >/dev/null 2>&1 || return 1
    tmp=$(mktemp -d "$DOWNLOAD_DIR/mvn.XXXXXX")
    log "trying mvn dependency:copy -Dartifact=$ARTIFACT"
    # -C: fail on a checksum mismatch instead of only warning.
    if mvn -B -q -C -Dstyle.color=never \
           org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
           -Dartifact="$ARTIFACT" -DoutputDirectory="$tmp" -Dmdep.useBaseVersion=true \
           -Dmaven.wagon.http.retryHandler.count=5 >&2 \
       && [ -s "$tmp/$TARBALL_NAME" ]; then
        mv -f "$tmp/$TARBALL_NAME" "$dest"
        rm -rf "$tmp"
        return 0
    fi
    rm -rf "$tmp"
    return 1
}

# Makes sure $DIST_DIR holds an unpacked distribution. A flock serialises concurrent callers
# (parallel test jobs) so the tarball is downloaded and unpacked exactly once.
fetch() {
    mkdir -p "$DOWNLOAD_DIR"
    [ -x "$DIST_DIR/bin/pulsar" ] && [ -f "$DIST_DIR/.complete" ] && return 0

    exec 9>"$CACHE_ROOT/.fetch.lock"
    flock 9
    if [ -x "$DIST_DIR/bin/pulsar" ] && [ -f "$DIST_DIR/.complete" ]; then
        exec 9>&-; return 0
    fi

    local tarball=$DOWNLOAD_DIR/$TARBALL_NAME start=$SECONDS
    if [ ! -s "$tarball" ]; then
        if ! { command -v curl >/dev/null 2>&1 && download_with_curl "$tarball"; } \
           && ! download_with_mvn "$tarball"; then
            die "could not download Apache Pulsar $PULSAR_VERSION ($ARTIFACT)
  from $TARBALL_URL
  Check network access to Maven Central (or set PULSAR_MAVEN_REPO to a mirror), or place
  $TARBALL_NAME by hand in $DOWNLOAD_DIR/."
        fi
        log "downloaded $TARBALL_NAME in $((SECONDS - start)) s"
    fi

    # Unpack into a temporary directory, then rename: an interrupted unpack never leaves a
    # half-populated $DIST_DIR that a later run would mistake for a good one.
    local tmp
    tmp=$(mktemp -d "$CACHE_ROOT/unpack.XXXXXX")
    log "unpacking into $DIST_DIR"
    if ! tar -xzf "$tarball" -C "$tmp"; then
        rm -rf "$tmp"
        rm -f "$tarball"   # most likely corrupt; next run downloads again
        die "could not unpack $tarball (removed it; run again to re-download)"
    fi
    local top
    top=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    [ -x "$top/bin/pulsar" ] || { rm -rf "$tmp"; die "unexpected tarball layout: no bin/pulsar"; }
    touch "$top/.complete"
    rm -rf "$DIST_DIR"
    mv "$top" "$DIST_DIR"
    rm -rf "$tmp"
    exec 9>&-
    log "Apache Pulsar $PULSAR_VERSION ready in $DIST_DIR"
}


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

# Sets key=value in a Java properties file: replaces an existing (uncommented) line, else
# appends. awk rather than sed so values containing '/', '&' or '|' need no escaping.
set_prop() {
    local file=$1 key=$2 value=$3
    awk -v k="$key" -v v="$value" '
        BEGIN { done = 0 }
        index($0, k "=") == 1 { if (!done) print k "=" v; done = 1; next }
        { print }
        END { if (!done) print k "=" v }
    ' "$file" >"$file.tmp"
    mv -f "$file.tmp" "$file"
}

# Writes $CONF_FILE: the distribution's standalone.conf plus the settings a one-node test
# broker needs. Regenerated on every start, so changing a port variable just works.
write_config() {
    cp "$DIST_DIR/conf/standalone.conf" "$CONF_FILE"
    local line
    while IFS= read -r line; do
        case $line in ''|'#'*) continue ;; esac
        set_prop "$CONF_FILE" "${line%%=*}" "${line#*=}"
    done <<EOF_CONF
bindAddress=127.0.0.1
advertisedAddress=127.0.0.1
brokerServicePort=$PULSAR_BROKER_PORT
webServicePort=$PULSAR_WEB_PORT
# The in-process bookie: with the RocksDB metadata store (the 4.x standalone default) it takes
# a random free port whatever --bookkeeper-port says; bind it to loopback, not 0.0.0.0.
listeningInterface=lo
# One bookie: every ledger has ensemble = write quorum = ack quorum = 1.
managedLedgerDefaultEnsembleSize=1
managedLedgerDefaultWriteQuorum=1
managedLedgerDefaultAckQuorum=1
bookkeeperClientMinNumRacksPerWriteQuorum=1
# A nearly full CI disk must not flip the bookie to read-only.
diskUsageThreshold=0.99
diskUsageWarnThreshold=0.99
# Tests only: no fsync per journal write (durability across power loss is irrelevant here).
journalSyncData=false
# With no fsync to share, the journal's group commit only delays receipts: by default an entry
# waits up to journalMaxGroupWaitMSec (1 ms here) for others to join it even when no other is
# queued. Flushing as the queue empties halved the time a client waits for its answer at one
# span per request, which is bound by the receipt (docs/performance.md, "Observations" 4).
journalFlushWhenQueueEmpty=true
# docs/contracts.md, "Pulsar message format": sluice splits its messages to stay under the 5 MiB default; pin it.
maxMessageSize=5242880
# Tests must still find their topics after a quiet minute.
brokerDeleteInactiveTopicsEnabled=false
allowAutoTopicCreation=true
allowAutoTopicCreationType=non-partitioned
EOF_CONF
}

# ---------------------------------------------------------------------------------------------
# Process helpers
# ---------------------------------------------------------------------------------------------

# True if $1 is a live broker started by this script with this RUN_DIR: the pid must exist
# and its command line must carry our "--config <file>" argument (guards against a recycled
# pid). That argument is there in every phase of the one process: the bash wrapper, then
# bin/pulsar, then the JVM (PulsarStandaloneStarter receives it too).
is_our_broker() {
    local pid=$1
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--config $CONF_FILE "
}

# Pid of our broker, or nothing. Falls back to a search for our exact config path in case
# the pid file was lost (it is unique to this RUN_DIR, so nothing else can match).
broker_pid() {
    local pid=
    [ -f "$PID_FILE" ] && pid=$(cat "$PID_FILE" 2>/dev/null || true)
    if is_our_broker "$pid"; then echo "$pid"; return 0; fi
    for pid in $(pgrep -f -- "--config $CONF_FILE" 2>/dev/null || true); do
        if is_our_broker "$pid"; then echo "$pid"; return 0; fi
    done
    return 1
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True once the admin API answers and the default namespace exists: that is created last
# during standalone start-up, after the metadata store, bookie and broker are all up.
is_ready() {
    curl -fsS --max-time 5 "$ADMIN_URL$READY_PATH" 2>/dev/null | grep -qF '"public/default"'
}

# Serialises start/stop/restart of one RUN_DIR: two test jobs calling 'start' at once must
# not both launch a broker, nor wipe the data of the one the other just started. The second
# caller waits, then finds the broker running and only waits for readiness.
lock_run() {
    mkdir -p "$RUN_DIR"
    exec 8>"$RUN_DIR/.lock"
    flock -w $((PULSAR_READY_TIMEOUT + PULSAR_STOP_TIMEOUT + 600)) 8 \
        || die "timed out waiting for another start/stop of $RUN_DIR to finish"
}

show_log_tail() {
    if [ -f "$LOG_FILE" ]; then
        log "last 80 lines of $LOG_FILE:"
        tail -n 80 "$LOG_FILE" >&2
    else
        log "no log file at $LOG_FILE"
    fi
}

# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------

# $1 = "launched" when called right after launching: then a missing process means it died
# at once (e.g. bad JVM flags) and the log explains why; otherwise the log is from an older run.
cmd_wait() {
    local deadline=$((SECONDS + PULSAR_READY_TIMEOUT)) pid
    if ! pid=$(broker_pid); then
        [ "${1:-}" = launched ] && show_log_tail
        die "broker is not running (nothing to wait for)"
    fi
    log "waiting up to ${PULSAR_READY_TIMEOUT}s for $ADMIN_URL$READY_PATH (pid $pid)"
    while :; do
        if is_ready; then
            log "ready: pulsar://127.0.0.1:$PULSAR_BROKER_PORT, $ADMIN_URL (pid $pid)"
            return 0
        fi
        if ! is_our_broker "$pid"; then
            show_log_tail
            die "broker (pid $pid) exited during start-up; see the log above ($LOG_FILE)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            show_log_tail
            die "broker (pid $pid) not ready after ${PULSAR_READY_TIMEOUT}s (PULSAR_READY_TIMEOUT)"
        fi
        sleep 1
    done
}

# KEEP_DATA=1 (the 'resume' command): start on the data the last run left, as a restarted
# production broker would.
cmd_start() {
    local pid
    if pid=$(broker_pid); then
        log "already running (pid $pid); not restarting (use 'restart' for fresh data)"
        cmd_wait
        return
    fi

    # A foreign process on one of our ports would make the broker fail late and obscurely.
    local port
    for port in "$PULSAR_BROKER_PORT" "$PULSAR_WEB_PORT"; do
        if port_open "$port"; then
            die "port $port on 127.0.0.1 is already in use by another process; stop it or
  choose other ports (PULSAR_BROKER_PORT, PULSAR_WEB_PORT)"
        fi
    done

    command -v java >/dev/null 2>&1 || [ -n "${JAVA_HOME:-}" ] \
        || die "java not found: install a JDK 17+ or set JAVA_HOME"
    fetch

    mkdir -p "$RUN_DIR"
    local wipe=--wipe-data
    if [ "${KEEP_DATA:-0}" = 1 ]; then
        wipe=
        rm -rf "$RUN_DIR/tmp"
    else
        # Fresh data (and GC logs, temp files) on every start so each run sees an empty cluster.
        rm -rf "$DATA_DIR" "$RUN_DIR/logs" "$RUN_DIR/tmp"
    fi
    mkdir -p "$DATA_DIR" "$RUN_DIR/logs" "$RUN_DIR/tmp"
    [ -f "$LOG_FILE" ] && mv -f "$LOG_FILE" "$LOG_FILE.1"
    rm -f "$PID_FILE"
    write_config

    log "starting Apache Pulsar $PULSAR_VERSION standalone (broker $PULSAR_BROKER_PORT, web $PULSAR_WEB_PORT); log: $LOG_FILE"
    # Environment read by bin/pulsar and conf/pulsar_env.sh:
    #  - PULSAR_GC: G1 without -XX:+AlwaysPreTouch (the default ZGC + pre-touch would commit
    #    the whole heap up front and ZGC's multi-mapping triples the RSS that ps reports).
    #  - PULSAR_LOG_APPENDER=Console: everything, including JVM start-up errors, ends up in
    #    the one file we redirect stdout/stderr to.
    #  - PULSAR_EXTRA_OPTS: bin/pulsar's defaults plus java.io.tmpdir in RUN_DIR: RocksDB
    #    unpacks a 12 MB JNI library there per start, left behind if the JVM is SIGKILLed.
    #  - OTEL_SDK_DISABLED: never let OTEL_* variables of the caller (which may point at
    #    sluice itself) make the broker export its own telemetry.
    # setsid: the broker gets its own session, so it outlives the calling shell and a ^C
    # aimed at a test run does not kill it halfway; 'stop' ends it. The inner shell writes
    # its own pid before exec'ing bin/pulsar, which exec's java: the pid is the JVM's.
    (
        cd "$RUN_DIR"
        exec 8>&- 9>&-   # the JVM must not inherit (and so hold forever) our lock files
        export PULSAR_MEM
        export PULSAR_GC=${PULSAR_GC:-"-XX:+UseG1GC -XX:MaxGCPauseMillis=10 -XX:+ParallelRefProcEnabled -XX:+PerfDisableSharedMem"}
        export PULSAR_LOG_DIR=$RUN_DIR/logs
        export PULSAR_EXTRA_OPTS="${PULSAR_EXTRA_OPTS:--Dpulsar.allocator.exit_on_oom=true -Dio.netty.recycler.maxCapacityPerThread=4096} -Djava.io.tmpdir=$RUN_DIR/tmp"
        export PULSAR_LOG_APPENDER=Console
        export PULSAR_LOG_LEVEL=${PULSAR_LOG_LEVEL:-info}
        export PULSAR_STANDALONE_CONF=$CONF_FILE
        export OTEL_SDK_DISABLED=true
        exec setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
            "$DIST_DIR/bin/pulsar" standalone \
                --config "$CONF_FILE" \
                --advertised-address 127.0.0.1 \
                --no-functions-worker --no-stream-storage \
                $wipe \
                --bookkeeper-dir "$DATA_DIR/bookkeeper" \
                --metadata-dir "$DATA_DIR/metadata" \
            </dev/null >>"$LOG_FILE" 2>&1
    ) &

    # The pid file appears as soon as the child runs; give it a few seconds.
    local i
    for i in $(seq 1 50); do
        [ -s "$PID_FILE" ] && break
        sleep 0.1
    done
    [ -s "$PID_FILE" ] || { show_log_tail; die "broker process did not start"; }

    if ! (cmd_wait launched); then
        # Never leave a half-started broker behind: a failed start cleans up after itself.
        log "stopping the broker that did not become ready"
        cmd_stop || true
        exit 1
    fi
}

cmd_stop() {
    local pid deadline
    if ! pid=$(broker_pid); then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    log "stopping broker (pid $pid): SIGTERM, up to ${PULSAR_STOP_TIMEOUT}s"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + PULSAR_STOP_TIMEOUT))
    while is_our_broker "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.5
    done
    if is_our_broker "$pid"; then
        log "still alive after ${PULSAR_STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 1 20); do is_our_broker "$pid" || break; sleep 0.25; done
        is_our_broker "$pid" && die "pid $pid survived SIGKILL"
    fi
    rm -f "$PID_FILE"
    log "stopped"
}

cmd_status() {
    local pid
    if ! pid=$(broker_pid); then
        log "not running"
        return 1
    fi
    if is_ready; then
        log "running and ready (pid $pid): pulsar://127.0.0.1:$PULSAR_BROKER_PORT, $ADMIN_URL"
        return 0
    fi
    log "running (pid $pid) but not ready yet"
    return 2
}

cmd_logs() {
    local follow= lines=200 arg
    for arg in "$@"; do
        case $arg in
            -f|--follow) follow=1 ;;
            ''|*[!0-9]*) die "logs: unknown argument '$arg' (use: logs [-f] [N])" ;;
            *) lines=$arg ;;
        esac
    done
    [ -f "$LOG_FILE" ] || die "no log file at $LOG_FILE (never started?)"
    if [ -n "$follow" ]; then
        exec tail -n "$lines" -F "$LOG_FILE"
    fi
    tail -n "$lines" "$LOG_FILE"
}

# Prints settings for other scripts: eval "$(deploy/pulsar/standalone.sh env)"
cmd_env() {
    printf 'export PULSAR_HOME=%q\n' "$DIST_DIR"
    printf 'export PULSAR_SERVICE_URL=%q\n' "pulsar://127.0.0.1:$PULSAR_BROKER_PORT"
    printf 'export PULSAR_ADMIN_URL=%q\n' "$ADMIN_URL"
}

main() {
    local cmd=${1:-}
    [ $# -gt 0 ] && shift
    case $cmd in
        fetch) fetch ;;
        start) lock_run; cmd_start ;;
        stop) lock_run; cmd_stop ;;
        restart) lock_run; cmd_stop; cmd_start ;;
        resume) lock_run; KEEP_DATA=1 cmd_start ;;
        status) cmd_status ;;
        wait) cmd_wait ;;
        logs) cmd_logs "$@" ;;
        env) cmd_env ;;
        *) die "usage: $0 fetch|start|stop|restart|resume|status|wait|logs [-f] [N]|env" ;;
    esac
}

main "$@"
