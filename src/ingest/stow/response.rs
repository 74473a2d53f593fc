//! The STOW-RS response (PS3.18 §10.5.3): the status says whether all (200), some (202) or
//! none (409) of the instances were stored; the DICOM JSON body lists them, the failed ones
//! with the DIMSE status as their Failure Reason. The reason in words, which the C-STORE
//! SCP sends as Error Comment, goes in one `Warning` header per failed instance.

use axum::http::header::{CONTENT_TYPE, WARNING};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::part::{Failed, PartId};

/// Referenced SOP Sequence (0008,1199): the stored instances.
const REFERENCED_SOP_SEQUENCE: &str = "00081199";
/// Failed SOP Sequence (0008,1198): the refused instances.
const FAILED_SOP_SEQUENCE: &str = "00081198";
const REFERENCED_SOP_CLASS_UID: &str = "00081150";
const REFERENCED_SOP_INSTANCE_UID: &str = "00081155";
const FAILURE_REASON: &str = "00081197";

/// At most this many `Warning` headers: a request of thousands of bad parts must not make
/// a response header block no client reads.
const MAX_WARNINGS: usize = 50;

/// What became of every part of a request.
#[derive(Debug, Default)]
pub struct Outcome {
    pub stored: Vec<PartId>,
    pub failed: Vec<Failed>,
}

impl Outcome {
    pub fn status(&self) -> StatusCode {
        match (self.stored.is_empty(), self.failed.is_empty()) {
            (_, true) => StatusCode::OK,
            (false, false) => StatusCode::ACCEPTED,
            (true, false) => StatusCode::CONFLICT,
        }
    }

    /// The response body in DICOM JSON (PS3.18 Annex F). Sequences without items are left
    /// out, so a client that tests for the Failed SOP Sequence finds it only on failures.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        if !self.failed.is_empty() {
            let items = self
                .failed
                .iter()
                .map(|f| {
                    let mut item = reference(&f.id);
                    // PS3.18 gives the Failure Reason as the DIMSE status, a decimal US.
                    item.insert(
                        FAILURE_REASON.into(),
                        json!({"vr": "US", "Value": [f.refusal.status.0]}),
                    );
                    Value::Object(item)
                })
                .collect();
            body.insert(FAILED_SOP_SEQUENCE.into(), sequence(items));
        }
        if !self.stored.is_empty() {
            let items = self
                .stored
                .iter()
                .map(|id| Value::Object(reference(id)))
                .collect();
            body.insert(REFERENCED_SOP_SEQUENCE.into(), sequence(items));
        }
        Value::Object(body)
    }
}

fn sequence(items: Vec<Value>) -> Value {
    json!({"vr": "SQ", "Value": items})
}

/// Referenced SOP Class and Instance UIDs; empty (no Value) when the part never said.
fn reference(id: &PartId) -> Map<String, Value> {
    let uid = |u: &str| {
        if u.is_empty() {
            json!({"vr": "UI"})
        } else {
            json!({"vr": "UI", "Value": [u]})
        }
    };
    let mut item = Map::new();
    item.insert(REFERENCED_SOP_CLASS_UID.into(), uid(&id.sop_class_uid));
    item.insert(
        REFERENCED_SOP_INSTANCE_UID.into(),
        uid(&id.sop_instance_uid),
    );
    item
}

/// `299 osteoscreen "<SOP Instance UID>: <reason>"`, made safe for a header.
fn warning(failed: &Failed) -> Option<HeaderValue> {
    let uid = if failed.id.sop_instance_uid.is_empty() {
        "(no SOP Instance UID)"
    } else {
        &failed.id.sop_instance_uid
    };
    // Reasons may quote values from the data set: keep printable ASCII only.
    let text: String = format!("{uid}: {}", failed.refusal.reason)
        .chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '?',
        })
        .collect();
    HeaderValue::from_str(&format!("299 osteoscreen \"{text}\"")).ok()
}

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        let mut response = (self.status(), self.body().to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/dicom+json"),
        );
        for value in self.failed.iter().take(MAX_WARNINGS).filter_map(warning) {
            headers.append(WARNING, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicom::DimseStatus;
    use crate::ingest::instance::Refusal;

    fn id(n: &str) -> PartId {
        PartId {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance_uid: format!("1.2.3.{n}"),
        }
    }

    #[test]
    fn statuses_and_sequences_follow_what_was_stored() {
        let mut outcome = Outcome {
            stored: vec![id("1")],
            failed: Vec::new(),
        };
        assert_eq!(outcome.status(), StatusCode::OK);
        assert!(outcome.body().get(FAILED_SOP_SEQUENCE).is_none());
        outcome.failed.push(Failed {
            id: PartId::default(),
            refusal: Refusal::new(DimseStatus::CANNOT_UNDERSTAND, "not \"DICOM\"\n"),
        });
        assert_eq!(outcome.status(), StatusCode::ACCEPTED);
        let body = outcome.body();
        let failed = &body[FAILED_SOP_SEQUENCE]["Value"][0];
        assert_eq!(failed[FAILURE_REASON]["Value"][0], 49152);
        assert_eq!(failed[REFERENCED_SOP_INSTANCE_UID], json!({"vr": "UI"}));
        assert_eq!(
            body[REFERENCED_SOP_SEQUENCE]["Value"][0][REFERENCED_SOP_INSTANCE_UID]["Value"][0],
            "1.2.3.1"
        );
        let header = warning(&outcome.failed[0]).unwrap();
        assert_eq!(
            header.to_str().unwrap(),
            "299 osteoscreen \"(no SOP Instance UID): not 'DICOM'?\""
        );
        outcome.stored.clear();
        assert_eq!(outcome.status(), StatusCode::CONFLICT);
    }
}
