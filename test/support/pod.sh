#!/usr/bin/env bash
# pod.sh: a simulated Kubernetes pod made of network namespaces, wired the way
# a CNI plugin (Calico by default) would wire it. Used by the int tests, the
# e2e tests and `make demo`. See test/support/README.md for the full contract.
#
#   pod.sh create NAME [--node root|NODE_NS] [--if IFNAME=CIDR[,CIDR...]]...
#                      [--calico] [--ipv6] [--mtu MTU] [--resolv FILE]
#   pod.sh destroy NAME
#   pod.sh exec NAME -- CMD...
#   pod.sh facts NAME
#
# `create` prints machine-readable facts (KEY=VALUE, one per line) on stdout;
# everything else goes to stderr. Needs root, iproute2 and sysctl.
set -euo pipefail

STATE_DIR=${POD_SH_STATE_DIR:-/run/podvisor-test-pods}
NODE_DUMMY=pvnode0
# Calico's host-side veth: this MAC on every one, so the pod's IPv6 default
# route goes via the link-local address it makes (fe80::ecee:eeff:feee:eeee).
CALICO_VETH_MAC=ee:ee:ee:ee:ee:ee
CALICO_VETH_LL=fe80::ecee:eeff:feee:eeee

die() {
  echo "pod.sh: $*" >&2
  exit 1
}

