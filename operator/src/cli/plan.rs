//! `deepseek-operator plan`: the planner on the command line.
//! (Filled in by the planner work; this is the interface main.rs calls.)

use clap::Args;

#[derive(Args, Debug)]
pub struct PlanArgs {}

pub fn run(_args: &PlanArgs) -> Result<String, String> {
    Err("plan: not built yet".into())
}
