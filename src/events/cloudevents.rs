//! CloudEvents 1.0, structured content mode
//! (<https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/http-protocol-binding.md>):
//! the whole event, attributes and `data`, is the JSON body sent with
//! `Content-Type: application/cloudevents+json`.

use serde_json::{json, Value};

use super::DeploymentEvent;

/// The media type of a structured-mode JSON CloudEvent.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// The `type` attribute: `dev.shipgate.deploy.<event_type>`.
pub fn event_type(event: &DeploymentEvent) -> String {
    format!("dev.shipgate.deploy.{}", event.event_type.as_str())
}

/// The envelope around `event`: `id` identifies this event (receivers deduplicate on
/// `source` + `id`), `subject` is the app.
pub fn envelope(event: &DeploymentEvent, id: &str, source: &str, subject: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": event_type(event),
        "time": event.timestamp,
        "subject": subject,
        "datacontenttype": "application/json",
        "data": event,
    })
}
