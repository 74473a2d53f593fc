//! STOW-RS in (PS3.18 §10.5): `POST /dicomweb/studies[/{study}]` with a
//! `multipart/related; type="application/dicom"` body. Each part is streamed to the spool
//! as it arrives and checked like a C-STORE (`part`); once the whole body has been read, the
//! accepted instances are put in place and recorded (fsync + committed row) before the
//! response lists what was stored and what failed (`response`). A body that is not
//! well-formed multipart, or too large, stores nothing.

mod guard;
mod part;
mod response;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use multer::{Constraints, Multipart, SizeLimit};
use sha2::{Digest, Sha256};

use super::active::ActiveStudies;
use super::instance::Refusal;
use super::Ingest;
use crate::dicom::uid::is_safe_uid;
use crate::dicom::DimseStatus;
use crate::ops::metrics::metrics;
use crate::store::InstanceRecord;
use part::{Failed, PartReceiver, Staged};
pub use part::{PartId, STOW_AE};
pub use response::Outcome;

/// Parts one request may hold: a study of a few thousand CT slices fits; two hundred
/// million empty parts within the body limit do not become as many response items.
pub const MAX_PARTS: usize = 10_000;
/// Refused instances logged one by one per request; the rest are counted in one line.
const LOGGED_REFUSALS: usize = 20;

/// Why a request was refused as a whole; nothing of it is stored.
#[derive(Debug, thiserror::Error)]
pub enum StowError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("Content-Type must be multipart/related; type=\"application/dicom\" (got {0:?})")]
    MediaType(String),
    #[error("Content-Type has no boundary parameter")]
    NoBoundary,
    #[error("Study Instance UID in the request path is not a valid UID")]
    BadStudyUid,
    #[error("request body larger than [http] max_body_mb ({limit_mb} MiB)")]
    TooLarge { limit_mb: u64 },
    #[error("malformed multipart body: {0}")]
    Malformed(#[source] multer::Error),
    #[error("no body data for {seconds} s ([http] timeout_seconds)")]
    Stalled { seconds: u64 },
    #[error("request cut off: {0}")]
    Abusive(String),
    #[error("{0} STOW-RS requests are being received already: try again shortly")]
    Busy(usize),
    #[error("the request body holds no parts")]
    Empty,
    #[error("more than {0} parts in one request: send the study in several requests")]
    TooManyParts(usize),
}

impl StowError {
    fn status(&self) -> StatusCode {
        match self {
            StowError::Unauthorized => StatusCode::UNAUTHORIZED,
            StowError::MediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            StowError::TooLarge { .. } | StowError::TooManyParts(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            StowError::Stalled { .. } => StatusCode::REQUEST_TIMEOUT,
            StowError::Abusive(_) => StatusCode::BAD_REQUEST,
            StowError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            StowError::NoBoundary
            | StowError::BadStudyUid
            | StowError::Malformed(_)
            | StowError::Empty => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for StowError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), format!("{self}\n")).into_response();
        if matches!(self, StowError::Busy(_)) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from_static("5"),
            );
        }
        if matches!(self, StowError::Unauthorized) {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"osteoscreen\""),
            );
        }
        response
    }
}

/// The STOW-RS receiver: ingest's shared state plus the `[http]` limits.
pub struct StowService {
    pub ingest: Arc<Ingest>,
    pub max_body_mb: u64,
    /// Empty: no token required.
    pub bearer_token: String,
    /// A client silent this long mid-body is answered 408: it must not hold its studies
    /// back from the assembler (or the daemon's shutdown) for ever.
    pub timeout: Duration,
    /// Requests being received at once, at most `MAX_REQUESTS` (more get 503).
    pub requests: Arc<tokio::sync::Semaphore>,
}

/// STOW-RS requests received at once: each may buffer a few megabytes in the parser.
pub const MAX_REQUESTS: usize = 32;

