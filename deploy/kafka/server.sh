#!/usr/bin/env bash
# A local Apache Kafka broker for Sluice's Kafka buffer: one node in KRaft mode (broker and
# controller in one JVM), without Docker and without a Kafka distribution tarball. The server
# jars and their dependencies are resolved from Maven Central with `mvn` (pinned version,
# cached in .cache/kafka/lib-<version>) and run with `java` (17+) directly on that classpath.
#
#   deploy/kafka/server.sh fetch          resolve + download the jars only (cached)
#   deploy/kafka/server.sh start          fetch, format fresh storage, start, wait until ready
#   deploy/kafka/server.sh resume         start again on the data of the last run (the
#                                         broker-restart test: nothing is wiped or formatted)
#   deploy/kafka/server.sh restart        stop + start (fresh data)
#   deploy/kafka/server.sh wait           wait until a started broker is ready
#   deploy/kafka/server.sh status         exit 0 only if running AND ready
#   deploy/kafka/server.sh stop           SIGTERM, up to 30 s, then SIGKILL; idempotent
#   deploy/kafka/server.sh logs [-f] [N]  last N (default 200) lines of the broker log
#   deploy/kafka/server.sh topic NAME     create a one-partition topic unless it exists
#   deploy/kafka/server.sh env            print the variables tests need (eval-able):
#                                         eval "$(deploy/kafka/server.sh env)"
#
# Listeners, all on 127.0.0.1 (ports overridable from the environment):
#   PLAINTEXT       KAFKA_PORT            9092  (also the inter-broker listener)
#   CONTROLLER      KAFKA_CONTROLLER_PORT 9093  (KRaft quorum only; not for clients)
#   SASL_PLAINTEXT  KAFKA_SASL_PORT       9094  PLAIN, SCRAM-SHA-256, SCRAM-SHA-512;
#                                               user "sluice", password "sluice-secret"
#   SSL             KAFKA_SSL_PORT        9095  server certificate for 127.0.0.1/localhost,
#                                               signed by a test CA (PEM, made with openssl)
#
# Everything of one broker lives in ${SLUICE_CACHE:-.cache}/kafka/run: server.properties,
# data/, certs/ (ca.pem is the trust anchor for the SSL listener), kafka.log (broker),
# format.log (storage formatting), kafka.pid.
# The certificates are kept across starts and regenerated only when missing or expiring.
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Settings (all overridable from the environment)
# ---------------------------------------------------------------------------------------------
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

KAFKA_VERSION=${KAFKA_VERSION:-4.4.0}
KAFKA_SCALA_VERSION=${KAFKA_SCALA_VERSION:-2.13}
# kafka-server 4.4.0 depends on log4j-core 2.25.5 but nothing binds slf4j (1.7.x, which the
# broker logs through) to it: the distribution ships log4j-slf4j-impl for that; so do we.
KAFKA_LOG4J_VERSION=${KAFKA_LOG4J_VERSION:-2.25.5}
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.6.1

KAFKA_HOST=127.0.0.1
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
KAFKA_SASL_PORT=${KAFKA_SASL_PORT:-9094}
KAFKA_SSL_PORT=${KAFKA_SSL_PORT:-9095}
KAFKA_SASL_USER=${KAFKA_SASL_USER:-sluice}
KAFKA_SASL_PASSWORD=${KAFKA_SASL_PASSWORD:-sluice-secret}
KAFKA_READY_TIMEOUT=${KAFKA_READY_TIMEOUT:-120}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:-"-Xms512m -Xmx1g"}
# bin/kafka-run-class.sh's defaults, minus the GC log; PerfDisableSharedMem keeps the JVM from
# writing hsperfdata (and stalling on it) under /tmp.
KAFKA_JVM_PERFORMANCE_OPTS=${KAFKA_JVM_PERFORMANCE_OPTS:-"-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:+PerfDisableSharedMem -Djava.awt.headless=true"}