usage() {
  sed -n '6,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# A short, stable hex digest of a string (8 hex digits).
hash8() {
  printf '%s' "$1" | cksum | awk '{ printf "%08x", $1 }'
}

# ip and sysctl, run in the node namespace (or the real root namespace).
node_ip() {
  if [[ $NODE_NS == root ]]; then ip "$@"; else ip -n "$NODE_NS" "$@"; fi
}
node_sysctl() {
  if [[ $NODE_NS == root ]]; then sysctl -q -w "$@"; else ip netns exec "$NODE_NS" sysctl -q -w "$@"; fi
}

ip_to_int() {
  local IFS=.
  # shellcheck disable=SC2206
  local o=($1)
  [[ ${#o[@]} -eq 4 ]] || die "not an IPv4 address: $1"
  echo $(((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]))
}

int_to_ip() {
  echo "$((($1 >> 24) & 255)).$((($1 >> 16) & 255)).$((($1 >> 8) & 255)).$(($1 & 255))"
}

# The node-side address of a plain (non-calico) subnet: the first host of the
# subnet that is not the pod's own address.
node_addr_for() {
  local addr=${1%/*} len=${1#*/}
  ((len <= 30)) || die "$1: a plain interface needs a prefix of /30 or shorter (use a /32 for calico style)"
  local a mask net first
  a=$(ip_to_int "$addr")
  mask=$(((0xffffffff << (32 - len)) & 0xffffffff))
  net=$((a & mask))
  first=$((net + 1))
  ((first == a)) && first=$((net + 2))
  echo "$(int_to_ip "$first")/$len"
}

# An address in 10.<second>.0.0/16 derived from a seed, skipping any for which
# `taken ADDR` succeeds.
pick_addr() {
  local second=$1 seed=$2 taken=$3 h n i
  h=$((16#$(hash8 "$seed")))
  for ((i = 0; i < 64; i++)); do
    n=$(((h + i * 7919) % 65024 + 256)) # 10.x.1.0 .. 10.x.254.255
    local third=$((n >> 8)) fourth=$((n & 255))
    ((fourth == 0 || fourth == 255)) && continue
    local candidate="10.$second.$third.$fourth"
    if ! "$taken" "$candidate"; then
      echo "$candidate"
      return
    fi
  done
  die "no free address in 10.$second.0.0/16 for $seed"
}

pod_ip_taken() {
  [[ -n $(node_ip -4 route show "$1/32" 2>/dev/null) ]] || [[ -n $(node_ip -4 -o addr show to "$1/32" 2>/dev/null) ]]
}
node_ip_taken() {
  [[ -n $(node_ip -4 -o addr show to "$1/32" 2>/dev/null) ]] || [[ -n $(node_ip -4 route show "$1/32" 2>/dev/null) ]]
}

ns_exists() {
  [[ -e /run/netns/$1 ]]
}

# The node namespace's own address, which it sources traffic to pods from.
ensure_node_address() {
  if [[ $NODE_NS == root ]]; then
    # The root namespace already has one: the source it would use towards the pod.
    NODE_IP=$(ip -4 route get "$FIRST_POD_IP" 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n1)
    [[ -n $NODE_IP ]] || die "the root namespace has no IPv4 source address towards $FIRST_POD_IP"
    return
  fi
  if ! ip -n "$NODE_NS" link show "$NODE_DUMMY" >/dev/null 2>&1; then
    # This kernel has no `dummy` link type; a veth pair with both ends here
    # behaves like one (carrier up, nothing ever arrives).
    ip -n "$NODE_NS" link add name "$NODE_DUMMY" type veth peer name "${NODE_DUMMY}p"
  fi
  ip -n "$NODE_NS" link set lo up
  ip -n "$NODE_NS" link set "${NODE_DUMMY}p" up
  ip -n "$NODE_NS" link set "$NODE_DUMMY" up
  NODE_IP=$(ip -n "$NODE_NS" -4 -o addr show dev "$NODE_DUMMY" | awk '{ print $4 }' | cut -d/ -f1 | head -n1)
  if [[ -z $NODE_IP ]]; then
    NODE_IP=$(pick_addr 243 "$NODE_NS" node_ip_taken)
    ip -n "$NODE_NS" addr add "$NODE_IP/32" dev "$NODE_DUMMY"
  fi
  # Like a real node, route everything else somewhere: proxy ARP only answers
  # for targets (169.254.1.1) that have a route through another device.
  if [[ -z $(ip -n "$NODE_NS" -4 route show default) ]]; then
    ip -n "$NODE_NS" route add default dev "$NODE_DUMMY"
  fi
  # A dual-stack pod's node gets an IPv6 address too, derived from its IPv4 one.
  if [[ -n $FIRST_POD_IP6 ]]; then
    NODE_IP6=$(ip -n "$NODE_NS" -6 -o addr show dev "$NODE_DUMMY" scope global | awk '{ print $4 }' | cut -d/ -f1 | head -n1)
    if [[ -z $NODE_IP6 ]]; then
      local o3 o4
      o3=$(echo "$NODE_IP" | cut -d. -f3)
      o4=$(echo "$NODE_IP" | cut -d. -f4)
      NODE_IP6="fd10:243::$o3:$o4"
      ip -n "$NODE_NS" -6 addr add "$NODE_IP6/128" dev "$NODE_DUMMY" nodad
    fi
    if [[ -z $(ip -n "$NODE_NS" -6 route show default) ]]; then
      ip -n "$NODE_NS" -6 route add default dev "$NODE_DUMMY"
    fi
  fi
}

cmd_create() {
  local name=$1
  shift
  NODE_NS="$name-node"
  local -a ifs=()
  local calico=0 resolv='' ipv6=0 mtu=''
  while (($# > 0)); do
    case $1 in
      --node) NODE_NS=${2:?--node needs a value}; shift 2 ;;
      --if) ifs+=("${2:?--if needs IFNAME=CIDR[,CIDR...]}"); shift 2 ;;
      --calico) calico=1; shift ;;
      --ipv6) ipv6=1; shift ;;
      --mtu) mtu=${2:?--mtu needs a value}; shift 2 ;;
      --resolv) resolv=${2:?--resolv needs a file}; shift 2 ;;
      *) die "create: unknown argument $1" ;;
    esac
  done
  [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "bad pod name: $name"
  ns_exists "$name" && die "pod $name already exists (pod.sh destroy $name first)"
  [[ -z $resolv || -r $resolv ]] || die "--resolv: cannot read $resolv"
  [[ -z $mtu || $mtu =~ ^[0-9]+$ && $mtu -ge 1280 && $mtu -le 9000 ]] || die "--mtu: expected 1280-9000, got $mtu"

  mkdir -p "$STATE_DIR"
  local state="$STATE_DIR/$name.env"
  if [[ $NODE_NS != root ]] && ! ns_exists "$NODE_NS"; then
    ip netns add "$NODE_NS"
    # The last pod using a node namespace that pod.sh created deletes it.
    touch "$STATE_DIR/$NODE_NS.node-created"
  fi
  echo "NODE_NS=$NODE_NS" >"$state"
  # From here on, a failure undoes everything created so far.
  CREATE_OK=0
  trap 'if [[ $CREATE_OK != 1 ]]; then echo "pod.sh: create '"$name"' failed, cleaning up" >&2; cmd_destroy "'"$name"'"; fi' EXIT

  # eth0 is always there; without an explicit --if it gets a /32 from 10.244.0.0/16.
  local have_eth0=0 spec
  for spec in "${ifs[@]}"; do [[ ${spec%%=*} == eth0 ]] && have_eth0=1; done
  if ((have_eth0 == 0)); then
    local auto_ip
    auto_ip=$(pick_addr 244 "$name" pod_ip_taken)
    if ((ipv6 == 1)); then
      # Derived from the IPv4 address, so as unique as it is.
      ifs=("eth0=$auto_ip/32,fd10:244::$(echo "$auto_ip" | cut -d. -f3):$(echo "$auto_ip" | cut -d. -f4)/128" "${ifs[@]}")
    else
      ifs=("eth0=$auto_ip/32" "${ifs[@]}")
    fi
  fi

  ip netns add "$name"
  echo "POD_NS=$name" >>"$state"
  ip -n "$name" link set lo up
  # A new namespace inherits IPv4 forwarding from the host's: start from off, as
  # a pod whose sysctls do not set it, whatever the machine's own setting.
  ip netns exec "$name" sysctl -q -w net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0

  local tag idx=0 default_set=0
  tag=$(hash8 "$name")
  FIRST_POD_IP=''
  FIRST_POD_IP6=''
  local -a facts=()
  for spec in "${ifs[@]}"; do
    local ifname=${spec%%=*} cidrs=${spec#*=}
    local key=${ifname//[^A-Za-z0-9_]/_} # usable in a shell variable name
    [[ $spec == *=* && -n $ifname && -n $cidrs ]] || die "--if $spec: expected IFNAME=CIDR[,CIDR...]"
    local veth="pv${tag}${idx}"
    idx=$((idx + 1))
    echo "VETH=$veth" >>"$state"
    node_ip link add name "$veth" type veth peer name "$ifname" netns "$name"
    if [[ $cidrs == *:* ]]; then
      # Calico's veth MAC; no DAD, so its link-local address answers at once.
      node_ip link set "$veth" address "$CALICO_VETH_MAC"
      node_sysctl "net.ipv6.conf.$veth.accept_dad=0"
    fi
    if [[ -n $mtu ]]; then
      node_ip link set "$veth" mtu "$mtu"
      ip -n "$name" link set "$ifname" mtu "$mtu"
    fi
    node_ip link set "$veth" up
    ip -n "$name" link set "$ifname" up

    local style=plain first_cidr=${cidrs%%,*}
    [[ $first_cidr == */* ]] || first_cidr="$first_cidr/32"
    if [[ $first_cidr == */32 ]] || { [[ $ifname == eth0 ]] && ((calico == 1)); }; then style=calico; fi

    local cidr addr first_ip6=''
    local -a addrs=() node_ips=()
    IFS=, read -r -a addrs <<<"$cidrs"
    for cidr in "${addrs[@]}"; do
      addr=${cidr%/*}
      if [[ $addr == *:* ]]; then
        # IPv6 the Calico way: a /128, a host route to it on the node, and the
        # default route via the node veth's link-local address.
        [[ $style == calico ]] || die "--if $spec: IPv6 addresses are for calico-style interfaces only"
        ip -n "$name" -6 addr add "$addr/128" dev "$ifname" nodad
        node_ip -6 route replace "$addr/128" dev "$veth"
        [[ -n $first_ip6 ]] || first_ip6=$addr
        continue
      fi
      if [[ $style == calico ]]; then
        ip -n "$name" addr add "$addr/32" dev "$ifname"
        node_ip route replace "$addr/32" dev "$veth"
      else
        [[ $cidr == */* ]] || die "--if $spec: $cidr needs a prefix length"
        ip -n "$name" addr add "$cidr" dev "$ifname"
        local node_cidr
        node_cidr=$(node_addr_for "$cidr")
        node_ip addr add "$node_cidr" dev "$veth"
        node_ips+=("${node_cidr%/*}")
      fi
    done
    [[ -n $FIRST_POD_IP ]] || FIRST_POD_IP=${addrs[0]%/*}
    if [[ -n $first_ip6 ]]; then
      facts+=("POD_IP6_$key=$first_ip6")
      if [[ -z $FIRST_POD_IP6 ]]; then
        FIRST_POD_IP6=$first_ip6
        ip -n "$name" -6 route add default via "$CALICO_VETH_LL" dev "$ifname"
      fi
    fi
    if ((${#node_ips[@]} > 0)); then
      facts+=("NODE_IP_$key=${node_ips[0]}" "NODE_IPS_$key=$(IFS=,; echo "${node_ips[*]}")")
    fi
    facts+=("POD_IP_$key=${addrs[0]%/*}" "POD_IPS_$key=$cidrs" "NODE_VETH_$key=$veth" "STYLE_$key=$style")

    if [[ $style == calico ]]; then
      # Per-device forwarding is what makes proxy ARP answer (FACTS.md, pod networking);
      # proxy_delay=0 or the answers come up to 0.8 s late.
      node_sysctl "net.ipv4.conf.$veth.proxy_arp=1" "net.ipv4.conf.$veth.forwarding=1" "net.ipv4.neigh.$veth.proxy_delay=0"
      ip -n "$name" route add 169.254.1.1 dev "$ifname" scope link
      if ((default_set == 0)); then
        ip -n "$name" route add default via 169.254.1.1 dev "$ifname"
        default_set=1
      fi
    fi
  done

  ensure_node_address

  if [[ -n $resolv ]]; then
    mkdir -p "/etc/netns/$name"
    cp "$resolv" "/etc/netns/$name/resolv.conf"
  fi

  {
    echo "POD_NS=$name"
    echo "POD_IP=$FIRST_POD_IP"
    echo "NODE_IP=$NODE_IP"
    echo "NODE_NS=$NODE_NS"
    [[ -z $FIRST_POD_IP6 ]] || echo "POD_IP6=$FIRST_POD_IP6"
    [[ -z ${NODE_IP6:-} ]] || echo "NODE_IP6=$NODE_IP6"
    [[ -z $mtu ]] || echo "MTU=$mtu"
    printf '%s\n' "${facts[@]}"
  } | tee "$STATE_DIR/$name.facts"
  CREATE_OK=1
}

kill_ns_pids() {
  local pids
  pids=$(ip netns pids "$1" 2>/dev/null || true)
  [[ -z $pids ]] && return 0
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  # Wait (bounded) for them to be gone so the namespace can really go away.
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -z $(ip netns pids "$1" 2>/dev/null || true) ]] && return 0
    sleep 0.05
  done
  echo "pod.sh: processes still in namespace $1: $(ip netns pids "$1" | tr '\n' ' ')" >&2
}

cmd_destroy() {
  local name=$1
  local state="$STATE_DIR/$name.env"
  NODE_NS="$name-node"
  local -a veths=()
  if [[ -r $state ]]; then
    NODE_NS=$(sed -n 's/^NODE_NS=//p' "$state" | head -n1)
    mapfile -t veths < <(sed -n 's/^VETH=//p' "$state")
  fi

  if ns_exists "$name"; then
    kill_ns_pids "$name"
  fi
  # Deleting either end deletes the pair, and the routes through it.
  local veth
  for veth in "${veths[@]}"; do
    if [[ $NODE_NS == root ]] || ns_exists "$NODE_NS"; then
      node_ip link del "$veth" 2>/dev/null || true
    fi
  done
  if ns_exists "$name"; then
    ip netns del "$name" 2>/dev/null || true
  fi
  rm -rf "/etc/netns/$name"
  rm -f "$state" "$STATE_DIR/$name.facts"

  if [[ $NODE_NS != root && -e $STATE_DIR/$NODE_NS.node-created ]] && ! grep -qs "^NODE_NS=$NODE_NS\$" "$STATE_DIR"/*.env; then
    if ns_exists "$NODE_NS"; then
      kill_ns_pids "$NODE_NS"
      ip netns del "$NODE_NS" 2>/dev/null || true
    fi
    rm -f "$STATE_DIR/$NODE_NS.node-created"
  fi
  return 0
}

cmd_exec() {
  local name=$1
  shift
  [[ ${1:-} == -- ]] && shift
  (($# > 0)) || die "exec: no command"
  ns_exists "$name" || die "no pod $name"
  exec ip netns exec "$name" "$@"
}

cmd_facts() {
  cat "$STATE_DIR/$1.facts" 2>/dev/null || die "no pod $1"
}

main() {
  (($# >= 2)) || usage
  local verb=$1 name=$2
  shift 2
  [[ $(id -u) == 0 ]] || die "needs root"
  case $verb in
    create) cmd_create "$name" "$@" ;;
    destroy) cmd_destroy "$name" ;;
    exec) cmd_exec "$name" "$@" ;;
    facts) cmd_facts "$name" ;;
    *) usage ;;
  esac
}

main "$@"
