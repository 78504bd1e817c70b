//! Catalog contents, file overrides and node-label identification.

use std::collections::BTreeMap;

use deepseek_planner::{Attention, Catalog, CatalogError, Quantization, Vendor};

const MODELS: [&str; 25] = [
    "deepseek-r1",
    "deepseek-r1-0528",
    "deepseek-r1-zero",
    "deepseek-v3",
    "deepseek-v3-0324",
    "deepseek-v3.1",
    "deepseek-v3.2-exp",
    "deepseek-v3.2",
    "deepseek-v3.2-speciale",
    "deepseek-v2",
    "deepseek-v2-chat",
    "deepseek-v2-lite",
    "deepseek-coder-v2",
    "deepseek-coder-v2-lite",
    "deepseek-llm-7b",
    "deepseek-llm-67b",
    "deepseek-coder-1.3b",
    "deepseek-coder-6.7b",
    "deepseek-coder-33b",
    "deepseek-r1-distill-qwen-1.5b",
    "deepseek-r1-distill-qwen-7b",
    "deepseek-r1-distill-qwen-14b",
    "deepseek-r1-distill-qwen-32b",
    "deepseek-r1-distill-llama-8b",
    "deepseek-r1-distill-llama-70b",
];

const ACCELERATORS: [&str; 27] = [
    "h100-80gb",
    "h200",
    "h800",
    "h20-141gb",
    "h20",
    "b200",
    "b300",
    "gb200",
    "gb300",
    "a100-40gb",
    "a100-80gb",
    "l40s",
    "l4",
    "a10g",
    "rtx-4090",
    "rtx-3090",
    "rtx-3060-12gb",
    "jetson-orin",
    "mi300x",
    "mi325x",
    "mi355x",
    "mi250",
    "ascend-910b",
    "ascend-910c",
    "ascend-910c-card",
    "ascend-310p",
    "cpu",
];

#[test]
fn builtin_has_every_model_and_accelerator() {
    let c = Catalog::builtin();
    for id in MODELS {
        assert!(c.model(id).is_some(), "model {id}");
    }
    for id in ACCELERATORS {
        assert!(c.accelerator(id).is_some(), "accelerator {id}");
    }
    assert_eq!(c.models().len(), MODELS.len());
    assert_eq!(c.accelerators().len(), ACCELERATORS.len());
}

#[test]
fn model_facts() {
    let c = Catalog::builtin();
    let r1 = c.model("deepseek-r1").expect("r1");
    assert_eq!(r1.hf_repo, "deepseek-ai/DeepSeek-R1");
    assert_eq!(r1.attention, Attention::Mla);
    assert_eq!((r1.total_params_b, r1.active_params_b), (671.0, 37.0));
    assert_eq!(
        (r1.layers, r1.hidden_size, r1.attention_heads),
        (61, 7168, 128)
    );
    assert_eq!(
        (r1.kv_lora_rank, r1.qk_rope_head_dim),
        (Some(512), Some(64))
    );
    assert_eq!(
        (r1.vocab_size, r1.max_position_embeddings),
        (129_280, 163_840)
    );
    assert_eq!(r1.native_dtype, Quantization::Fp8);
    assert_eq!(r1.moe.as_ref().map(|m| m.routed_experts), Some(256));
    // Merged from the V3 anchor but with their own repos.
    assert_eq!(
        c.model("deepseek-v3.1").expect("v3.1").hf_repo,
        "deepseek-ai/DeepSeek-V3.1"
    );
    let lite = c.model("deepseek-coder-v2-lite").expect("lite");
    assert_eq!(
        (lite.layers, lite.attention_heads, lite.total_params_b),
        (27, 16, 15.7)
    );
    assert_eq!(lite.native_dtype, Quantization::Bf16);
    let q7 = c.model("deepseek-r1-distill-qwen-7b").expect("q7");
    assert_eq!(
        (q7.attention, q7.kv_heads, q7.head_dim),
        (Attention::Gqa, 4, 128)
    );
    assert!(q7.moe.is_none());
}

