//! Kubernetes Events about models (events.k8s.io/v1), with repeats folded into a series.
//!
//! kube-runtime's `Recorder` does this too, but it keeps every Event it wrote, whole, in a
//! hash table for six minutes (a table whose capacity never shrinks): at 1,000 models
//! converging that was 7 MB of the operator's heap, its third largest item (issue 12).
//! Its key also holds the object's resourceVersion, which changes with every status write
//! of a model, so a repeat was seldom recognised, and a repeat's patch resent the first
//! note, not the new one.
//!
//! Here a repeat is the same type, reason, action and note about the same object (by
//! UID) within [`SERIES_WINDOW`]; it bumps the first Event's `series` instead of creating
//! another. All that is kept per recent Event is a 64-bit key, its name and its count.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// How long a written Event takes repeats into its series (kube-runtime's and client-go's
/// figure).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// The longest note written (the API server refuses notes over 1 kB).
const MAX_NOTE: usize = 1000;

/// One Event to write.
pub struct Note<'a> {
    pub warning: bool,
    pub reason: &'a str,
    pub action: &'a str,
    pub note: &'a str,
}

/// How often expired entries are swept: a sweep walks every entry, so not on every Event
/// (a thousand models converging publish thousands within a minute).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A recently written Event: enough to extend its series.
struct Recent {
    name: String,
    count: i32,
    written: Instant,
}

/// Writes Events as `controller` (instance `instance`), folding repeats.
pub struct EventWriter {
    client: Client,
    controller: String,
    instance: String,
    recent: Mutex<Recents>,
}

/// The recent Events, and when expired ones were last swept out.
struct Recents {
    by_key: HashMap<u64, Recent>,
    swept: Instant,
}

/// What a repeat must share with the Event it repeats.
fn key(regarding: &ObjectReference, n: &Note<'_>) -> u64 {
    let mut h = DefaultHasher::new();
    (
        &regarding.uid,
        &regarding.namespace,
        &regarding.name,
        &regarding.kind,
        n.warning,
        n.reason,
        n.action,
        n.note,
    )
        .hash(&mut h);
    h.finish()
}

/// The Event of a first occurrence.
pub fn first_event(
    controller: &str,
    instance: &str,
    regarding: &ObjectReference,
    n: &Note<'_>,
    now: Timestamp,
) -> Event {
    let name = format!(
        "{}.{:x}",
        regarding.name.as_deref().unwrap_or(controller),
        now.as_nanosecond()
    );
    Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: regarding.namespace.clone(),
            ..Default::default()
        },
        action: Some(n.action.to_string()),
        reason: Some(n.reason.to_string()),
        note: Some(n.note.chars().take(MAX_NOTE).collect()),
        event_time: Some(MicroTime(now)),
        regarding: Some(ObjectReference {
            // The version the Event was about is noise to a reader and to the key.
            resource_version: None,
            ..regarding.clone()
        }),
        reporting_controller: Some(controller.to_string()),
        reporting_instance: Some(instance.to_string()),
        type_: Some(if n.warning { "Warning" } else { "Normal" }.to_string()),
        ..Default::default()
    }
}

impl EventWriter {
    pub fn new(client: Client, controller: &str, instance: &str) -> EventWriter {
        EventWriter {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
            recent: Mutex::new(Recents {
                by_key: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    /// Writes the Event, or extends the series of the same Event written within
    /// [`SERIES_WINDOW`].
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        n: Note<'_>,
    ) -> Result<(), kube::Error> {
        let k = key(regarding, &n);
        let now = Instant::now();
        let repeat = self.recent.lock().ok().and_then(|mut recent| {
            if now.duration_since(recent.swept) >= SWEEP_EVERY {
                recent.swept = now;
                let map = &mut recent.by_key;
                map.retain(|_, r| now.duration_since(r.written) < SERIES_WINDOW);
                if map.capacity() > 4 * map.len().max(64) {
                    map.shrink_to_fit();
                }
            }
            // An entry past the window is not a repeat, swept or not.
            recent
                .by_key
                .get(&k)
                .filter(|r| now.duration_since(r.written) < SERIES_WINDOW)
                .map(|r| (r.name.clone(), r.count + 1))
        });
        let ns = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let stamp = Timestamp::now();
        let (name, count) = match repeat {
            Some((name, count)) => {
                let series = Event {
                    series: Some(EventSeries {
                        count,
                        last_observed_time: MicroTime(stamp),
                    }),
                    ..Default::default()
                };
                match events
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                    .await
                {
                    Ok(_) => (name, count),
                    // Gone (expired by the API server's TTL): start a new one.
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        self.create(&events, regarding, &n, stamp).await?
                    }
                    Err(e) => return Err(e),
                }
            }
            None => self.create(&events, regarding, &n, stamp).await?,
        };
        if let Ok(mut recent) = self.recent.lock() {
            // The window counts from the last observation, as the series' own time does.
            recent.by_key.insert(
                k,
                Recent {
                    name,
                    count,
                    written: now,
                },
            );
        }
        Ok(())
    }

    async fn create(
        &self,
        events: &Api<Event>,
        regarding: &ObjectReference,
        n: &Note<'_>,
        stamp: Timestamp,
    ) -> Result<(String, i32), kube::Error> {
        let ev = first_event(&self.controller, &self.instance, regarding, n, stamp);
        let name = ev.metadata.name.clone().unwrap_or_default();
        events.create(&PostParams::default(), &ev).await?;
        Ok((name, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(uid: &str, rv: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("inference.deepseek-operator.dev/v1alpha1".into()),
            kind: Some("DeepSeekModel".into()),
            name: Some("m".into()),
            namespace: Some("ns".into()),
            uid: Some(uid.into()),
            resource_version: Some(rv.into()),
            ..Default::default()
        }
    }

    fn note<'a>(reason: &'a str, text: &'a str) -> Note<'a> {
        Note {
            warning: false,
            reason,
            action: "Reconcile",
            note: text,
        }
    }

    #[test]
    fn a_repeat_is_the_same_words_about_the_same_object_whatever_its_version() {
        let a = key(&model("u1", "10"), &note("Planned", "x"));
        assert_eq!(a, key(&model("u1", "11"), &note("Planned", "x")));
        assert_ne!(
            a,
            key(&model("u2", "10"), &note("Planned", "x")),
            "another object"
        );
        assert_ne!(
            a,
            key(&model("u1", "10"), &note("Planned", "y")),
            "a new note"
        );
        assert_ne!(
            a,
            key(&model("u1", "10"), &note("Scaled", "x")),
            "another reason"
        );
    }

    #[test]
    fn the_first_event_names_its_object_without_a_version_and_caps_the_note() {
        let long = "n".repeat(5000);
        let at = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let ev = first_event(
            "ctl",
            "pod-1",
            &model("u1", "10"),
            &note("Planned", &long),
            at,
        );
        assert_eq!(ev.note.as_deref().map(str::len), Some(MAX_NOTE));
        assert_eq!(
            ev.regarding
                .as_ref()
                .and_then(|r| r.resource_version.clone()),
            None
        );
        assert_eq!(
            ev.regarding.as_ref().and_then(|r| r.uid.as_deref()),
            Some("u1")
        );
        assert_eq!(ev.metadata.namespace.as_deref(), Some("ns"));
        assert!(ev
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("m.")));
        assert_eq!(ev.type_.as_deref(), Some("Normal"));
        assert_eq!(ev.reporting_instance.as_deref(), Some("pod-1"));
        assert!(ev.series.is_none());
    }
}
