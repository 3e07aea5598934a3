#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for tests: tests/slurm/cluster.sh up|down|status
#
#   up      install the Debian packages when missing (munge, slurm, slurmdbd, MariaDB), write
#           /etc/slurm/{slurm,gres,slurmdbd}.conf, start munged, mariadbd, slurmdbd, slurmctld and slurmd by
#           hand (no systemd) and wait until the node is idle. Idempotent.
#   down    stop every daemon that `up` started (by the pids it recorded), remove the config files it wrote.
#   status  the daemons `up` started, sinfo and squeue.
#
# The node "localhost" has one fake GPU (gres gpu, File=/dev/null) and two partitions: cpu (default) and gpu.
# It advertises 16 CPUs and 64 GB (SlurmdParameters=config_overrides) so the per-rule resources of
# profiles/cluster fit; nothing enforces them. Jobs are accounted in slurmdbd, so `sacct` works.
# State, logs and the database live in $VOXFLOW_SLURM_DIR (default /tmp/voxflow-slurm).
# Needs root. Exit codes: 0 ok, 1 failure, 3 the packages cannot be installed (tests skip on 3).
set -euo pipefail

DIR=${VOXFLOW_SLURM_DIR:-/tmp/voxflow-slurm}
PIDS=$DIR/pids                   # one file per daemon this script started: <name> containing its pid
MARK="# written by voxflow tests/slurm/cluster.sh"
PACKAGES=(munge slurm-client slurmctld slurmd slurmdbd mariadb-server)
NODE_CPUS=16
NODE_MEM_MB=64000
WAIT_S=60

say() { echo "cluster.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "needs root (it installs packages and writes /etc/slurm)"; }

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$DIR/apt.log" 2>&1; then
        say "apt-get install ${missing[*]} failed (see $DIR/apt.log):"
        tail -5 "$DIR/apt.log" >&2
        exit 3
    fi
}

# A config file we may overwrite: absent, or written by us.
ours_or_absent() { [ ! -e "$1" ] || head -1 "$1" | grep -qF "$MARK"; }

write_configs() {
    local f
    for f in /etc/slurm/slurm.conf /etc/slurm/gres.conf /etc/slurm/slurmdbd.conf; do
        ours_or_absent "$f" || die "$f exists and was not written by this script; refusing to overwrite it"
    done
    mkdir -p /etc/slurm "$DIR"/{state,spool,log}
    # The config must be at /etc/slurm/slurm.conf: the slurm-jobstep executor strips SLURM_CONF before its srun.
    cat >/etc/slurm/slurm.conf <<EOF
$MARK
ClusterName=voxflow
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
TaskPluginParam=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$NODE_CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$NODE_CPUS ThreadsPerCore=1 RealMemory=$NODE_MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
EOF
    # A GPU GRES without a device file drains the node; /dev/null stands in for the device.
    printf '%s\nNodeName=localhost Name=gpu File=/dev/null\n' "$MARK" >/etc/slurm/gres.conf
    cat >/etc/slurm/slurmdbd.conf <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$DIR/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
    chmod 600 /etc/slurm/slurmdbd.conf
}

alive() { [ -f "$PIDS/$1" ] && kill -0 "$(cat "$PIDS/$1")" 2>/dev/null; }