#[test]
fn accelerator_facts() {
    let c = Catalog::builtin();
    let mib = |id: &str| c.accelerator(id).expect(id).memory_mib;
    assert_eq!(mib("h100-80gb"), 81_559);
    assert_eq!(mib("h200"), 143_771);
    assert_eq!(mib("a100-80gb"), 81_920);
    assert_eq!(mib("a100-40gb"), 40_960);
    assert_eq!(mib("l4"), 23_034);
    assert_eq!(mib("mi300x"), 192 * 1024);
    assert_eq!(mib("ascend-910b"), 64 * 1024);
    let h100 = c.accelerator("h100-80gb").expect("h100");
    assert!((h100.memory_gib() - 79.65).abs() < 0.01);
    assert_eq!(h100.resource.as_deref(), Some("nvidia.com/gpu"));
    assert!(h100.fp8);
    let res = |id: &str| c.accelerator(id).expect(id).resource.clone();
    assert_eq!(res("mi300x").as_deref(), Some("amd.com/gpu"));
    assert_eq!(res("ascend-910b").as_deref(), Some("huawei.com/Ascend910"));
    assert_eq!(res("ascend-310p").as_deref(), Some("huawei.com/Ascend310P"));
    assert_eq!(res("cpu"), None);
    assert_eq!(c.accelerator("cpu").expect("cpu").vendor, Vendor::Cpu);
    assert!(!c.accelerator("a100-80gb").expect("a100").fp8);
    assert!(!c.accelerator("ascend-910b").expect("910b").fp8);
    assert!(c.accelerator("l4").expect("l4").fp8);
}

