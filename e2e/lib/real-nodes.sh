# shellcheck shell=bash
# Real kubelet nodes beside the KWOK ones, sourced by e2e/cluster (it provides log, die,
# start, stop, alive, wait_for, sign, kubeconfig, kubectl_admin, $STATE, $PKI, $LOGS,
# $PIDS, $CACHE, $BIN). `e2e/cluster up --real-nodes N` starts, for each node real-<i>:
#   - its own containerd (root, state, socket, CNI config and IPAM data under
#     $STATE/real/real-<i>), runc from Debian with the cgroupfs driver;
#   - its own kubelet (root dir, pod logs dir, ports, cgroup root), registered as
#     real-<i> with a client certificate of system:node:real-<i>.
# Pods of every real node sit on one Linux bridge that the run creates; see
# e2e/README.md ("Real nodes") for the address range and why it is safe. KWOK does not
# manage these nodes: they lack its kwok.x-k8s.io/node=fake annotation.
#
# Environment: DSO_REAL_POD_CIDR (default 198.18.0.0/16, inside RFC 2544's 198.18.0.0/15;
# node i allocates pod IPs from its .i.0/24 and owns .i.1, its node IP), DSO_REAL_BRIDGE
# (bridge name, default dsoreal; also names the cgroup roots), DSO_REAL_PORT_BASE (default
# 37000; node i uses base+10i for the kubelet, +1 its healthz, +2 containerd's stream
# server), DSO_REAL_READY_TIMEOUT (s, default 180).

REAL_DIR="$STATE/real"
REAL_POD_CIDR="${DSO_REAL_POD_CIDR:-198.18.0.0/16}"
REAL_BRIDGE="${DSO_REAL_BRIDGE:-dsoreal}"
REAL_PORT_BASE="${DSO_REAL_PORT_BASE:-37000}"
REAL_READY_TIMEOUT="${DSO_REAL_READY_TIMEOUT:-180}"
REAL_LABEL=e2e.deepseek-operator/real-node

# real_net I: "<node ip> <pod range start> <pod range end> <prefix length>" for node I.
real_net() {
  python3 - "$REAL_POD_CIDR" "$1" <<'EOF'
import ipaddress, sys
net = ipaddress.ip_network(sys.argv[1])
i = int(sys.argv[2])
if net.version != 4 or net.prefixlen > 16:
    sys.exit(f"DSO_REAL_POD_CIDR={net} must be an IPv4 network of /16 or larger")
sub = list(net.subnets(new_prefix=24))[i]
print(sub[1], sub[2], sub[254], net.prefixlen)
EOF
}

# real_dns_ip: the cluster DNS server's address, the .1 of the range's last /24 (node
# indexes stop well before it), on the pods' bridge.
real_dns_ip() {
  local ip; read -r ip _ <<<"$(real_net 255)"
  echo "$ip"
}

# The real nodes of this state dir, from their directories (also those of a previous up).
real_nodes_present() {
  local d
  for d in "$REAL_DIR"/real-*; do [[ -d "$d" ]] && basename "$d"; done
  return 0
}

real_bin() {
  local b="$1"
  for d in "$CACHE/kubernetes-$K8S_VERSION/bin" "$CACHE/containerd-$CONTAINERD_VERSION/bin" \
           "$CACHE/cri-tools-$CRICTL_VERSION/bin" "$CACHE/coredns-$COREDNS_VERSION/bin"; do
    [[ -x "$d/$b" ]] && { echo "$d/$b"; return 0; }
  done
  die "$b is not built (run e2e/build --real-nodes)"
}

# real_crictl NODE ARGS...: crictl against NODE's containerd (its crictl.yaml; by hand:
# crictl --config $DSO_CLUSTER_DIR/real/real-0/crictl.yaml ps).
real_crictl() {
  local node="$1"; shift
  "$(real_bin crictl)" --config "$REAL_DIR/$node/crictl.yaml" "$@"
}

real_ctr() {
  local node="$1"; shift
  "$(real_bin ctr)" --address "$REAL_DIR/$node/containerd.sock" --namespace k8s.io "$@"
}

