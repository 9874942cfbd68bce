# Sourced by the multi-host scripts: `netns_hosts PREFIX SUBNET HOST…` builds a bridge namespace
# PREFIX-sw and one namespace PREFIX-HOST per host, joined to it by a veth link, host i at
# SUBNET.(i+1)/24 on interface vPREFIXHOST. Returns non-zero at the first step that fails.
netns_hosts() {
  local p=$1 subnet=$2; shift 2
  ip netns add "$p-sw" && ip -n "$p-sw" link add br0 type bridge && ip -n "$p-sw" link set br0 up || return 1
  local i=0 h
  for h in "$@"; do
    i=$((i + 1))
    ip netns add "$p-$h" &&
    ip link add "v$p$h" type veth peer name "b$p$h" &&
    ip link set "v$p$h" netns "$p-$h" &&
    ip link set "b$p$h" netns "$p-sw" &&
    ip -n "$p-sw" link set "b$p$h" master br0 up &&
    ip -n "$p-$h" addr add "$subnet.$i/24" dev "v$p$h" &&
    ip -n "$p-$h" link set "v$p$h" up &&
    ip -n "$p-$h" link set lo up || return 1
  done
}
