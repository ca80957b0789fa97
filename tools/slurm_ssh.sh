#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, reached over SSH: what the `slurm` tests and the computer YAML
# docs/computers/slurm-ssh.yaml use (see docs/howto_cluster.md). Run as root; idempotent (a second run changes
# nothing and restarts nothing that is healthy). `.ci/run` calls it before `make test`.
#
#   munge      started (installed when missing), the Debian key in /etc/munge/munge.key
#   Slurm      slurmctld + slurmd 22.05, node = this machine (CPUs and memory from `slurmd -C`), one partition
#              `ilmlff`, select/cons_tres, proctrack/linuxproc, no cgroups; finished jobs are kept 1 h by
#              `scontrol show job` and logged for good in /var/log/slurm/jobcomp.log (jobcomp/filetxt)
#   SSH        an sshd of its own on 127.0.0.1:$ILMLFF_SSH_PORT (2222), key authentication only, for the user
#              who runs the tests (root, or the user who called `sudo`) with the key ~/.ssh/ilmlff_ci_ed25519
#              (generated here); that user's ~/.ssh/config gets `Host ilmlff-slurm` and ~/.ssh/known_hosts the
#              server's host key, so `ssh ilmlff-slurm` needs no prompt
#
# It waits until `sinfo` shows the node up, a one-task `srun` works and `ssh ilmlff-slurm true` works, and
# exits non-zero with a message naming what failed otherwise. Environment: ILMLFF_SSH_PORT (2222),
# ILMLFF_SSH_USER ($SUDO_USER, else root), ILMLFF_SSH_KEY (~user/.ssh/ilmlff_ci_ed25519),
# ILMLFF_SLURM_PARTITION (ilmlff).
set -uo pipefail

PORT=${ILMLFF_SSH_PORT:-2222}
SSH_USER=${ILMLFF_SSH_USER:-${SUDO_USER:-root}}
SSH_HOME=$(getent passwd "$SSH_USER" | cut -d: -f6)
KEY=${ILMLFF_SSH_KEY:-$SSH_HOME/.ssh/ilmlff_ci_ed25519}
PARTITION=${ILMLFF_SLURM_PARTITION:-ilmlff}
ALIAS=ilmlff-slurm
SLURM_CONF=/etc/slurm/slurm.conf
SSHD_CONF=/etc/ssh/sshd_config_ilmlff
SSHD_PID=/run/sshd-ilmlff.pid
LOG_DIR=/var/log/slurm