CACHE_ROOT=${SLUICE_CACHE:-$REPO_ROOT/.cache}/kafka
LIB_DIR=$CACHE_ROOT/lib-$KAFKA_VERSION
RUN_DIR=${KAFKA_RUN_DIR:-$CACHE_ROOT/run}
DATA_DIR=$RUN_DIR/data
CERT_DIR=$RUN_DIR/certs
PID_FILE=$RUN_DIR/kafka.pid
LOG_FILE=$RUN_DIR/kafka.log
FORMAT_LOG=$RUN_DIR/format.log
CONF_FILE=$RUN_DIR/server.properties
LOG4J_CONF=$RUN_DIR/log4j2.properties
TOOLS_LOG4J_CONF=$RUN_DIR/tools-log4j2.properties

# Main classes (all in the jars of $LIB_DIR).
MAIN_SERVER=kafka.Kafka
MAIN_STORAGE=kafka.tools.StorageTool
MAIN_TOPICS=org.apache.kafka.tools.TopicCommand

# Logged by the broker once it has joined the quorum, caught up with the metadata log and
# opened its listeners (kafka.server.KafkaBroker.STARTED_MESSAGE).
READY_MESSAGE="Kafka Server started"

log() { printf 'kafka-server: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

java_bin() {
    if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
        echo "$JAVA_HOME/bin/java"
    else
        command -v java || die "java not found: install a JDK 17+ or set JAVA_HOME"
    fi
}

# Kafka 4.x brokers need Java 17 or newer.
check_java() {
    local java version major
    java=$(java_bin)
    version=$("$java" -version 2>&1 | awk -F'"' '/version/ { print $2; exit }')
    major=${version%%.*}
    case $major in ''|*[!0-9]*) die "could not read the version of $java" ;; esac
    [ "$major" -ge 17 ] || die "Kafka $KAFKA_VERSION needs Java 17+, $java is $version"
}

# ---------------------------------------------------------------------------------------------
# Fetch
# ---------------------------------------------------------------------------------------------

write_pom() {
    cat >"$1" <<EOF_POM
<?xml version="1.0" encoding="UTF-8"?>
<!-- Throwaway: only resolves the Kafka server classpath (deploy/kafka/server.sh). -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.sluice</groupId>
  <artifactId>kafka-server-classpath</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_$KAFKA_SCALA_VERSION</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <!-- The CLI tools (topics, console producer/consumer, api versions) for tests and by-hand
         checks. Without Kafka Connect's runtime (Jetty, Jersey...): no tool we use needs it. -->
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
      <exclusions>
        <exclusion>
          <groupId>org.apache.kafka</groupId>
          <artifactId>connect-runtime</artifactId>
        </exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>$KAFKA_LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$KAFKA_LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF_POM
}

# Makes sure $LIB_DIR holds the complete classpath. A flock serialises concurrent callers
# (parallel test jobs); the jars are copied into a temporary directory that is renamed when
# complete, so an interrupted fetch never leaves a half-filled $LIB_DIR behind.
fetch() {
    [ -f "$LIB_DIR/.complete" ] && return 0
    mkdir -p "$CACHE_ROOT"
    exec 9>"$CACHE_ROOT/.fetch.lock"
    flock 9
    if [ -f "$LIB_DIR/.complete" ]; then
        exec 9>&-; return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn (Apache Maven) is needed to fetch Kafka $KAFKA_VERSION"

    local tmp start=$SECONDS
    tmp=$(mktemp -d "$CACHE_ROOT/fetch.XXXXXX")
    write_pom "$tmp/pom.xml"
    log "resolving org.apache.kafka:kafka_$KAFKA_SCALA_VERSION:$KAFKA_VERSION and its dependencies from Maven Central"
    # -C: fail on a checksum mismatch instead of only warning. The local repository is the
    # default (~/.m2/repository), so other Maven builds share the download. sed drops the
    # colour resets Maven 3.8 prints even in batch mode (pipefail keeps mvn's exit status).
    if ! mvn -B -q -C -Dstyle.color=never -f "$tmp/pom.xml" \
             "$DEPENDENCY_PLUGIN:copy-dependencies" \
             -DincludeScope=runtime -DoutputDirectory="$tmp/lib" \
             -Dmaven.wagon.http.retryHandler.count=5 2>&1 \
         | sed -e 's/\x1b\[[0-9;]*m//g' -e '/^[[:space:]]*$/d' >&2; then
        rm -rf "$tmp"
        die "could not resolve Kafka $KAFKA_VERSION with Maven (network access to Maven Central?
  mirrors and proxies come from ~/.m2/settings.xml; KAFKA_VERSION picks another release)"
    fi
    local jar
    for jar in "kafka_$KAFKA_SCALA_VERSION-$KAFKA_VERSION.jar" "kafka-tools-$KAFKA_VERSION.jar" \
               "log4j-slf4j-impl-$KAFKA_LOG4J_VERSION.jar"; do
        [ -s "$tmp/lib/$jar" ] || { rm -rf "$tmp"; die "Maven did not provide $jar"; }
    done
    touch "$tmp/lib/.complete"
    rm -rf "$LIB_DIR"
    mv "$tmp/lib" "$LIB_DIR"
    rm -rf "$tmp"
    exec 9>&-
    log "Kafka $KAFKA_VERSION classpath ready in $LIB_DIR ($(find "$LIB_DIR" -name '*.jar' | wc -l) jars, $((SECONDS - start)) s)"
}

