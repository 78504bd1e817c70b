"""The same workload in each operator's own API: N models of DeepSeek-R1-Distill-Qwen-14B
(bf16), each one 8-GPU H100 pod, or groups of two 8-GPU pods (DeepSeek-R1-0528 FP8,
16 GPUs). Each function returns the objects for one model and the label that marks
its pods, so the runner can tell which pods belong to which model."""

SINGLE_HF = "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"
GROUP_HF = "deepseek-ai/DeepSeek-R1-0528"
VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"


def model_name(i: int) -> str:
    return f"m{i:02d}"


# ------------------------------------------------------------------ ours

def ours(ns: str, i: int, group: bool) -> dict:
    spec = {
        "model": "deepseek-r1-0528" if group else "deepseek-r1-distill-qwen-14b",
        "quantization": "fp8" if group else "bf16",
        "accelerator": {"vendor": "nvidia", "product": "h100-80gb"},
        "replicas": 1,
    }
    if not group:
        # The planner would fit the 14B model on fewer GPUs; the benchmark sizes every
        # peer to one whole 8-GPU node (Kaito always requests a node's GPUs).
        spec["parallelism"] = {"tensor": 8}
    else:
        spec["serving"] = {"maxModelLen": 16384}
    return {"apiVersion": "inference.deepseek-operator.dev/v1alpha1", "kind": "DeepSeekModel",
            "metadata": {"name": model_name(i), "namespace": ns}, "spec": spec}


OURS_LABEL = "app.kubernetes.io/instance"

# ------------------------------------------------------------------ LWS


def _vllm_container(args: list, gpus: int) -> dict:
    return {
        "name": "vllm", "image": VLLM_IMAGE, "command": ["sh", "-c"], "args": [" ".join(args)],
        "ports": [{"containerPort": 8080, "name": "http"}],
        "env": [{"name": "HF_HOME", "value": "/models"}],
        "resources": {"limits": {"nvidia.com/gpu": str(gpus), "cpu": "32", "memory": "512Gi"},
                      "requests": {"nvidia.com/gpu": str(gpus), "cpu": "32", "memory": "512Gi"}},
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
    }


def _pod_spec(container: dict, readiness: bool) -> dict:
    if readiness:
        container["readinessProbe"] = {"httpGet": {"path": "/health", "port": 8080},
                                       "initialDelaySeconds": 15, "periodSeconds": 10}
    return {"containers": [container],
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}}]}


def lws(ns: str, i: int, group: bool) -> dict:
    """What a platform engineer writes from vLLM's LWS guide: size 1 runs `vllm serve`
    alone; size 2 starts a Ray head on the leader and a Ray worker that joins it."""
    if not group:
        worker = _pod_spec(_vllm_container(
            ["vllm", "serve", SINGLE_HF, "--port", "8080", "--tensor-parallel-size", "8"], 8), True)
        tmpl = {"size": 1, "restartPolicy": "RecreateGroupOnPodRestart",
                "workerTemplate": {"metadata": {}, "spec": worker}}
    else:
        leader = _pod_spec(_vllm_container(
            ["bash", "/vllm-workspace/examples/online_serving/multi-node-serving.sh", "leader",
             "--ray_cluster_size=$(LWS_GROUP_SIZE);", "vllm", "serve", GROUP_HF, "--port", "8080",
             "--tensor-parallel-size", "8", "--pipeline-parallel-size", "2"], 8), True)
        worker = _pod_spec(_vllm_container(
            ["bash", "/vllm-workspace/examples/online_serving/multi-node-serving.sh", "worker",
             "--ray_address=$(LWS_LEADER_ADDRESS)"], 8), False)
        tmpl = {"size": 2, "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": {"metadata": {}, "spec": leader},
                "workerTemplate": {"metadata": {}, "spec": worker}}
    return {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
            "metadata": {"name": model_name(i), "namespace": ns},
            "spec": {"replicas": 1, "leaderWorkerTemplate": tmpl}}


LWS_LABEL = "leaderworkerset.sigs.k8s.io/name"

# ------------------------------------------------------------------ Kaito


def kaito(ns: str, i: int, group: bool) -> dict:
    """A Workspace with a preset and a label selector over the H100 nodes. The benchmark
    annotation is set: Kaito's post-load benchmark reads pod logs, which would make the
    API server dial a simulated node."""
    return {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
            "metadata": {"name": model_name(i), "namespace": ns,
                         "annotations": {"kaito.sh/disable-benchmark": "true"}},
            "resource": {"count": 2 if group else 1, "instanceType": "Standard_ND96isr_H100_v5",
                         "labelSelector": {"matchLabels": {"bench.deepseek.ai/gpu-pool": "h100"}}},
            "inference": {"preset": {"name": "deepseek-r1-0528" if group else "deepseek-r1-distill-qwen-14b"}}}


KAITO_LABEL = "kaito.sh/workspace"

WORKLOADS = {"ours": (ours, OURS_LABEL), "lws": (lws, LWS_LABEL), "kaito": (kaito, KAITO_LABEL)}
KINDS = {"ours": "deepseekmodels.inference.deepseek-operator.dev", "lws": "leaderworkersets.leaderworkerset.x-k8s.io",
         "kaito": "workspaces.kaito.sh"}