log() { echo "slurm_ssh: $*"; }
die() {
    echo "slurm_ssh: ERROR: $*" >&2
    echo "slurm_ssh: the Slurm + SSH tests (pytest -m slurm) cannot run until this is fixed" >&2
    exit 1
}
port_open() { (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pid_alive() {  # pid_alive FILE NAME: the process whose id FILE holds runs and is NAME (not a reused id)
    [ -s "$1" ] || return 1
    local pid
    pid=$(cat "$1")
    kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}
stop_pidfile() {  # stop_pidfile FILE NAME: stop the daemon NAME whose id FILE holds (ours), wait for it to go
    pid_alive "$1" "$2" || return 0
    local pid
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
}

[ "$(id -u)" = 0 ] || die "run as root (it installs and starts munge, slurmctld, slurmd and an sshd): sudo $0"
[ -n "$SSH_HOME" ] && [ -d "$SSH_HOME" ] || die "no home folder for the SSH user \`$SSH_USER\`"
as_user() { if [ "$SSH_USER" = root ]; then "$@"; else runuser -u "$SSH_USER" -- "$@"; fi; }

# 1. Packages.
missing=()
for exe in /usr/sbin/munged /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sbatch /usr/sbin/sshd; do
    [ -x "$exe" ] || missing+=("$exe")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing slurmctld slurmd slurm-client munge openssh-server (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurmctld slurmd slurm-client munge openssh-server >/tmp/ilmlff-slurm-apt.log 2>&1 \
        || { apt-get update -q >>/tmp/ilmlff-slurm-apt.log 2>&1 \
            && apt-get install -y -q slurmctld slurmd slurm-client munge openssh-server \
                >>/tmp/ilmlff-slurm-apt.log 2>&1; } \
        || die "apt-get install failed (log: /tmp/ilmlff-slurm-apt.log)"
fi

# 2. munge.
if [ ! -s /etc/munge/munge.key ]; then
    log "creating /etc/munge/munge.key"
    mungekey --create --keyfile=/etc/munge/munge.key || die "mungekey could not create /etc/munge/munge.key"
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged 2>/dev/null || service munge start >/dev/null 2>&1 || true
    for _ in $(seq 1 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || die "munged does not answer (see /var/log/munge/munged.log)"
fi
log "munge is up"

# 3. Slurm: the configuration of this one node.
node=$(hostname -s)
node_line=$(slurmd -C 2>/dev/null | head -n 1)
[[ $node_line == NodeName=* ]] || die "\`slurmd -C\` did not describe this node: $node_line"
cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node_line")
memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
# 95 % of the memory: a node that reports less than its configured memory is drained by Slurm.
node_line=${node_line/RealMemory=$memory/RealMemory=$((memory * 95 / 100))}
config="# Written by tools/slurm_ssh.sh (aiida-ilmlff): a one-node cluster on this machine.
ClusterName=ilmlff
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=${LOG_DIR}/jobcomp.log
MinJobAge=3600
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
Waittime=0
${node_line} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=${PARTITION} Nodes=${node} Default=YES MaxTime=INFINITE State=UP"
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOG_DIR"
restart_slurm=false
if [ "$(cat "$SLURM_CONF" 2>/dev/null)" != "$config" ]; then
    [ -e "$SLURM_CONF" ] && cp "$SLURM_CONF" "$SLURM_CONF.before-ilmlff"
    printf '%s\n' "$config" > "$SLURM_CONF"
    log "wrote $SLURM_CONF (node $node: $cpus CPUs, $((memory * 95 / 100)) MB, partition $PARTITION)"
    restart_slurm=true
fi
if $restart_slurm; then
    stop_pidfile /run/slurmd.pid slurmd
    stop_pidfile /run/slurmctld.pid slurmctld
fi
if ! pid_alive /run/slurmctld.pid slurmctld; then
    log "starting slurmctld"
    /usr/sbin/slurmctld || die "slurmctld did not start (see $LOG_DIR/slurmctld.log)"
fi
for _ in $(seq 1 30); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 1; done
scontrol ping 2>/dev/null | grep -q UP || die "slurmctld does not answer \`scontrol ping\` (see $LOG_DIR/slurmctld.log)"
if ! pid_alive /run/slurmd.pid slurmd; then
    log "starting slurmd"
    /usr/sbin/slurmd || die "slurmd did not start (see $LOG_DIR/slurmd.log)"
fi
state=''
resumed=false
for _ in $(seq 1 60); do
    state=$(sinfo -h -N -n "$node" -o '%t' 2>/dev/null | head -n 1)
    case "$state" in
        idle | mix | alloc | comp) break ;;
        down* | drain* | drng* | fail*)
            if ! $resumed; then
                log "node $node is $state: resuming it"
                scontrol update nodename="$node" state=resume 2>/dev/null || true
                resumed=true
            fi
            ;;
    esac
    sleep 1
done
case "$state" in
    idle | mix | alloc | comp) log "slurm is up: node $node $state in partition $PARTITION" ;;
    *) die "node $node is not up after 60 s (sinfo state: '${state:-none}'; see $LOG_DIR/slurmd.log, \`scontrol show node $node\`)" ;;
esac
out=$(timeout 120 srun --quiet -p "$PARTITION" -n 1 -t 1 hostname 2>&1) \
    || die "a one-task \`srun hostname\` failed or took over 120 s: $out"
log "srun works (ran on $out)"

# 4. SSH: a key of its own, an sshd of its own on 127.0.0.1:$PORT.
as_user mkdir -p "$SSH_HOME/.ssh" && chmod 700 "$SSH_HOME/.ssh" && mkdir -p /run/sshd
if [ ! -s "$KEY" ]; then
    log "generating $KEY"
    as_user ssh-keygen -q -t ed25519 -N '' -C "ilmlff-ci@$node" -f "$KEY" || die "ssh-keygen failed"