wait_for() {  # wait_for DESCRIPTION LOGFILE COMMAND...: retry COMMAND for WAIT_S seconds
    local what=$1 log=$2 i
    shift 2
    for ((i = 0; i < WAIT_S * 5; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    say "$what did not come up within ${WAIT_S}s; last lines of $log:"
    tail -20 "$log" >&2 || true
    exit 1
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        alive munged || say "using the munged that is already running (not ours; down leaves it)"
        return 0
    fi
    [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
        chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    runuser -u munge -- /usr/sbin/munged
    wait_for munged /var/log/munge/munged.log test -s /run/munge/munged.pid
    cp /run/munge/munged.pid "$PIDS/munged"
    wait_for munged /var/log/munge/munged.log sh -c 'munge -n </dev/null | unmunge'
}

start_mariadb() {
    alive mariadbd && return 0
    [ -S /run/mysqld/mysqld.sock ] && mysqladmin --protocol=socket ping >/dev/null 2>&1 &&
        die "a MariaDB/MySQL server not started by this script owns /run/mysqld/mysqld.sock; stop it first"
    if [ ! -d "$DIR/mysql/mysql" ]; then
        mkdir -p "$DIR/mysql"
        chown mysql:mysql "$DIR/mysql"
        mariadb-install-db --no-defaults --user=mysql --datadir="$DIR/mysql" --skip-test-db \
            >"$DIR/log/mariadb-install.log" 2>&1 || { tail "$DIR/log/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    mkdir -p /run/mysqld "$DIR/mysql-run"
    chown mysql:mysql /run/mysqld "$DIR/mysql-run"   # mariadbd (user mysql) writes its pid and log there
    # No network: slurmdbd (root) connects through the default socket with unix_socket authentication.
    setsid mariadbd --no-defaults --user=mysql --datadir="$DIR/mysql" --skip-networking \
        --socket=/run/mysqld/mysqld.sock --pid-file="$DIR/mysql-run/mariadbd.pid" --log-error="$DIR/mysql-run/mariadbd.log" \
        </dev/null >/dev/null 2>&1 &
    echo $! >"$PIDS/mariadbd"
    wait_for mariadbd "$DIR/mysql-run/mariadbd.log" mysqladmin --protocol=socket ping
}

start_slurm_daemon() {  # start_slurm_daemon NAME PIDFILE READY-COMMAND... (the daemon forks; its pid file tells)
    local name=$1 pidfile=$2
    shift 2
    alive "$name" && return 0
    rm -f "$pidfile"
    case $name in
        slurmdbd) slurmdbd ;;
        slurmctld) slurmctld -i ;;  # -i: ignore state left by a crashed earlier run
        slurmd) slurmd -N localhost ;;
    esac
    wait_for "$name" "$DIR/log/$name.log" test -s "$pidfile"
    cp "$pidfile" "$PIDS/$name"
    wait_for "$name" "$DIR/log/$name.log" "$@"
}

node_state() { sinfo -h -n localhost -o %T 2>/dev/null | head -1; }

wait_idle() {
    local i state=""
    for ((i = 0; i < WAIT_S * 2; i++)); do
        state=$(node_state)
        case $state in
            idle | mixed | allocated) return 0 ;;
            drain* | down*) [ "$i" -gt 10 ] && break ;;
        esac
        sleep 0.5
    done
    say "node localhost is '${state:-unknown}', not idle:"
    sinfo -R >&2 || true
    tail -20 "$DIR/log/slurmd.log" "$DIR/log/slurmctld.log" >&2 || true
    exit 1
}

up() {
    need_root
    mkdir -p "$DIR" "$PIDS"
    install_packages
    write_configs
    start_munge
    start_mariadb
    start_slurm_daemon slurmdbd "$DIR/slurmdbd.pid" sacctmgr -n list cluster
    start_slurm_daemon slurmctld "$DIR/slurmctld.pid" scontrol ping
    start_slurm_daemon slurmd "$DIR/slurmd.pid" true
    wait_idle
    # Register the cluster in the accounting database when slurmctld has not done it yet (first start).
    sacctmgr -n list cluster format=cluster | grep -qw voxflow || sacctmgr -i add cluster voxflow >/dev/null
    say "up: partitions $(sinfo -h -o %P | tr '\n' ' ')node localhost $(node_state), gres $(sinfo -h -o %G)"
}

stop_pids() {  # stop_pids NAME...: TERM the recorded pids together, wait up to 10 s, then KILL the rest
    local name pid i pids=()
    for name in "$@"; do
        [ -f "$PIDS/$name" ] || continue
        pid=$(cat "$PIDS/$name")
        kill -TERM "$pid" 2>/dev/null && pids+=("$name:$pid")
        rm -f "$PIDS/$name"
    done
    for ((i = 0; i < 100; i++)); do
        local left=()
        for name in "${pids[@]}"; do kill -0 "${name#*:}" 2>/dev/null && left+=("$name"); done
        pids=("${left[@]}")
        [ ${#pids[@]} -eq 0 ] && return 0
        sleep 0.1
    done
    for name in "${pids[@]}"; do say "${name%:*} (${name#*:}) ignored TERM; killing it"; kill -KILL "${name#*:}" 2>/dev/null || true; done
}

down() {
    need_root
    # Jobs still running would outlive slurmd; cancel them while slurmctld is there to do it.
    if alive slurmctld; then scancel --quiet --user=root 2>/dev/null || true; sleep 1; fi
    local f
    stop_pids slurmd slurmctld slurmdbd
    stop_pids mariadbd munged
    for f in /etc/slurm/slurm.conf /etc/slurm/gres.conf /etc/slurm/slurmdbd.conf; do
        [ -e "$f" ] && ours_or_absent "$f" && rm -f "$f"
    done
    say "down (state and logs kept in $DIR)"
}

status() {
    local name any=1
    for name in munged mariadbd slurmdbd slurmctld slurmd; do
        if alive "$name"; then echo "$name: running (pid $(cat "$PIDS/$name"))"; any=0
        else echo "$name: not running (or not started by cluster.sh)"; fi
    done
    if [ -f /etc/slurm/slurm.conf ] && scontrol ping >/dev/null 2>&1; then
        sinfo -N -o "%N %P %T %c %m %G"
        squeue
    fi
    return $any
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status   (state in \$VOXFLOW_SLURM_DIR, default /tmp/voxflow-slurm)" >&2; exit 2 ;;
esac
