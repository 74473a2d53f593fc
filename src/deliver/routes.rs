//! Which destinations a study's results go to: every configured destination, plus (with
//! `reply_to_sender`) the sending AE when `[[peers]]` says how to reach it. With no
//! destination configured, results go to a folder under `[storage] dir`, so a fresh
//! install shows results without a PACS.

use std::path::Path;

use super::settings::{DeliverySettings, Destination, DestinationKind, PeerNode};

/// Name prefix of the destinations that answer a sending AE.
const REPLY_PREFIX: &str = "reply-";

/// The destinations in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Routes {
    /// Every study's results go here.
    pub always: Vec<Destination>,
    /// Per sending AE title, when replies are on.
    pub replies: Vec<(String, Destination)>,
}

impl Routes {
    pub fn new(
        destinations: &[Destination],
        peers: &[PeerNode],
        delivery: &DeliverySettings,
        storage_dir: &Path,
    ) -> Routes {
        let always = if destinations.is_empty() {
            vec![Destination::folder("results", storage_dir.join("results"))]
        } else {
            destinations.to_vec()
        };
        let replies = if delivery.reply_to_sender {
            peers
                .iter()
                .map(|p| {
                    let d = Destination {
                        name: format!("{REPLY_PREFIX}{}", p.ae_title),
                        kind: DestinationKind::Dimse,
                        ae_title: p.ae_title.clone(),
                        host: p.host.clone(),
                        port: p.port,
                        ..Destination::default()
                    };
                    (p.ae_title.clone(), d)
                })
                .collect()
        } else {
            Vec::new()
        };
        Routes { always, replies }
    }

    /// Every destination a task must serve.
    pub fn all(&self) -> Vec<Destination> {
        let mut all = self.always.clone();
        all.extend(self.replies.iter().map(|(_, d)| d.clone()));
        all
    }

    /// The names of the destinations for a study sent by `calling_aes`.
    pub fn for_study(&self, calling_aes: &[String]) -> Vec<String> {
        let mut names: Vec<String> = self.always.iter().map(|d| d.name.clone()).collect();
        for (ae, d) in &self.replies {
            if calling_aes.iter().any(|c| c == ae) && !names.contains(&d.name) {
                names.push(d.name.clone());
            }
        }
        names
    }
}

impl crate::pipeline::worker::Router for Routes {
    fn destinations_for(&self, calling_aes: &[String]) -> Vec<String> {
        self.for_study(calling_aes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_folder_and_replies_to_known_senders() {
        let none = Routes::new(&[], &[], &DeliverySettings::default(), Path::new("/var/x"));
        assert_eq!(none.always.len(), 1);
        assert_eq!(none.always[0].path, Path::new("/var/x/results"));
        let peers = [PeerNode {
            ae_title: "MODALITY".into(),
            host: "127.0.0.1".into(),
            port: 104,
        }];
        let replying = DeliverySettings {
            reply_to_sender: true,
            ..DeliverySettings::default()
        };
        let r = Routes::new(&[], &peers, &replying, Path::new("/var/x"));
        let ae = |s: &str| vec![s.to_string()];
        assert_eq!(
            r.for_study(&ae("MODALITY")),
            vec!["results", "reply-MODALITY"]
        );
        assert_eq!(r.for_study(&ae("OTHER")), vec!["results"]);
        assert_eq!(r.all().len(), 2);
    }
}
