//! A rendered process invocation (`CommandLine`) and the steps a pod runs (`LaunchSteps`).

use serde::{Deserialize, Serialize};

/// One process to start: program, arguments and extra environment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CommandLine {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl CommandLine {
    pub fn new(program: impl Into<String>) -> Self {
        CommandLine {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Appends arguments.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    /// Appends a flag and its value as two arguments.
    pub fn flag(self, name: &str, value: impl ToString) -> Self {
        self.arg(name).arg(value.to_string())
    }

    /// Adds an environment variable.
    pub fn with_env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.push((k.to_string(), v.into()));
        self
    }

    /// The value following `flag` in the arguments, if present.
    pub fn flag_value(&self, flag: &str) -> Option<&str> {
        let pos = self.args.iter().position(|a| a == flag)?;
        self.args.get(pos + 1).map(String::as_str)
    }

    /// Whether `arg` appears verbatim among the arguments.
    pub fn has_arg(&self, arg: &str) -> bool {
        self.args.iter().any(|a| a == arg)
    }

    /// The value of an environment variable set by this command line.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Replaces every `$(NAME)` in program, args and env values with its value from `vars`
    /// (Kubernetes' own syntax for container args). Unknown names stay as they are.
    pub fn expand(&self, vars: &[(&str, &str)]) -> CommandLine {
        let sub = |s: &str| {
            let mut out = s.to_string();
            for (name, value) in vars {
                out = out.replace(&format!("$({name})"), value);
            }
            out
        };
        CommandLine {
            program: sub(&self.program),
            args: self.args.iter().map(|a| sub(a)).collect(),
            env: self.env.iter().map(|(k, v)| (k.clone(), sub(v))).collect(),
        }
    }

    /// A POSIX-shell rendering (`K=V program args...`), quoted where needed; for display
    /// and annotations.
    pub fn to_shell(&self) -> String {
        let mut parts: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", shell_quote(v)))
            .collect();
        parts.push(shell_quote(&self.program));
        parts.extend(self.args.iter().map(|a| shell_quote(a)));
        parts.join(" ")
    }
}

/// Quotes a word for a POSIX shell, leaving plain words untouched.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What one pod runs: `prepare` steps to completion, in order, then `serve` for the
/// pod's lifetime (`None`: the launcher just holds the pod, e.g. sim workers).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LaunchSteps {
    pub prepare: Vec<CommandLine>,
    pub serve: Option<CommandLine>,
}

impl LaunchSteps {
    /// All steps as one shell line joined with `&&` (`serve` last), for display.
    pub fn to_shell(&self) -> String {
        self.prepare
            .iter()
            .chain(self.serve.iter())
            .map(CommandLine::to_shell)
            .collect::<Vec<_>>()
            .join(" && ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        let c = CommandLine::new("vllm")
            .arg("serve")
            .arg("a b")
            .arg("it's")
            .arg("")
            .with_env("X", "$(DSO_POD_IP)");
        assert_eq!(
            c.to_shell(),
            r#"X='$(DSO_POD_IP)' vllm serve 'a b' 'it'\''s' ''"#
        );
    }

    #[test]
    fn expands_placeholders() {
        let c = CommandLine::new("p")
            .flag("--host", "$(DSO_POD_IP)")
            .with_env("HCCL_IF_IP", "$(DSO_POD_IP)");
        let e = c.expand(&[("DSO_POD_IP", "127.0.0.5")]);
        assert_eq!(e.flag_value("--host"), Some("127.0.0.5"));
        assert_eq!(e.env_value("HCCL_IF_IP"), Some("127.0.0.5"));
    }
}