# The cgroup v1 hierarchies (plus the v2 unified mount) where each kubelet's root goes.
cgroup_mounts() {
  awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts | grep '^/sys/fs/cgroup/'
}

# real_bridge_up: the pods' bridge, with node i's address for each node.
real_bridge_up() {
  local n="$1" i ip pl
  if ! ip link show "$REAL_BRIDGE" >/dev/null 2>&1; then
    ip link add "$REAL_BRIDGE" type bridge || die "could not create bridge $REAL_BRIDGE (root needed)"
  fi
  for ((i = 0; i < n; i++)); do
    read -r ip _ _ pl <<<"$(real_net "$i")"
    ip addr show dev "$REAL_BRIDGE" | grep -q " $ip/" || ip addr add "$ip/$pl" dev "$REAL_BRIDGE"
  done
  local dns pl0; dns="$(real_dns_ip)"; read -r _ _ _ pl0 <<<"$(real_net 0)"
  ip addr show dev "$REAL_BRIDGE" | grep -q " $dns/" || ip addr add "$dns/$pl0" dev "$REAL_BRIDGE"
  ip link set "$REAL_BRIDGE" up
}

# real_dns_up: CoreDNS on the bridge's DNS address, port 53, answering cluster.local only
# from the API server (Services, EndpointSlices: a headless Service's pod hostnames); no
# forward plugin, so any other name is refused and nothing is asked upstream. The real
# nodes' kubelets point their pods' resolv.conf at it (clusterDNS).
real_dns_up() {
  local d="$REAL_DIR/coredns" dns
  dns="$(real_dns_ip)"
  mkdir -p "$d"
  cat >"$d/Corefile" <<EOF
cluster.local:53 {
    bind $dns
    errors
    kubernetes cluster.local {
        kubeconfig $STATE/admin.kubeconfig
        pods disabled
    }
}
EOF
  if ! alive real-coredns; then
    start_as real-coredns "$(real_bin coredns)" -conf "$d/Corefile"
    wait_for real-coredns "$START_TIMEOUT" "CoreDNS answers on $dns" real_dns_answers
  fi
}

# real_api_forward_up: the API server, reachable from pods on the bridge. It listens on
# 127.0.0.1 only, and the `kubernetes` Service's ClusterIP routes nowhere (no kube-proxy),
# so a pod that talks to the API server (the operator from its image) gets a forwarder
# on the bridge's services address (CoreDNS's, same IP, the API server's port) to
# 127.0.0.1. Such a pod names it `kubernetes` through a host alias, because the API
# server's certificate carries that name and not the bridge address; the address and
# port are written to $REAL_DIR/api-address ("IP PORT") for the tests and by hand:
#   --set 'hostAliases[0].ip=IP' --set 'hostAliases[0].hostnames[0]=kubernetes'
#   --set 'extraEnv[0].name=KUBERNETES_SERVICE_HOST' --set 'extraEnv[0].value=kubernetes'
#   --set 'extraEnv[1].name=KUBERNETES_SERVICE_PORT' --set-string 'extraEnv[1].value=PORT'
real_api_forward_up() {
  local ip; ip="$(real_dns_ip)"
  if ! alive real-api-forward; then
    start_as real-api-forward "$(command -v socat)" \
      "TCP-LISTEN:$API_PORT,bind=$ip,fork,reuseaddr" "TCP:127.0.0.1:$API_PORT"
    wait_for real-api-forward "$START_TIMEOUT" "the API server answers on $ip:$API_PORT" \
      curl -sf --max-time 2 --cacert "$PKI/ca.crt" --resolve "kubernetes:$API_PORT:$ip" \
      -o /dev/null "https://kubernetes:$API_PORT/readyz"
  fi
  echo "$ip $API_PORT" >"$REAL_DIR/api-address"
}

