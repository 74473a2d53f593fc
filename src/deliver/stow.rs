//! STOW-RS delivery (PS3.18 §10.5): each object POSTed to `<url>/studies` as a
//! `multipart/related; type="application/dicom"` body streamed from its file, with an
//! optional bearer token or basic auth, over HTTPS with rustls (system roots plus an
//! optional CA file).

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::CONTENT_TYPE;
use tokio_util::io::ReaderStream;

use super::settings::Destination;

/// Boundary between parts; never occurs in the prefix or suffix we write around a file.
const BOUNDARY: &str = "osteoscreen-3f6c1d2a9b7e4f50";

/// Why a STOW-RS request failed.
#[derive(Debug, thiserror::Error)]
pub enum StowError {
    #[error("CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("request to {url} failed: {source}")]
    Request { url: String, source: reqwest::Error },
    #[error("{url} answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("{url} accepted the request but listed the instance as failed")]
    Refused { url: String, body: String },
}

impl StowError {
    /// The request never reached the server (no connection): not the object's fault.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StowError::Request { source, .. } if source.is_connect())
    }

    /// The server's response body, when it answered ("" otherwise): its own words, kept
    /// out of the message (see `deliver::Failure`).
    pub fn peer_said(&self) -> &str {
        match self {
            StowError::Status { body, .. } | StowError::Refused { body, .. } => body,
            _ => "",
        }
    }
}

/// A STOW-RS endpoint with its client.
pub struct StowClient {
    client: reqwest::Client,
    url: String,
    bearer_token: String,
    username: String,
    password: String,
}

impl StowClient {
    pub fn new(d: &Destination, timeout: Duration) -> Result<StowClient, StowError> {
        // A redirect would be followed as a GET without the body, and a login page's 200
        // taken for a stored instance: 3xx is a failure. The read timeout restarts with
        // every chunk, so the whole request is bounded too.
        let mut builder = reqwest::Client::builder()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .timeout(timeout * super::PEER_TIMEOUTS)
            .redirect(reqwest::redirect::Policy::none())
            .use_rustls_tls();
        if !d.ca_file.as_os_str().is_empty() {
            let ca_err = |reason: String| StowError::CaFile {
                path: d.ca_file.display().to_string(),
                reason,
            };
            let pem = std::fs::read(&d.ca_file).map_err(|e| ca_err(e.to_string()))?;
            for cert in
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_err(e.to_string()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(StowClient {
            client: builder.build().map_err(StowError::Client)?,
            url: format!("{}/studies", d.url.trim_end_matches('/')),
            bearer_token: d.bearer_token.clone(),
            username: d.username.clone(),
            password: d.password.clone(),
        })
    }

    /// POST one Part 10 file; Ok when the origin server stored it (200, or 202 without
    /// the instance in a Failed SOP Sequence).
    pub async fn store(&self, object: &Path) -> Result<(), StowError> {
        let read_err = |source| StowError::Read {
            path: object.display().to_string(),
            source,
        };
        let file = tokio::fs::File::open(object).await.map_err(read_err)?;
        let len = file.metadata().await.map_err(read_err)?.len();
        let head = format!("--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n");
        let tail = format!("\r\n--{BOUNDARY}--\r\n");
        let total = head.len() as u64 + len + tail.len() as u64;
        let body =
            futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes_of(head)) })
                .chain(ReaderStream::new(file))
                .chain(futures_util::stream::once(async move {
                    Ok::<_, std::io::Error>(bytes_of(tail))
                }));
        let mut request = self
            .client
            .post(&self.url)
            .header(
                CONTENT_TYPE,
                format!("multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}"),
            )
            .header(reqwest::header::ACCEPT, "application/dicom+json")
            .header(reqwest::header::CONTENT_LENGTH, total)
            .body(reqwest::Body::wrap_stream(body));
        if !self.bearer_token.is_empty() {
            request = request.bearer_auth(&self.bearer_token);
        } else if !self.username.is_empty() {
            request = request.basic_auth(&self.username, Some(&self.password));
        }
        let response = request.send().await.map_err(|source| StowError::Request {
            url: self.url.clone(),
            source,
        })?;
        let status = response.status();
        let html = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("html"));
        let body = read_capped(response).await;
        match status.as_u16() {
            200 | 202 if html || lists_failures(&body, status.as_u16() == 202) => {
                Err(StowError::Refused {
                    url: self.url.clone(),
                    body,
                })
            }
            200 | 202 => Ok(()),
            _ => Err(StowError::Status {
                url: self.url.clone(),
                status,
                body,
            }),
        }
    }
}

/// A STOW-RS response is a short DICOM JSON list: at most this much of it is read.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// The response body as text, up to `MAX_RESPONSE_BYTES` (the rest is not read); what
/// could not be read is left out.
async fn read_capped(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_RESPONSE_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == MAX_RESPONSE_BYTES {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// Whether a STOW-RS response (DICOM JSON) lists a failed instance: a Failed SOP
/// Sequence (0008,1198) with items. Some servers send it empty on success. A 202 whose
/// body cannot be read counts as failed: retrying is safer than losing a result.
fn lists_failures(body: &str, accepted_with_problems: bool) -> bool {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) => v["00081198"]["Value"]
            .as_array()
            .is_some_and(|items| !items.is_empty()),
        Err(_) => accepted_with_problems,
    }
}

fn bytes_of(s: String) -> bytes::Bytes {
    bytes::Bytes::from(s.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::lists_failures;

    #[test]
    fn an_empty_failed_sop_sequence_is_success() {
        let ok = r#"{"00081198": {"vr": "SQ"}, "00081199": {"vr": "SQ", "Value": [{}]}}"#;
        assert!(!lists_failures(ok, false));
        let failed = r#"{"00081198": {"vr": "SQ", "Value": [{"00081197": {"vr": "US", "Value": [42752]}}]}}"#;
        assert!(lists_failures(failed, true));
        assert!(!lists_failures("", false), "200 with no body: stored");
        assert!(lists_failures("<xml/>", true), "202 unreadable: retry");
    }
}