/// Node labels and the accelerator id they should identify.
type LabelCase<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn identify_from_node_labels() {
    let c = Catalog::builtin();
    let table: &[LabelCase] = &[
        // NVIDIA GPU feature discovery
        (
            &[
                ("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),
                ("nvidia.com/gpu.count", "8"),
            ],
            Some("h100-80gb"),
        ),
        (&[("nvidia.com/gpu.product", "NVIDIA-H200")], Some("h200")),
        (
            &[("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-80GB")],
            Some("a100-80gb"),
        ),
        (
            &[("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-40GB")],
            Some("a100-40gb"),
        ),
        (&[("nvidia.com/gpu.product", "NVIDIA-L4")], Some("l4")),
        (&[("nvidia.com/gpu.product", "NVIDIA-L40S")], Some("l40s")),
        (
            &[("nvidia.com/gpu.product", "NVIDIA-GeForce-RTX-4090")],
            Some("rtx-4090"),
        ),
        (
            &[
                ("nvidia.com/gpu.product", "NVIDIA-GeForce-RTX-3060"),
                ("nvidia.com/gpu.memory", "12288"),
            ],
            Some("rtx-3060-12gb"),
        ),
        (
            &[
                ("nvidia.com/gpu.product", "NVIDIA-GeForce-RTX-3060"),
                ("nvidia.com/gpu.memory", "8192"),
            ],
            None,
        ),
        // A MIG slice is not a whole GPU.
        (
            &[(
                "nvidia.com/gpu.product",
                "NVIDIA-A100-SXM4-80GB-MIG-1g.10gb",
            )],
            None,
        ),
        // GKE
        (
            &[("cloud.google.com/gke-accelerator", "nvidia-h100-80gb")],
            Some("h100-80gb"),
        ),
        (
            &[("cloud.google.com/gke-accelerator", "nvidia-h200-141gb")],
            Some("h200"),
        ),
        (
            &[("cloud.google.com/gke-accelerator", "nvidia-l4")],
            Some("l4"),
        ),
        (
            &[("cloud.google.com/gke-accelerator", "nvidia-a100-80gb")],
            Some("a100-80gb"),
        ),
        (
            &[("cloud.google.com/gke-accelerator", "nvidia-tesla-a100")],
            Some("a100-40gb"),
        ),
        // EKS / AKS instance types
        (
            &[("node.kubernetes.io/instance-type", "p5.48xlarge")],
            Some("h100-80gb"),
        ),
        (
            &[("node.kubernetes.io/instance-type", "p5en.48xlarge")],
            Some("h200"),
        ),
        (
            &[("node.kubernetes.io/instance-type", "p4de.24xlarge")],
            Some("a100-80gb"),
        ),
        (
            &[("node.kubernetes.io/instance-type", "g6e.12xlarge")],
            Some("l40s"),
        ),
        (
            &[("node.kubernetes.io/instance-type", "g6.xlarge")],
            Some("l4"),
        ),
        (
            &[(
                "node.kubernetes.io/instance-type",
                "Standard_ND96isr_MI300X_v5",
            )],
            Some("mi300x"),
        ),
        (&[("node.kubernetes.io/instance-type", "m5.xlarge")], None),
        // AMD node labeller, current and beta prefixes
        (
            &[("amd.com/gpu.product-name", "AMD_Instinct_MI300X_OAM")],
            Some("mi300x"),
        ),
        (
            &[("beta.amd.com/gpu.product-name", "AMD_Instinct_MI300X_OAM")],
            Some("mi300x"),
        ),
        (&[("amd.com/gpu.device-id", "74a5")], Some("mi325x")),
        (&[("amd.com/gpu.device-id", "740c")], Some("mi250")),
        // Ascend MindCluster
        (
            &[
                ("accelerator", "huawei-Ascend910"),
                ("node.kubernetes.io/npu.chip.name", "910B3"),
            ],
            Some("ascend-910b"),
        ),
        (
            &[
                ("accelerator", "huawei-Ascend910"),
                ("node.kubernetes.io/npu.chip.name", "910C"),
            ],
            Some("ascend-910c"),
        ),
        (
            &[("accelerator-type", "module-910b-8")],
            Some("ascend-910b"),
        ),
        (&[("accelerator", "huawei-Ascend310P")], Some("ascend-310p")),
        // A chip name without the accelerator label is not enough.
        (&[("node.kubernetes.io/npu.chip.name", "910B3")], None),
        // Plain nodes
        (&[("kubernetes.io/os", "linux")], None),
        (&[], None),
    ];
    for (pairs, want) in table {
        let got = c.identify(&labels(pairs)).map(|a| a.id.as_str());
        assert_eq!(got, *want, "{pairs:?}");
    }
}

#[test]
fn files_override_and_extend_by_id() {
    let models = r#"
models:
  - id: deepseek-r1
    hf_repo: my-mirror/DeepSeek-R1
    attention: mla
    total_params_b: 671
    active_params_b: 37
    layers: 61
    hidden_size: 7168
    attention_heads: 128
    kv_heads: 128
    head_dim: 128
    kv_lora_rank: 512
    qk_rope_head_dim: 64
    vocab_size: 129280
    max_position_embeddings: 163840
    native_dtype: fp8
    trust_remote_code: false
  - id: my-finetune
    hf_repo: me/finetune
    attention: gqa
    total_params_b: 8
    active_params_b: 8
    layers: 32
    hidden_size: 4096
    attention_heads: 32
    kv_heads: 8
    head_dim: 128
    vocab_size: 128256
    max_position_embeddings: 131072
    native_dtype: bf16
    trust_remote_code: true
"#;
    let accs = r#"
accelerators:
  - id: rubin-test
    vendor: nvidia
    display_name: A future GPU, declared by the user
    memory_mib: 262144
    fp8: true
    typical_per_node: 8
    resource: nvidia.com/gpu
    node_labels:
      - key: nvidia.com/gpu.product
        values: [NVIDIA-Rubin-Test]
"#;
    let c = Catalog::from_yaml(Some(models), Some(accs)).expect("override");
    assert_eq!(
        c.model("deepseek-r1").expect("r1").hf_repo,
        "my-mirror/DeepSeek-R1"
    );
    assert!(c.model("my-finetune").is_some_and(|m| m.trust_remote_code));
    assert!(c
        .models()
        .iter()
        .filter(|m| m.id != "my-finetune")
        .all(|m| !m.trust_remote_code));
    assert_eq!(c.models().len(), MODELS.len() + 1);
    assert_eq!(c.accelerators().len(), ACCELERATORS.len() + 1);
    let added = c.identify(&labels(&[("nvidia.com/gpu.product", "NVIDIA-Rubin-Test")]));
    assert_eq!(added.map(|a| a.id.as_str()), Some("rubin-test"));
}

#[test]
fn bad_files_are_rejected_with_a_reason() {
    let parse = Catalog::from_yaml(Some("models: [ {id: x"), None);
    assert!(
        matches!(parse, Err(CatalogError::Parse { .. })),
        "{parse:?}"
    );
    let unknown_field = Catalog::from_yaml(Some("models:\n  - id: x\n    bogus: 1\n"), None);
    assert!(matches!(unknown_field, Err(CatalogError::Parse { .. })));
    let dup = "accelerators:\n  - {id: z, vendor: nvidia, display_name: Z, memory_mib: 1, typical_per_node: 1}\n  - {id: z, vendor: nvidia, display_name: Z, memory_mib: 1, typical_per_node: 1}\n";
    assert!(matches!(
        Catalog::from_yaml(None, Some(dup)),
        Err(CatalogError::Duplicate { .. })
    ));
    let zero = "accelerators:\n  - {id: z, vendor: nvidia, display_name: Z, memory_mib: 0, typical_per_node: 1}\n";
    let e = Catalog::from_yaml(None, Some(zero));
    assert!(matches!(e, Err(CatalogError::Invalid(_))), "{e:?}");
    if let Err(e) = e {
        assert!(!e.to_string().contains('\n'));
    }
}