fi
pub=$(cat "$KEY.pub")
as_user touch "$SSH_HOME/.ssh/authorized_keys" && chmod 600 "$SSH_HOME/.ssh/authorized_keys"
grep -qxF "$pub" "$SSH_HOME/.ssh/authorized_keys" || printf '%s\n' "$pub" >> "$SSH_HOME/.ssh/authorized_keys"
[ -s /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -A >/dev/null
# PAM where sshd has its configuration (an account without a password counts as locked without PAM).
use_pam=no
[ -e /etc/pam.d/sshd ] && [ "$SSH_USER" != root ] && use_pam=yes
sshd_config="# Written by tools/slurm_ssh.sh (aiida-ilmlff): key-only SSH on 127.0.0.1 for the Slurm tests.
Port ${PORT}
ListenAddress 127.0.0.1
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile ${SSHD_PID}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
UsePAM ${use_pam}
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp /usr/lib/openssh/sftp-server"
restart_sshd=false
if [ "$(cat "$SSHD_CONF" 2>/dev/null)" != "$sshd_config" ]; then
    printf '%s\n' "$sshd_config" > "$SSHD_CONF"
    restart_sshd=true
fi
/usr/sbin/sshd -t -f "$SSHD_CONF" || die "sshd rejects $SSHD_CONF"
$restart_sshd && stop_pidfile "$SSHD_PID" sshd
if ! pid_alive "$SSHD_PID" sshd; then
    port_open "$PORT" && die "127.0.0.1:$PORT is taken by another program: set ILMLFF_SSH_PORT to a free port"
    log "starting sshd on 127.0.0.1:$PORT"
    /usr/sbin/sshd -f "$SSHD_CONF" || die "sshd did not start on 127.0.0.1:$PORT"
    for _ in $(seq 1 20); do port_open "$PORT" && break; sleep 0.5; done
fi
# known_hosts: the server's host key under both names (no prompt, no ssh-keyscan).
known="$SSH_HOME/.ssh/known_hosts"
as_user touch "$known" && chmod 600 "$known"
host_key=$(cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)
for name in "[127.0.0.1]:$PORT" "[localhost]:$PORT"; do
    if ! grep -qxF "$name $host_key" "$known"; then
        ssh-keygen -R "$name" -f "$known" >/dev/null 2>&1 || true
        printf '%s %s\n' "$name" "$host_key" >> "$known"
    fi
done
rm -f "$known.old"
# ~/.ssh/config: `Host ilmlff-slurm` first (first match wins in OpenSSH), between markers, replaced on each run.
ssh_config="$SSH_HOME/.ssh/config"
begin="# >>> $ALIAS (tools/slurm_ssh.sh) >>>"
end="# <<< $ALIAS <<<"
block="$begin
Host $ALIAS
    HostName 127.0.0.1
    Port $PORT
    User $SSH_USER
    IdentityFile $KEY
    IdentitiesOnly yes
    BatchMode yes
$end"
as_user touch "$ssh_config" && chmod 600 "$ssh_config"
rest=$(sed "/^# >>> $ALIAS /,/^# <<< $ALIAS <<</d" "$ssh_config")
new=$(printf '%s\n%s' "$block" "$rest")
[ "$(cat "$ssh_config")" = "$new" ] || printf '%s\n' "$new" > "$ssh_config"
chown "$SSH_USER:" "$SSH_HOME/.ssh/authorized_keys" "$known" "$ssh_config"  # ssh-keygen -R rewrites as root

ok=false
for _ in $(seq 1 20); do
    if as_user ssh -i "$KEY" -p "$PORT" -o BatchMode=yes -o ConnectTimeout=5 "$SSH_USER@localhost" true 2>/dev/null \
        && as_user ssh -o ConnectTimeout=5 "$ALIAS" true 2>/dev/null; then
        ok=true
        break
    fi
    sleep 0.5
done
$ok || die "\`ssh -i $KEY -p $PORT -o BatchMode=yes $SSH_USER@localhost true\` fails: $(as_user ssh -i "$KEY" \
    -p "$PORT" -o BatchMode=yes -o ConnectTimeout=5 "$SSH_USER@localhost" true 2>&1 | tail -n 1)"
log "ssh works: \`ssh $ALIAS\` (127.0.0.1:$PORT, user $SSH_USER, key $KEY)"
squeue_out=$(as_user ssh "$ALIAS" squeue -h -p "$PARTITION" 2>&1) || die "squeue over ssh fails: $squeue_out"
log "ready: Slurm partition $PARTITION on $node ($cpus CPUs) over \`ssh $ALIAS\`"