# real_dns_answers: CoreDNS answers a query for the API server's Service.
real_dns_answers() {
  python3 - "$(real_dns_ip)" <<'PYEOF'
import socket, struct, sys
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
for label in "kubernetes.default.svc.cluster.local".split("."):
    q += bytes([len(label)]) + label.encode()
q += b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(q, (sys.argv[1], 53))
r = s.recv(512)
sys.exit(0 if r[:2] == q[:2] and (r[3] & 0x0F) in (0, 3) else 1)
PYEOF
}

pause_image_name() {
  local f
  f="$(ls -t "$CACHE"/pause-*/image-name 2>/dev/null | head -n 1)"
  [[ -n "$f" ]] || die "the pause image is not built (run e2e/build --real-nodes)"
  cat "$f"
}

# write_real_configs NODE INDEX: containerd, CNI and kubelet configuration, certificates.
write_real_configs() {
  local node="$1" i="$2" d="$REAL_DIR/$1"
  local ip start end pl port=$((REAL_PORT_BASE + 10 * $2))
  read -r ip start end pl <<<"$(real_net "$i")"
  mkdir -p "$d"/{containerd-root,containerd-state,cni-conf,cni-ipam,kubelet,pod-logs,opt}
  cat >"$d/containerd.toml" <<EOF
version = 3
root = "$d/containerd-root"
state = "$d/containerd-state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[debug]
  address = ""
[plugins.'io.containerd.internal.v1.opt']
  path = "$d/opt"
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "$((port + 2))"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$(pause_image_name)"
[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  disable_apparmor = true
  # This machine's root lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj (the
  # kubelet asks -998 for sandboxes), so it is kept at or above containerd's own.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$CACHE/cni-plugins-$CNI_PLUGINS_VERSION/bin"]
    conf_dir = "$d/cni-conf"
    max_conf_num = 1
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$d/runc"
        SystemdCgroup = false
EOF
  # One bridge for all real nodes (pods of two nodes talk with no routing); node i hands
  # out its own /24 of the range. No isGateway: the plugin would turn on IP forwarding.
  # No routes: a pod reaches the bridge's range and nothing else.
  cat >"$d/cni-conf/10-dso-real.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "dso-real",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$REAL_BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$d/cni-ipam",
        "ranges": [[{"subnet": "$REAL_POD_CIDR", "rangeStart": "$start", "rangeEnd": "$end"}]],
        "routes": []
      }
    }
  ]
}
EOF
  printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n' \
    "$d/containerd.sock" "$d/containerd.sock" >"$d/crictl.yaml"
  if [[ ! -s "$PKI/$node.crt" ]]; then
    sign "$node" "/O=system:nodes/CN=system:node:$node" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    sign "$node-serving" "/CN=$node" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$ip,DNS:$node"
  fi
  kubeconfig "$d/kubelet.kubeconfig" "$node"
  cat >"$d/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: $port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $((port + 1))
tlsCertFile: $PKI/$node-serving.crt
tlsPrivateKeyFile: $PKI/$node-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$d/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /$REAL_BRIDGE-$i
failCgroupV1: false
failSwapOn: false
podLogsDir: $d/pod-logs
resolvConf: ""
clusterDNS: [$(real_dns_ip)]
clusterDomain: cluster.local
maxPods: 50
oomScoreAdj: 0
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
EOF
}

# start_real_node NODE INDEX: containerd, the pause image, then the kubelet.
start_real_node() {
  local node="$1" i="$2" d="$REAL_DIR/$1" c
  local ip; read -r ip _ <<<"$(real_net "$i")"
  write_real_configs "$node" "$i"
  for c in $(cgroup_mounts); do mkdir -p "$c/$REAL_BRIDGE-$i"; done
  if ! alive "$node-containerd"; then
    PATH="$(dirname "$(real_bin containerd-shim-runc-v2)"):$PATH" \
      start_as "$node-containerd" "$(real_bin containerd)" --config "$d/containerd.toml"
    wait_for "$node-containerd" "$START_TIMEOUT" "containerd of $node answers" real_crictl "$node" version
  fi
  local img; img="$(pause_image_name)"
  if ! real_ctr "$node" images ls -q 2>/dev/null | grep -qxF "$img"; then
    real_ctr "$node" images import "$(dirname "$(ls -t "$CACHE"/pause-*/image-name | head -n 1)")/pause.oci.tar" >/dev/null 2>&1 ||
      die "could not import the pause image into $node"
  fi
  if ! alive "$node-kubelet"; then
    start_as "$node-kubelet" "$(real_bin kubelet)" --config="$d/kubelet.yaml" --kubeconfig="$d/kubelet.kubeconfig" \
      --root-dir="$d/kubelet" --cert-dir="$d/kubelet/pki" --hostname-override="$node" --node-ip="$ip" \
      --node-labels="$REAL_LABEL=true"
  fi
}