/// The STOW-RS routes; the server must provide `ConnectInfo<SocketAddr>`.
pub fn routes(service: Arc<StowService>) -> Router {
    Router::new()
        .route("/dicomweb/studies", post(post_studies))
        .route("/dicomweb/studies/{study}", post(post_study))
        // `max_body_mb` is enforced while streaming; axum's 2 MB default is for buffered
        // extractors, which these routes do not use.
        .layer(DefaultBodyLimit::disable())
        .with_state(service)
}

async fn post_studies(
    State(service): State<Arc<StowService>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    service.handle(None, peer, &headers, body).await
}

async fn post_study(
    State(service): State<Arc<StowService>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(study): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    service.handle(Some(study), peer, &headers, body).await
}

impl StowService {
    async fn handle(
        &self,
        study: Option<String>,
        peer: SocketAddr,
        headers: &HeaderMap,
        body: Body,
    ) -> Response {
        let started = Instant::now();
        let Ok(_request) = self.requests.clone().try_acquire_owned() else {
            return StowError::Busy(MAX_REQUESTS).into_response();
        };
        match self.receive(study, headers, body).await {
            Ok((outcome, bytes)) => {
                tracing::info!(
                    peer = %peer.ip(),
                    stored = outcome.stored.len(),
                    refused = outcome.failed.len(),
                    bytes,
                    seconds = started.elapsed().as_secs_f64(),
                    status = outcome.status().as_u16(),
                    "STOW-RS request answered"
                );
                outcome.into_response()
            }
            Err(e) => {
                tracing::warn!(
                    peer = %peer.ip(),
                    status = e.status().as_u16(),
                    error = %e,
                    "STOW-RS request refused"
                );
                e.into_response()
            }
        }
    }

    /// Read the whole body, part by part, then commit what passed. Returns the outcome and
    /// the bytes of part data received.
    async fn receive(
        &self,
        study: Option<String>,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(Outcome, u64), StowError> {
        self.authorize(headers)?;
        let boundary = boundary_of(headers)?;
        if study.as_deref().is_some_and(|s| !is_safe_uid(s)) {
            return Err(StowError::BadStudyUid);
        }
        let limit = self.max_body_mb.saturating_mul(1024 * 1024);
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(self.too_large());
        }
        let constraints = Constraints::new().size_limit(SizeLimit::new().whole_stream(limit));
        let progress = Arc::new(guard::Progress::default());
        let stream = guard::guard(body, progress.clone(), self.timeout);
        let mut multipart = Multipart::with_constraints(stream, boundary, constraints);
        let mut upload = Upload::new(self.ingest.clone(), study);
        let mut bytes = 0;
        progress.seeking_part();
        while let Some(mut field) = self.read(multipart.next_field(), &progress).await? {
            progress.in_part();
            // Each part, even an empty one, costs a response item and a log line.
            if upload.len() >= MAX_PARTS {
                return Err(StowError::TooManyParts(MAX_PARTS));
            }
            let content_type = field
                .headers()
                .get(CONTENT_TYPE)
                .map(|v| v.to_str().unwrap_or("(not text)").to_string());
            let mut part = PartReceiver::new(self.ingest.clone(), content_type.as_deref());
            while let Some(chunk) = self.read(field.chunk(), &progress).await? {
                part.append(&chunk);
            }
            progress.seeking_part();
            bytes += part.bytes;
            upload.add(part.finish().await);
        }
        if upload.is_empty() {
            return Err(StowError::Empty);
        }
        Ok((upload.commit().await, bytes))
    }