# ---------------------------------------------------------------------------------------------
# TLS material
# ---------------------------------------------------------------------------------------------

# A test CA and a server certificate for 127.0.0.1/localhost (both as SAN), PEM. Kept while
# valid for another day, so a client that read ca.pem once keeps trusting restarted brokers.
#   ca.pem                 the CA certificate: the trust anchor clients need
#   server.pem/server.key  the server certificate and its (unencrypted PKCS#8) key
#   server-keystore.pem    key + certificate chain: the broker's ssl.keystore (type PEM)
ensure_certs() {
    if [ -s "$CERT_DIR/ca.pem" ] && [ -s "$CERT_DIR/server-keystore.pem" ] \
       && openssl x509 -checkend 86400 -noout -in "$CERT_DIR/server.pem" >/dev/null 2>&1 \
       && openssl x509 -checkend 86400 -noout -in "$CERT_DIR/ca.pem" >/dev/null 2>&1; then
        return 0
    fi
    command -v openssl >/dev/null 2>&1 || die "openssl is needed to make the SSL listener's certificates"
    log "generating a test CA and a server certificate in $CERT_DIR"
    local tmp
    tmp=$(mktemp -d "$RUN_DIR/certs.XXXXXX")
    # Our own config, so the system openssl.cnf cannot add or clash with extensions.
    cat >"$tmp/openssl.cnf" <<'EOF_CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = Sluice Kafka test CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF_CNF
    if ! (
        cd "$tmp"
        openssl req -x509 -config openssl.cnf -extensions v3_ca -newkey rsa:2048 -nodes \
            -keyout ca.key -out ca.pem -days 3650 -subj "/CN=Sluice Kafka test CA"
        openssl req -new -config openssl.cnf -newkey rsa:2048 -nodes \
            -keyout server.key -out server.csr -subj "/CN=localhost"
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -CAserial ca.srl -days 825 -sha256 -extfile openssl.cnf -extensions v3_server \
            -out server.pem
        openssl verify -CAfile ca.pem server.pem
        cat server.key server.pem ca.pem >server-keystore.pem
        chmod 600 ca.key server.key server-keystore.pem
        rm -f server.csr ca.srl openssl.cnf
    ) >"$tmp/openssl.log" 2>&1; then
        cat "$tmp/openssl.log" >&2
        rm -rf "$tmp"
        die "could not generate the certificates"
    fi
    rm -f "$tmp/openssl.log"
    rm -rf "$CERT_DIR"
    mv "$tmp" "$CERT_DIR"
}

# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

# The user name and password end up inside a JAAS string and a --add-scram argument; keep
# them to characters that need no quoting there.
check_credentials() {
    local v
    for v in "$KAFKA_SASL_USER" "$KAFKA_SASL_PASSWORD"; do
        case $v in
            ''|*[!A-Za-z0-9._-]*) die "KAFKA_SASL_USER/KAFKA_SASL_PASSWORD may only hold A-Z a-z 0-9 . _ -" ;;
        esac
    done
}

