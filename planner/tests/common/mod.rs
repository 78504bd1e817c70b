//! Shared by the planner's integration tests.

use deepseek_planner::{plan, Catalog, Plan, PlanError, PlanRequest, Quantization};

/// Plans `model` in `quant` on `acc` from the built-in catalog, after `tweak` changed the
/// request (`|_| {}` for the defaults). Panics on a model or accelerator the catalog does
/// not know: the names come from the test itself.
pub fn run(
    model: &str,
    quant: Quantization,
    acc: &str,
    tweak: impl FnOnce(&mut PlanRequest),
) -> Result<Plan, PlanError> {
    let c = Catalog::builtin();
    let m = c.model(model).unwrap_or_else(|| panic!("model {model}"));
    let a = c
        .accelerator(acc)
        .unwrap_or_else(|| panic!("accelerator {acc}"));
    let mut req = PlanRequest::new(m, quant, a);
    tweak(&mut req);
    plan(&req)
}