    /// One read from the body, within the idle timeout and the limits of `guard`.
    async fn read<T>(
        &self,
        read: impl Future<Output = multer::Result<T>>,
        progress: &guard::Progress,
    ) -> Result<T, StowError> {
        match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(multer::Error::StreamSizeExceeded { .. })) => Err(self.too_large()),
            // A limit of the guard broke the stream: say which.
            Ok(Err(e)) => Err(progress
                .broken()
                .map_or(StowError::Malformed(e), StowError::Abusive)),
            Err(_) => Err(StowError::Stalled {
                seconds: self.timeout.as_secs(),
            }),
        }
    }

    fn too_large(&self) -> StowError {
        StowError::TooLarge {
            limit_mb: self.max_body_mb,
        }
    }

    /// With `[http] bearer_token` set, the request must carry it.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), StowError> {
        if self.bearer_token.is_empty() {
            return Ok(());
        }
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match presented {
            Some(token) if same_secret(token, &self.bearer_token) => Ok(()),
            _ => Err(StowError::Unauthorized),
        }
    }
}

/// Compare two secrets in time independent of where they differ and of their lengths:
/// the digests are compared, every byte of them.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The multipart boundary of a `multipart/related; type="application/dicom"` request.
fn boundary_of(headers: &HeaderMap) -> Result<String, StowError> {
    let value = headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let (essence, params) = parse_media_type(&value);
    let param = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let dicom = param("type").is_some_and(is_dicom_type);
    if !essence.eq_ignore_ascii_case("multipart/related") || !dicom {
        return Err(StowError::MediaType(value));
    }
    match param("boundary") {
        Some(b) if !b.is_empty() => Ok(b.to_string()),
        _ => Err(StowError::NoBoundary),
    }
}

/// Whether a media type (with any parameters, e.g. `transfer-syntax`) is application/dicom.
fn is_dicom_type(media_type: &str) -> bool {
    parse_media_type(media_type)
        .0
        .eq_ignore_ascii_case("application/dicom")
}

