//! `deepseek-operator`: `run` the controller, `plan` a deployment, print the `crd`, `render`
//! what a manifest becomes.

use clap::{Parser, Subcommand};
use deepseek_operator::cli;

#[derive(Parser)]
#[command(
    name = "deepseek-operator",
    version,
    about = "Deploys DeepSeek models on accelerator clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Size a deployment: accelerators, nodes, TP x PP layout, memory.
    Plan(Box<cli::plan::PlanArgs>),
    /// Print the DeepSeekModel CRD as YAML.
    Crd,
    /// Run the controller.
    Run(cli::run::RunArgs),
    /// Print the pods and Services a manifest becomes on the given Nodes.
    Render(cli::render::RenderArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan(args) => cli::plan::run(&args),
        Command::Crd => cli::crd::render(),
        Command::Run(args) => cli::run::run(args).map(|()| String::new()),
        Command::Render(args) => cli::render::run(&args),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            std::process::ExitCode::from(2)
        }
    }
}
