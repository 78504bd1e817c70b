//! Watches the model object (a DeepSeekModel or a LeaderWorkerSet) and prints each
//! change of `spec.replicas`: the moment an autoscaler's decision reached the API server,
//! as seen by a separate process. An unset count on a DeepSeekModel is its minimum, 1
//! in the benchmark (our autoscaler writes it on its first scale).

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::watcher;
use kube::{Api, Client};

use crate::{emit, Kind};

fn resource(kind: Kind) -> ApiResource {
    let (group, version, kind_name, plural) = match kind {
        Kind::Ours => (
            "inference.deepseek-operator.dev",
            "v1alpha1",
            "DeepSeekModel",
            "deepseekmodels",
        ),
        Kind::Lws => (
            "leaderworkerset.x-k8s.io",
            "v1",
            "LeaderWorkerSet",
            "leaderworkersets",
        ),
    };
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: kind_name.into(),
        plural: plural.into(),
    }
}

pub async fn watch(client: Client, ns: String, model: String, kind: Kind) {
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &resource(kind));
    let cfg = watcher::Config::default().fields(&format!("metadata.name={model}"));
    let mut stream = watcher(api, cfg).boxed();
    let mut last: Option<i64> = None;
    while let Some(ev) = stream.next().await {
        let obj = match ev {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => o,
            _ => continue,
        };
        let n = obj.data["spec"]["replicas"].as_i64().unwrap_or(1);
        if last != Some(n) {
            emit("replicas", n);
            last = Some(n);
        }
    }
}
