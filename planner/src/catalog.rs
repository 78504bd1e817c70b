//! The model and accelerator catalogs: data in YAML (embedded at build time), so
//! adding a model or a GPU is a data change, and operators can override or extend
//! either list from a file without rebuilding.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::{Accelerator, ModelArch};

const MODELS_YAML: &str = include_str!("../catalog/models.yaml");
const ACCELERATORS_YAML: &str = include_str!("../catalog/accelerators.yaml");

/// Why a catalog file was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot parse {what} catalog: {message}")]
    Parse { what: &'static str, message: String },
    #[error("duplicate {what} id '{id}' in one catalog file")]
    Duplicate { what: &'static str, id: String },
    #[error("invalid catalog entry: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsFile {
    models: Vec<ModelArch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceleratorsFile {
    accelerators: Vec<Accelerator>,
}

/// Models and accelerators, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    models: Vec<ModelArch>,
    accelerators: Vec<Accelerator>,
}

/// Parses YAML with anchors and `<<` merge keys into `T`.
fn parse_yaml<T: serde::de::DeserializeOwned>(
    what: &'static str,
    text: &str,
) -> Result<T, CatalogError> {
    let err = |e: serde_yaml::Error| CatalogError::Parse {
        what,
        message: e.to_string(),
    };
    let mut value: serde_yaml::Value = serde_yaml::from_str(text).map_err(err)?;
    value.apply_merge().map_err(err)?;
    serde_yaml::from_value(value).map_err(err)
}

/// Replaces entries with the same id, appends new ones; rejects duplicate ids.
fn merge<T: Clone>(
    what: &'static str,
    base: &mut Vec<T>,
    extra: Vec<T>,
    id: impl Fn(&T) -> &str,
) -> Result<(), CatalogError> {
    let mut seen = BTreeMap::new();
    for item in &extra {
        if seen.insert(id(item).to_string(), ()).is_some() {
            return Err(CatalogError::Duplicate {
                what,
                id: id(item).to_string(),
            });
        }
    }
    for item in extra {
        match base.iter_mut().find(|b| id(b) == id(&item)) {
            Some(slot) => *slot = item,
            None => base.push(item),
        }
    }
    Ok(())
}

impl Catalog {
    /// The embedded catalogs, parsed once.
    ///
    /// The embedded YAML is checked by the crate's tests; if it were ever broken
    /// this panics with the parse error rather than planning with a partial catalog.
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN.get_or_init(|| match Catalog::from_yaml(None, None) {
            Ok(c) => c,
            Err(e) => panic!("embedded catalog is invalid: {e}"),
        })
    }

    /// The embedded catalogs, with entries from the given YAML texts replacing
    /// (same id) or extending the built-in ones. Each text has the embedded
    /// file's shape: `models: [...]` or `accelerators: [...]`.
    pub fn from_yaml(
        models_yaml: Option<&str>,
        accelerators_yaml: Option<&str>,
    ) -> Result<Catalog, CatalogError> {
        let mut models = Vec::new();
        let mut accelerators = Vec::new();
        let builtin_models: ModelsFile = parse_yaml("models", MODELS_YAML)?;
        merge("model", &mut models, builtin_models.models, |m| &m.id)?;
        let builtin_accs: AcceleratorsFile = parse_yaml("accelerators", ACCELERATORS_YAML)?;
        merge(
            "accelerator",
            &mut accelerators,
            builtin_accs.accelerators,
            |a| &a.id,
        )?;
        if let Some(text) = models_yaml {
            let file: ModelsFile = parse_yaml("models", text)?;
            merge("model", &mut models, file.models, |m| &m.id)?;
        }
        if let Some(text) = accelerators_yaml {
            let file: AcceleratorsFile = parse_yaml("accelerators", text)?;
            merge("accelerator", &mut accelerators, file.accelerators, |a| {
                &a.id
            })?;
        }
        for m in &models {
            if m.id.is_empty() {
                return Err(CatalogError::Invalid("a model has an empty id".into()));
            }
            m.validate().map_err(CatalogError::Invalid)?;
        }
        for a in &accelerators {
            if a.id.is_empty() {
                return Err(CatalogError::Invalid(
                    "an accelerator has an empty id".into(),
                ));
            }
            a.validate().map_err(CatalogError::Invalid)?;
            for alias in &a.aliases {
                if let Some(other) = accelerators.iter().find(|o| {
                    o.id.eq_ignore_ascii_case(alias)
                        || (o.id != a.id && o.aliases.iter().any(|x| x.eq_ignore_ascii_case(alias)))
                }) {
                    return Err(CatalogError::Invalid(format!(
                        "accelerator {}: alias '{alias}' is already {}'s",
                        a.id, other.id
                    )));
                }
            }
        }
        Ok(Catalog {
            models,
            accelerators,
        })
    }

    pub fn model(&self, id: &str) -> Option<&ModelArch> {
        self.models.iter().find(|m| m.id.eq_ignore_ascii_case(id))
    }

    /// The accelerator with this id, or with this among its aliases.
    pub fn accelerator(&self, id: &str) -> Option<&Accelerator> {
        self.accelerators.iter().find(|a| {
            a.id.eq_ignore_ascii_case(id) || a.aliases.iter().any(|x| x.eq_ignore_ascii_case(id))
        })
    }

    pub fn models(&self) -> &[ModelArch] {
        &self.models
    }

    pub fn accelerators(&self) -> &[Accelerator] {
        &self.accelerators
    }

    /// The catalog accelerator a node carries, from its labels (GPU feature
    /// discovery, GKE/EKS/AKS, AMD node labeller, Ascend MindCluster); `None` for
    /// nodes without a recognised accelerator (CPU pools are declared, not detected).
    pub fn identify(&self, labels: &BTreeMap<String, String>) -> Option<&Accelerator> {
        self.accelerators.iter().find(|a| a.matches_labels(labels))
    }

    /// `identify` over any label lookup.
    pub fn identify_by<'a>(&self, label: &dyn Fn(&str) -> Option<&'a str>) -> Option<&Accelerator> {
        self.accelerators
            .iter()
            .find(|a| a.matches_labels_by(label))
    }
}
