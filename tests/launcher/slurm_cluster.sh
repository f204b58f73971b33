# A private single-node SLURM for tests: its own munge key and socket, configuration, state,
# spool and log directories under one directory, and its own ports. Sourced by bash:
#
#   source tests/launcher/slurm_cluster.sh
#   slurm_cluster_up "$dir" || exit 77    # exports SLURM_CONF; the cluster's node is idle
#   srun -n 2 hostname
#   slurm_cluster_down                     # also from a trap: safe to call twice
#
# slurm_cluster_missing prints what is not installed (munged, slurmctld, slurmd, srun, ...).
# The daemons run as root (slurmd starts every job's processes as the job's user), so
# slurm_cluster_up needs root. slurm_cluster_down stops only what slurm_cluster_up started:
# the daemons by their PIDs, and the jobs' processes (slurmstepd, the tasks), which are found
# by SLURM_CONF=<this cluster's slurm.conf> in their environment (slurmd passes it on).

slurm_cluster_pids=()
slurm_cluster_dir=

slurm_cluster_missing() {
  local c missing=()
  for c in munged mungekey slurmctld slurmd srun sbatch salloc squeue scancel scontrol sinfo; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  echo "${missing[*]}"
}

# A TCP port nobody listens on, and the one after it: random from 20000-59999, checked
# against /proc/net/tcp{,6} (state 0A is LISTEN; ports there are hex).
_slurm_free_port_pair() {
  local listening p i
  listening=$(awk 'NR > 1 && $4 == "0A" { split($2, a, ":"); print a[2] }' /proc/net/tcp /proc/net/tcp6 2>/dev/null)
  for i in $(seq 50); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    if ! grep -qix "$(printf '%04X' "$p")" <<<"$listening" &&
       ! grep -qix "$(printf '%04X' $((p + 1)))" <<<"$listening"; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# slurm_cluster_up DIR [CPUS]: returns 0 once the node takes jobs, else 1 with the logs printed.
slurm_cluster_up() {
  local d=$1 cpus=${2:-$(nproc)} node port i
  slurm_cluster_dir=$d
  node=$(hostname -s)
  port=$(_slurm_free_port_pair) || { echo "slurm_cluster: no free port pair"; return 1; }
  mkdir -p "$d"/{munge,run,state,spool,log} || return 1
  # munged: the key readable by its owner only, the socket's directory and every one above it
  # searchable by every user (mktemp -d makes 0700 directories: chmod 755 yours).
  chmod 700 "$d/munge"
  chmod 755 "$d" "$d/run"
  local up
  up=$(cd "$d" && pwd -P)
  while [ "$up" != / ]; do
    [ -n "$(find "$up" -maxdepth 0 -perm -o+x)" ] ||
      { echo "slurm_cluster: munged needs $up searchable by every user (chmod o+x)"; return 1; }
    up=$(dirname "$up")
  done
  mungekey --create --keyfile="$d/munge/munge.key" || return 1
  munged -F --socket="$d/run/munge.socket" --key-file="$d/munge/munge.key" \
    --pid-file="$d/run/munged.pid" --log-file="$d/log/munged.log" --seed-file="$d/munge/munged.seed" \
    >"$d/log/munged.out" 2>&1 &
  slurm_cluster_pids+=($!)
  # cred_expire: a requeued job may start again this many seconds after it stopped (120 by
  # default). KillWait: SIGTERM to SIGKILL when a step is cancelled.
  cat >"$d/slurm.conf" <<EOF
ClusterName=fathomtest
# Job IDs of their own: two clusters on one host with the same job ID collide (the second
# one's step fails to launch), e.g. two runs of this test at once.
FirstJobId=$((1000 + (RANDOM * 32768 + RANDOM) % 1000000))
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$d/run/munge.socket,cred_expire=10
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/run/slurmctld.pid
SlurmdPidFile=$d/run/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# A requeued job is started by the backfill pass (every 30 s by default) once it may begin.
SchedulerParameters=bf_interval=1
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=10
KillWait=10
InactiveLimit=0
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$d/slurm.conf
  for i in $(seq 50); do [ -S "$d/run/munge.socket" ] && break; sleep 0.1; done
  # Without munged every SLURM command retries for seconds: stop here instead.
  if [ ! -S "$d/run/munge.socket" ]; then
    echo "slurm_cluster: munged did not start:"
    cat "$d/log/munged.out"
    return 1
  fi
  slurmctld -D -i >"$d/log/slurmctld.out" 2>&1 &
  slurm_cluster_pids+=($!)
  slurmd -D -N "$node" >"$d/log/slurmd.out" 2>&1 &
  slurm_cluster_pids+=($!)
  local deadline=$((SECONDS + 30))
  while [ "$SECONDS" -lt "$deadline" ]; do
    case "$(timeout 5 sinfo -h -n "$node" -o %T 2>/dev/null)" in
      idle*) return 0 ;;
    esac
    sleep 0.2
  done
  echo "slurm_cluster: the node did not become idle within 30 s; sinfo: $(timeout 5 sinfo 2>&1 | tail -n +2)"
  for f in "$d"/log/*; do echo "----- $f"; tail -n 20 "$f"; done
  return 1
}

# The processes of this cluster's jobs: everything whose environment names its slurm.conf,
# except this shell and what it runs now; and its slurmstepds, which blank their environment
# but keep slurmd's log open.
_slurm_cluster_job_pids() {
  local p conf="SLURM_CONF=$slurm_cluster_dir/slurm.conf" log="$slurm_cluster_dir/log/slurmd.log"
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = "$$" ] || [ "$p" = "$BASHPID" ] && continue
    if { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qxF "$conf"; then
      echo "$p"
    elif [ "$(cat "/proc/$p/comm" 2>/dev/null)" = slurmstepd ] &&
         ls -l "/proc/$p/fd" 2>/dev/null | grep -qF -- "-> $log"; then
      echo "$p"
    fi
  done
}

slurm_cluster_down() {
  local p i left
  [ -n "$slurm_cluster_dir" ] || return 0
  # Jobs first, while slurmctld and slurmd can still end them the usual way.
  local jobs
  if [ "${#slurm_cluster_pids[@]}" -gt 0 ] && [ -S "$slurm_cluster_dir/run/munge.socket" ]; then
    jobs=$(timeout 5 squeue -h -o %i 2>/dev/null)
    if [ -n "$jobs" ]; then
      timeout 5 scancel --quiet $jobs 2>/dev/null
      local until=$((SECONDS + 15))
      while [ "$SECONDS" -lt "$until" ] && [ -n "$(timeout 5 squeue -h -o %i 2>/dev/null)" ]; do sleep 0.2; done
    fi
  fi
  for p in "${slurm_cluster_pids[@]}"; do kill "$p" 2>/dev/null; done
  for i in $(seq 50); do
    left=0
    for p in "${slurm_cluster_pids[@]}"; do kill -0 "$p" 2>/dev/null && left=1; done
    [ "$left" -eq 0 ] && break
    sleep 0.2
  done
  for p in "${slurm_cluster_pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait "${slurm_cluster_pids[@]}" 2>/dev/null
  # A job step's slurmstepd outlives slurmd for a moment: until none of the jobs' is left.
  for i in $(seq 25); do
    left=$(_slurm_cluster_job_pids)
    [ -z "$left" ] && break
    for p in $left; do kill -9 "$p" 2>/dev/null; done
    sleep 0.2
  done
  slurm_cluster_pids=()
  slurm_cluster_dir=
}
