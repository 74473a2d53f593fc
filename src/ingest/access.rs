//! Who may open an association: the Called AE Title must be ours (unless `[dicom]
//! accept_any_called_ae`), and `[dicom] allowed_callers` is checked against the calling
//! AE title and the peer's IP address (dicom-ul's hook sees AE titles only, so the address
//! is captured here from the socket). The same decision runs twice: on the peeked request,
//! before a slot is taken, and inside dicom-ul's negotiation, which sends the rejection
//! (and keeps the first decision's refusal).

use std::net::SocketAddr;

use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};

use super::settings::CallerRule;

/// The access policy for one incoming connection.
pub struct CallerCheck<'a> {
    pub rules: &'a [CallerRule],
    pub peer: SocketAddr,
    /// Our AE title, and whether another Called AE Title is accepted anyway.
    pub ae_title: &'a str,
    pub accept_any_called_ae: bool,
    /// What the check on the peeked request decided when it refused: the negotiation
    /// rejects too, whatever it reads (a connection refused a slot never gets an
    /// association).
    pub refused: Option<AssociationRJServiceUserReason>,
}

impl CallerCheck<'_> {
    /// The decision, without logging.
    pub fn decide(
        &self,
        calling_ae_title: &str,
        called_ae_title: &str,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if !self.accept_any_called_ae && called_ae_title.trim() != self.ae_title.trim() {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        let ip = self.peer.ip();
        if self.rules.is_empty() || self.rules.iter().any(|r| r.matches(calling_ae_title, ip)) {
            return Ok(());
        }
        Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
    }
}

impl AccessControl for CallerCheck<'_> {
    fn check_access(
        &self,
        _this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        let decision = match &self.refused {
            Some(reason) => Err(reason.clone()),
            None => self.decide(calling_ae_title, called_ae_title),
        };
        if let Err(reason) = &decision {
            let why = match reason {
                AssociationRJServiceUserReason::CalledAETitleNotRecognized => {
                    "called AE title is not ours ([dicom] ae_title)"
                }
                _ => "calling AE / address not in [dicom] allowed_callers",
            };
            tracing::warn!(
                calling_ae = calling_ae_title.trim(),
                called_ae = called_ae_title.trim(),
                peer = %self.peer.ip().to_canonical(),
                "association rejected: {why}"
            );
        }
        decision
    }
}
