//! Conditions: set one by type, keeping its transition time when nothing changed, so an
//! unchanged world yields an identical status and no write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const PLANNED: &str = "Planned";
pub const SCHEDULED: &str = "Scheduled";
pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// Sets condition `type_`, reusing the previous transition time when its status did not
/// change.
pub fn set(
    previous: &[Condition],
    out: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) {
    let status_s = if status { "True" } else { "False" };
    let last = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status_s)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
    out.retain(|c| c.type_ != type_);
    out.push(Condition {
        type_: type_.into(),
        status: status_s.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: last,
    });
}

pub fn get<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_survives_unchanged_status() {
        let mut first = Vec::new();
        set(&[], &mut first, PLANNED, true, "Planned", "ok", Some(1));
        let mut second = Vec::new();
        set(&first, &mut second, PLANNED, true, "Planned", "ok", Some(1));
        assert_eq!(first, second);
        let mut third = Vec::new();
        set(
            &second,
            &mut third,
            PLANNED,
            false,
            "InsufficientAccelerators",
            "no",
            Some(2),
        );
        assert_eq!(
            get(&third, PLANNED).map(|c| c.status.as_str()),
            Some("False")
        );
    }
}