# Regenerated on every start, so changing a port variable just works (also for 'resume').
write_config() {
    cat >"$CONF_FILE" <<EOF_CONF
# Written by deploy/kafka/server.sh on every start; edits are lost.
# One node, KRaft: broker and controller in one process, a static one-voter quorum.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER

listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT,SASL_PLAINTEXT://$KAFKA_HOST:$KAFKA_SASL_PORT,SSL://$KAFKA_HOST:$KAFKA_SSL_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,SASL_PLAINTEXT://$KAFKA_HOST:$KAFKA_SASL_PORT,SSL://$KAFKA_HOST:$KAFKA_SSL_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL
inter.broker.listener.name=PLAINTEXT

# SASL_PLAINTEXT: PLAIN checks the user_<name> entries of its JAAS config; the SCRAM
# credentials are in the metadata log (added by 'kafka-storage format --add-scram').
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$KAFKA_SASL_PASSWORD";
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;

# SSL: server authentication only; key and certificate chain in one PEM file.
listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=$CERT_DIR/server-keystore.pem
listener.name.ssl.ssl.client.auth=none

log.dirs=$DATA_DIR

# A one-node test broker: replication factor 1 everywhere, few internal partitions (faster
# first consumer group / transaction), no rebalance delay for either group protocol (the
# classic one's initial delay; KIP-848's batching of assignment updates, 1 s by default since
# Kafka 4.4, which a new tenant topic otherwise waits out: docs/performance.md, "Observations"
# 10). Sluice creates its topics itself.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.consumer.assignment.interval.ms=0
# A member that died (the SIGKILL tests) gives up its partitions after 10 s instead of 45 s
# (KIP-848 groups; the classic protocol's client-side session.timeout.ms as well).
group.consumer.min.session.timeout.ms=6000
group.consumer.session.timeout.ms=10000
group.consumer.heartbeat.interval.ms=2000
group.consumer.min.heartbeat.interval.ms=1000
auto.create.topics.enable=false
delete.topic.enable=true
EOF_CONF

    cat >"$LOG4J_CONF" <<'EOF_LOG4J'
# Broker log: everything to stdout, which deploy/kafka/server.sh sends to kafka.log.
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.target = SYSTEM_OUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF_LOG4J

    cat >"$TOOLS_LOG4J_CONF" <<'EOF_LOG4J'
# Command-line tools (kafka-storage format, ...): warnings and errors only, on stderr.
status = warn
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
EOF_LOG4J
}

# A fresh cluster id: 16 random bytes, URL-safe base64 without padding (Kafka's Uuid format;
# what 'kafka-storage random-uuid' prints, without starting a JVM for it). Like Kafka's own,
# never one starting with '-': the format command would take it for an option (1 in 64).
random_cluster_id() {
    local id=-
    while [ "${id#-}" != "$id" ]; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    done
    printf '%s\n' "$id"
}

format_storage() {
    local java cluster_id
    java=$(java_bin)
    cluster_id=$(random_cluster_id)
    rm -rf "$DATA_DIR"
    mkdir -p "$DATA_DIR"
    log "formatting $DATA_DIR (cluster id $cluster_id)"
    if ! "$java" -Xmx256m -XX:+PerfDisableSharedMem \
            -Dlog4j2.configurationFile="$TOOLS_LOG4J_CONF" -cp "$LIB_DIR/*" \
            "$MAIN_STORAGE" format --config "$CONF_FILE" --cluster-id "$cluster_id" \
            --add-scram "SCRAM-SHA-256=[name=$KAFKA_SASL_USER,password=$KAFKA_SASL_PASSWORD]" \
            --add-scram "SCRAM-SHA-512=[name=$KAFKA_SASL_USER,password=$KAFKA_SASL_PASSWORD]" \
            </dev/null >"$FORMAT_LOG" 2>&1; then
        log "last lines of $FORMAT_LOG:"
        tail -n 30 "$FORMAT_LOG" >&2
        die "formatting the storage failed; see the output above ($FORMAT_LOG)"
    fi
}

# ---------------------------------------------------------------------------------------------
# Process helpers
# ---------------------------------------------------------------------------------------------

# True if $1 is a live broker started by this script with this RUN_DIR: the pid must exist
# and its command line must end in "kafka.Kafka <our config file>" (guards against a recycled
# pid). The pid in $PID_FILE is the JVM's: the launcher exec's java.
is_our_broker() {
    local pid=$1
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$MAIN_SERVER $CONF_FILE "
}

