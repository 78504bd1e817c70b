//! Which namespaces the operator works in: every namespace (the chart's ClusterRole), or
//! only those given with `--namespaces` (the chart's namespaced mode, a Role per
//! namespace). Every list and watch of models, pods and services goes through here, so in
//! namespaced mode the operator never asks for anything its Roles do not grant.

use k8s_openapi::NamespaceResourceScope;
use kube::{Api, Client, Resource};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    #[default]
    All,
    /// Sorted, without duplicates, never empty.
    Namespaces(Vec<String>),
}

impl Scope {
    /// From `--namespaces` values: blanks dropped, duplicates merged; none means all.
    pub fn from_list(list: &[String]) -> Scope {
        let mut v: Vec<String> = list
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        v.sort();
        v.dedup();
        if v.is_empty() {
            Scope::All
        } else {
            Scope::Namespaces(v)
        }
    }

    /// One `Api` per watched namespace, or one cluster-wide `Api`.
    pub fn apis<K>(&self, client: &Client) -> Vec<Api<K>>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        match self {
            Scope::All => vec![Api::all(client.clone())],
            Scope::Namespaces(ns) => ns
                .iter()
                .map(|n| Api::namespaced(client.clone(), n))
                .collect(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Scope::All => "all namespaces".into(),
            Scope::Namespaces(ns) => format!("namespaces {}", ns.join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_trimmed_deduplicated_and_none_means_all() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(Scope::from_list(&[]), Scope::All);
        assert_eq!(Scope::from_list(&list(&["", " "])), Scope::All);
        assert_eq!(
            Scope::from_list(&list(&["b", " a", "b"])),
            Scope::Namespaces(list(&["a", "b"]))
        );
        assert_eq!(
            Scope::from_list(&list(&["b", "a"])).describe(),
            "namespaces a,b"
        );
    }
}