/// `type/subtype; name=value; name="quoted; value"` into the type and its parameters.
fn parse_media_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut fields = Vec::new();
    let (mut current, mut quoted, mut escaped) = (String::new(), false, false);
    for c in value.chars() {
        match c {
            _ if escaped => {
                current.push(c);
                escaped = false;
            }
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => fields.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    fields.push(current);
    let essence = fields.remove(0).trim().to_string();
    let params = fields
        .iter()
        .filter_map(|f| f.split_once('='))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    (essence, params)
}

/// The parts of one request: staged until the body has been read, then committed.
struct Upload {
    ingest: Arc<Ingest>,
    /// `/studies/{study}`: instances of other studies are refused.
    study: Option<String>,
    staged: Vec<Staged>,
    failed: Vec<Failed>,
    active: Active,
}

impl Upload {
    fn new(ingest: Arc<Ingest>, study: Option<String>) -> Upload {
        Upload {
            active: Active {
                studies: HashSet::new(),
                all: ingest.active.clone(),
            },
            ingest,
            study,
            staged: Vec::new(),
            failed: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn len(&self) -> usize {
        self.staged.len() + self.failed.len()
    }

    fn add(&mut self, part: Result<Staged, Failed>) {
        match part {
            Ok(staged) => {
                let study = &staged.instance.study_uid;
                if self.study.as_ref().is_some_and(|s| s != study) {
                    // Dropping `staged` removes its file.
                    self.failed.push(Failed {
                        id: staged.id(),
                        refusal: Refusal::new(
                            DimseStatus::DATA_SET_MISMATCH,
                            "Study Instance UID differs from the study in the request path",
                        ),
                    });
                    return;
                }
                // From here the assembler holds the study back until the request ends.
                self.active.enter(study);
                self.staged.push(staged);
            }
            Err(failed) => self.failed.push(failed),
        }
    }

    /// Put every staged instance in place and record it (one group commit for all of them).
    async fn commit(mut self) -> Outcome {
        let mut placed = Vec::new();
        for mut staged in std::mem::take(&mut self.staged) {
            match self.place(&mut staged) {
                Ok(record) => placed.push((staged.id(), record)),
                Err(refusal) => self.failed.push(Failed {
                    id: staged.id(),
                    refusal,
                }),
            }
        }
        let ingest = &self.ingest;
        let recorded = futures_util::future::join_all(
            placed
                .iter()
                .map(|(_, (record, dir))| ingest.record(record.clone(), dir.clone())),
        )
        .await;
        let mut outcome = Outcome::default();
        for ((id, _), result) in placed.into_iter().zip(recorded) {
            match result {
                Ok(()) => outcome.stored.push(id),
                Err(e) => self.failed.push(Failed {
                    id,
                    refusal: Refusal::out_of_resources("could not record instance", e),
                }),
            }
        }
        outcome.failed = std::mem::take(&mut self.failed);
        count(&outcome);
        outcome
    }

    /// Move a staged file to its place in the spool; the row to record and the directory
    /// the writer must fsync.
    fn place(&self, staged: &mut Staged) -> Result<(InstanceRecord, std::path::PathBuf), Refusal> {
        let written = staged
            .file
            .take()
            .ok_or_else(|| Refusal::out_of_resources("spool", "file missing"))?;
        self.ingest.place(
            written,
            staged.instance.clone(),
            staged.transfer_syntax.clone(),
            STOW_AE,
        )
    }
}

/// Metrics and the log line of each refused instance, as the C-STORE SCP writes them.
fn count(outcome: &Outcome) {
    let instances = &metrics().instances;
    instances
        .with_label_values(&[STOW_AE, "stored"])
        .inc_by(outcome.stored.len() as u64);
    instances
        .with_label_values(&[STOW_AE, "refused"])
        .inc_by(outcome.failed.len() as u64);
    for f in outcome.failed.iter().take(LOGGED_REFUSALS) {
        tracing::warn!(
            calling_ae = STOW_AE,
            sop_instance_uid = %f.id.sop_instance_uid,
            status = %f.refusal.status,
            reason = %f.refusal.reason,
            "STOW-RS instance refused"
        );
    }
    if outcome.failed.len() > LOGGED_REFUSALS {
        tracing::warn!(
            calling_ae = STOW_AE,
            more = outcome.failed.len() - LOGGED_REFUSALS,
            "STOW-RS: more instances of this request refused (in the response, not logged)"
        );
    }
}

/// The studies this request contributes to, left when the request ends however it ends
/// (answered, refused, or dropped because the client went away).
struct Active {
    studies: HashSet<String>,
    all: ActiveStudies,
}

impl Active {
    fn enter(&mut self, study: &str) {
        if self.studies.insert(study.to_string()) {
            self.all.enter(study);
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        for study in &self.studies {
            self.all.leave(study);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_type(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn media_types_are_checked() {
        let ok = content_type("Multipart/Related; type=\"application/dicom\"; boundary=\"a;b\"");
        assert_eq!(boundary_of(&ok).unwrap(), "a;b");
        let ok = content_type("multipart/related; boundary=xyz; type=application/DICOM");
        assert_eq!(boundary_of(&ok).unwrap(), "xyz");
        for wrong in [
            "application/dicom",
            "multipart/form-data; boundary=x",
            "multipart/related; type=\"application/dicom+json\"; boundary=x",
            "multipart/related; boundary=x",
        ] {
            assert!(
                matches!(
                    boundary_of(&content_type(wrong)),
                    Err(StowError::MediaType(_))
                ),
                "{wrong}"
            );
        }
        assert!(matches!(
            boundary_of(&HeaderMap::new()),
            Err(StowError::MediaType(_))
        ));
        let no_boundary = content_type("multipart/related; type=\"application/dicom\"");
        assert!(matches!(
            boundary_of(&no_boundary),
            Err(StowError::NoBoundary)
        ));
        assert!(is_dicom_type(
            "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
        ));
        assert!(!is_dicom_type("application/octet-stream"));
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3cret", "s3creT"));
        assert!(!same_secret("s3cret", "s3cret-longer"));
        assert!(!same_secret("", "x"));
    }
}
