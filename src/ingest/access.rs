//! Who may open an association: `[dicom] allowed_callers` checked against the calling AE
//! title and the peer's IP address (dicom-ul's hook sees AE titles only, so the address is
//! captured here from the socket).

use std::net::SocketAddr;

use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};

use super::settings::CallerRule;

/// The access policy for one incoming connection.
pub struct CallerCheck<'a> {
    pub rules: &'a [CallerRule],
    pub peer: SocketAddr,
}

impl AccessControl for CallerCheck<'_> {
    fn check_access(
        &self,
        _this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        let ip = self.peer.ip();
        if self.rules.is_empty() || self.rules.iter().any(|r| r.matches(calling_ae_title, ip)) {
            return Ok(());
        }
        tracing::warn!(
            calling_ae = calling_ae_title.trim(),
            called_ae = called_ae_title.trim(),
            peer = %ip,
            "association rejected: calling AE / address not in [dicom] allowed_callers"
        );
        Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
    }
}
