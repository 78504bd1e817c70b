//! The committed CRD under crds/ must be exactly what the Rust types generate.

use std::path::Path;

#[test]
fn committed_crd_matches_the_generated_one() {
    let generated = deepseek_operator::cli::crd::render().expect("renders");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crds/deepseekmodels.inference.deepseek-operator.dev.yaml");
    let committed = std::fs::read_to_string(&path).expect("committed CRD exists");
    assert!(
        committed == generated,
        "crds/ is stale: run `cargo run -p deepseek-operator -- crd > {}`",
        path.display()
    );
}

#[test]
fn crd_declares_scale_subresource_short_name_and_list_map_conditions() {
    let text = deepseek_operator::cli::crd::render().expect("renders");
    let crd: serde_json::Value = serde_yaml::from_str(&text).expect("yaml");
    let v = &crd["spec"]["versions"][0];
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "dsm");
    assert_eq!(
        v["subresources"]["scale"]["specReplicasPath"],
        ".spec.replicas"
    );
    assert_eq!(
        v["subresources"]["scale"]["labelSelectorPath"],
        ".status.selector"
    );
    let conds = &v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conds["x-kubernetes-list-type"], "map");
    assert_eq!(conds["x-kubernetes-list-map-keys"][0], "type");
    let cols: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for want in [
        "Model",
        "Quant",
        "Accel/Replica",
        "TPxPP",
        "Ready",
        "Desired",
        "Age",
    ] {
        assert!(
            cols.contains(&want),
            "missing printer column {want}: {cols:?}"
        );
    }
}