node_ready() {
  [[ "$(kubectl_admin get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

# start_real_nodes N: real-0 .. real-(N-1), each Ready; nodes beyond N are removed (with
# N = 0, the bridge too).
start_real_nodes() {
  local n="$1" i node
  for node in $(real_nodes_present); do
    ((${node#real-} < n)) || stop_real_node "$node"
  done
  # No real node wanted: the bridge goes too (e2e/real-nodes-suite's teardown).
  ((n > 0)) || { stop_real_nodes; return 0; }
  ((n <= 200)) || die "--real-nodes $n: at most 200"
  command -v runc >/dev/null || die "runc is not installed (apt-get install runc)"
  command -v socat >/dev/null || die "socat is not installed (apt-get install socat)"
  ((EUID == 0)) || die "real nodes need root (bridge, mounts, cgroups)"
  real_bridge_up "$n"
  real_dns_up
  real_api_forward_up
  for ((i = 0; i < n; i++)); do start_real_node "real-$i" "$i"; done
  for ((i = 0; i < n; i++)); do
    wait_for "real-$i-kubelet" "$REAL_READY_TIMEOUT" "node real-$i is Ready" node_ready "real-$i"
  done
  log "$n real node(s) Ready: $(for ((i = 0; i < n; i++)); do printf 'real-%s ' "$i"; done)"
}

# stop_real_node NODE: kubelet first (so nothing is restarted), then every pod sandbox
# through the CRI (stops containers, tears down their network namespaces and CNI
# addresses), containerd, leftover shims, mounts, cgroups, the Node object and the state.
stop_real_node() {
  local node="$1" d="$REAL_DIR/$1" i="${1#real-}" c
  stop "$node-kubelet"
  if alive "$node-containerd"; then
    real_crictl "$node" rmp --all --force >/dev/null 2>&1 || log "WARNING: could not remove the pods of $node"
  fi
  stop "$node-containerd"
  local pid
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $d/containerd.sock" || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  local m
  for m in $(awk -v p="$d/" 'index($2, p) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || log "WARNING: could not unmount $m"
  done
  for c in $(cgroup_mounts); do
    [[ -d "$c/$REAL_BRIDGE-$i" ]] && find "$c/$REAL_BRIDGE-$i" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  if [[ -s "$STATE/admin.kubeconfig" ]] && alive kube-apiserver; then
    kubectl_admin delete node "$node" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  fi
  local ip pl
  read -r ip _ _ pl <<<"$(real_net "$i")"
  ip addr del "$ip/$pl" dev "$REAL_BRIDGE" 2>/dev/null || true
  rm -rf "$d"
  rm -f "$PKI/$node.crt" "$PKI/$node.key" "$PKI/$node-serving.crt" "$PKI/$node-serving.key"
  log "removed real node $node"
}

# stop_real_nodes: every real node of this state dir, then the bridge.
stop_real_nodes() {
  local node
  for node in $(real_nodes_present); do stop_real_node "$node"; done
  stop real-coredns real-api-forward
  rm -rf "$REAL_DIR/coredns" "$REAL_DIR/api-address"
  if ip link show "$REAL_BRIDGE" >/dev/null 2>&1; then
    ip link del "$REAL_BRIDGE" && log "removed bridge $REAL_BRIDGE"
  fi
  return 0
}