# Pid of our broker, or nothing. Falls back to a search for our exact config path in case
# the pid file was lost (it is unique to this RUN_DIR, so nothing else can match).
broker_pid() {
    local pid=
    [ -f "$PID_FILE" ] && pid=$(cat "$PID_FILE" 2>/dev/null || true)
    if is_our_broker "$pid"; then echo "$pid"; return 0; fi
    for pid in $(pgrep -f -- "$MAIN_SERVER $CONF_FILE" 2>/dev/null || true); do
        if is_our_broker "$pid"; then echo "$pid"; return 0; fi
    done
    return 1
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/$KAFKA_HOST/$1") 2>/dev/null
}

# Ready = the broker logged that it started (this run's log: it is rotated at every start) and
# every client listener accepts connections.
is_ready() {
    grep -qF "$READY_MESSAGE" "$LOG_FILE" 2>/dev/null || return 1
    local port
    for port in "$KAFKA_PORT" "$KAFKA_SASL_PORT" "$KAFKA_SSL_PORT"; do
        port_open "$port" || return 1
    done
}

# Serialises start/stop/restart of one RUN_DIR: two test jobs calling 'start' at once must
# not both launch a broker, nor wipe the data of the one the other just started. The second
# caller waits, then finds the broker running and only waits for readiness.
lock_run() {
    mkdir -p "$RUN_DIR"
    exec 8>"$RUN_DIR/.lock"
    flock -w $((KAFKA_READY_TIMEOUT + KAFKA_STOP_TIMEOUT + 600)) 8 \
        || die "timed out waiting for another start/stop of $RUN_DIR to finish"
}

show_log_tail() {
    if [ -f "$LOG_FILE" ]; then
        log "last 60 lines of $LOG_FILE:"
        tail -n 60 "$LOG_FILE" >&2
    else
        log "no log file at $LOG_FILE"
    fi
}

describe() {
    echo "PLAINTEXT $KAFKA_HOST:$KAFKA_PORT, SASL_PLAINTEXT $KAFKA_HOST:$KAFKA_SASL_PORT, SSL $KAFKA_HOST:$KAFKA_SSL_PORT"
}

# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------

# $1 = "launched" when called right after launching: then a missing process means it died
# at once (e.g. bad JVM flags) and the log explains why; otherwise the log is from an older run.
cmd_wait() {
    local deadline=$((SECONDS + KAFKA_READY_TIMEOUT)) pid
    if ! pid=$(broker_pid); then
        [ "${1:-}" = launched ] && show_log_tail
        die "broker is not running (nothing to wait for)"
    fi
    log "waiting up to ${KAFKA_READY_TIMEOUT}s for the broker (pid $pid)"
    while :; do
        if is_ready; then
            log "ready: $(describe) (pid $pid)"
            return 0
        fi
        if ! is_our_broker "$pid"; then
            show_log_tail
            die "broker (pid $pid) exited during start-up; see the log above ($LOG_FILE)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            show_log_tail
            die "broker (pid $pid) not ready after ${KAFKA_READY_TIMEOUT}s (KAFKA_READY_TIMEOUT)"
        fi
        sleep 0.25
    done
}

# KEEP_DATA=1 (the 'resume' command): start on the data the last run left, as a restarted
# production broker would; no formatting.
cmd_start() {
    local pid
    if pid=$(broker_pid); then
        log "already running (pid $pid); not restarting (use 'restart' for fresh data)"
        cmd_wait
        return
    fi

    # A foreign process on one of our ports would make the broker fail late and obscurely.
    local port
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SASL_PORT" "$KAFKA_SSL_PORT"; do
        if port_open "$port"; then
            die "port $port on $KAFKA_HOST is already in use by another process; stop it or choose
  other ports (KAFKA_PORT, KAFKA_CONTROLLER_PORT, KAFKA_SASL_PORT, KAFKA_SSL_PORT)"
        fi
    done
    if [ "${KEEP_DATA:-0}" = 1 ] && [ ! -f "$DATA_DIR/meta.properties" ]; then
        die "nothing to resume: no formatted data in $DATA_DIR (use 'start')"
    fi

    check_credentials
    check_java
    fetch

    mkdir -p "$RUN_DIR"
    ensure_certs
    [ -f "$LOG_FILE" ] && mv -f "$LOG_FILE" "$LOG_FILE.1"
    rm -f "$PID_FILE"
    rm -rf "$RUN_DIR/tmp"
    mkdir -p "$RUN_DIR/tmp"
    write_config
    if [ "${KEEP_DATA:-0}" != 1 ]; then
        format_storage
    fi

    local java heap perf
    java=$(java_bin)
    read -r -a heap <<<"$KAFKA_HEAP_OPTS"
    read -r -a perf <<<"$KAFKA_JVM_PERFORMANCE_OPTS"
    log "starting Apache Kafka $KAFKA_VERSION (KRaft, one node): $(describe); log: $LOG_FILE"
    # setsid: the broker gets its own session, so it outlives the calling shell and a ^C
    # aimed at a test run does not kill it halfway; 'stop' ends it. The inner shell writes
    # its own pid before exec'ing java: the pid is the JVM's.
    # java.io.tmpdir in RUN_DIR: snappy/zstd unpack their JNI libraries there.
    # OTEL_SDK_DISABLED: never let OTEL_* variables of the caller make the broker export.
    (
        cd "$RUN_DIR"
        exec 8>&- 9>&-   # the JVM must not inherit (and so hold forever) our lock files
        export OTEL_SDK_DISABLED=true
        exec setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
            "$java" "${heap[@]}" "${perf[@]}" \
                -Djava.io.tmpdir="$RUN_DIR/tmp" \
                -Dlog4j2.configurationFile="$LOG4J_CONF" \
                -cp "$LIB_DIR/*" "$MAIN_SERVER" "$CONF_FILE" \
            </dev/null >>"$LOG_FILE" 2>&1
    ) &

    # The pid file appears as soon as the child runs; give it a few seconds.
    for _ in $(seq 1 50); do
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
    log "stopping broker (pid $pid): SIGTERM, up to ${KAFKA_STOP_TIMEOUT}s"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
    while is_our_broker "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.25
    done
    if is_our_broker "$pid"; then
        log "still alive after ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
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
        log "running and ready (pid $pid): $(describe)"
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

# Prints settings for tests: eval "$(deploy/kafka/server.sh env)"
cmd_env() {
    printf 'export SLUICE_KAFKA_BROKERS=%q\n' "$KAFKA_HOST:$KAFKA_PORT"
    printf 'export SLUICE_KAFKA_SASL_BROKERS=%q\n' "$KAFKA_HOST:$KAFKA_SASL_PORT"
    printf 'export SLUICE_KAFKA_SASL_USER=%q\n' "$KAFKA_SASL_USER"
    printf 'export SLUICE_KAFKA_SASL_PASSWORD=%q\n' "$KAFKA_SASL_PASSWORD"
    printf 'export SLUICE_KAFKA_TLS_BROKERS=%q\n' "$KAFKA_HOST:$KAFKA_SSL_PORT"
    printf 'export SLUICE_KAFKA_TLS_CA=%q\n' "$CERT_DIR/ca.pem"
}

# Creates a topic of one partition unless it exists: for peers that do not create their own
# (the Collector's kafka exporter in `make bench`; the broker does not auto-create topics).
cmd_topic() {
    local name=${1:?usage: $0 topic NAME}
    cmd_status >/dev/null 2>&1 || die "no broker is running"
    "$(java_bin)" -Xmx256m -XX:+PerfDisableSharedMem \
        -Dlog4j2.configurationFile="$TOOLS_LOG4J_CONF" -cp "$LIB_DIR/*" "$MAIN_TOPICS" \
        --bootstrap-server "$KAFKA_HOST:$KAFKA_PORT" --create --if-not-exists \
        --topic "$name" --partitions 1 --replication-factor 1 </dev/null >/dev/null ||
        die "cannot create the topic $name"
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
        topic) cmd_topic "$@" ;;
        *) die "usage: $0 fetch|start|resume|restart|stop|status|wait|logs [-f] [N]|env|topic NAME" ;;
    esac
}

main "$@"
