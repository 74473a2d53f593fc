//! Orthanc (Debian's package) as the PACS in tests: started on free loopback ports with
//! its own storage (optionally with the DICOMweb plugin and osteoscreen as a modality),
//! stopped by PID and restartable on the same ports and storage (a PACS outage); REST
//! spoken as plain HTTP/1.0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_until};

const DICOMWEB_PLUGIN: &str = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";

pub struct Orthanc {
    child: Option<Child>,
    pub dicom_port: u16,
    pub http_port: u16,
    pub aet: String,
    config_path: PathBuf,
    log_dir: PathBuf,
    starts: usize,
}

/// How Orthanc is set up.
#[derive(Default)]
pub struct OrthancOptions {
    /// Load the DICOMweb plugin (STOW-RS at `/dicom-web/studies`).
    pub dicomweb: bool,
    /// Modalities Orthanc may send to: (name, AE title, port on 127.0.0.1).
    pub modalities: Vec<(String, String, u16)>,
}

impl Orthanc {
    pub fn start(work: &Path) -> Orthanc {
        Orthanc::start_with(work, OrthancOptions::default())
    }

    pub fn start_with(work: &Path, options: OrthancOptions) -> Orthanc {
        let (dicom_port, http_port) = (free_port(), free_port());
        let storage = work.join("orthanc-db");
        std::fs::create_dir_all(&storage).unwrap();
        let modalities: serde_json::Map<String, serde_json::Value> = options
            .modalities
            .iter()
            .map(|(name, aet, port)| (name.clone(), serde_json::json!([aet, "127.0.0.1", port])))
            .collect();
        let plugins: Vec<&str> = if options.dicomweb {
            vec![DICOMWEB_PLUGIN]
        } else {
            Vec::new()
        };
        let config = serde_json::json!({
            "Name": "osteoscreen-test",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "DicomAet": "ORTHANC",
            "DicomPort": dicom_port,
            "HttpPort": http_port,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "DicomCheckCalledAet": false,
            "DicomModalities": modalities,
            "Plugins": plugins,
            "DicomWeb": { "Enable": options.dicomweb, "Root": "/dicom-web/" },
            "HttpServerEnabled": true,
        });
        let config_path = work.join("orthanc.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let mut o = Orthanc {
            child: None,
            dicom_port,
            http_port,
            aet: "ORTHANC".into(),
            config_path,
            log_dir: work.to_path_buf(),
            starts: 0,
        };
        o.spawn();
        o
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_dir.join(format!("orthanc-{}.log", self.starts)))
            .unwrap();
        let child = Command::new("Orthanc")
            .arg(&self.config_path)
            // DCMTK (inside Orthanc) leaves Nagle on unless TCP_NODELAY=1 (REFERENCES.md).
            .env("TCP_NODELAY", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("Orthanc (Debian package orthanc) must be installed");
        self.child = Some(child);
        wait_until("Orthanc REST up", Duration::from_secs(30), || {
            self.request("GET", "/system", None).is_some()
        });
    }

    /// Stop Orthanc by PID (a PACS outage); `restart` brings it back on the same ports.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.spawn();
    }

    /// One HTTP/1.0 request; the body of a 2xx answer.
    fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.http_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(120))).ok()?;
        let body = body.unwrap_or(&[]);
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .ok()?;
        s.write_all(body).ok()?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).ok()?;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let (head, rest) = answer.split_once("\r\n\r\n")?;
        let code = head.split_whitespace().nth(1)?;
        code.starts_with('2').then(|| rest.to_string())
    }

    /// GET a REST path and parse the JSON answer.
    pub fn get(&self, path: &str) -> serde_json::Value {
        let body = self
            .request("GET", path, None)
            .unwrap_or_else(|| panic!("Orthanc GET {path} failed"));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    /// POST a body to a REST path and parse the JSON answer.
    pub fn post(&self, path: &str, body: &[u8]) -> serde_json::Value {
        let answer = self
            .request("POST", path, Some(body))
            .unwrap_or_else(|| panic!("Orthanc POST {path} failed"));
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{path}: {e}: {answer}"))
    }

    /// Make a DICOM node known to Orthanc (as `DicomModalities` would): name, AE title,
    /// port on 127.0.0.1.
    pub fn add_modality(&self, name: &str, aet: &str, port: u16) {
        let body = serde_json::json!([aet, "127.0.0.1", port]).to_string();
        self.request("PUT", &format!("/modalities/{name}"), Some(body.as_bytes()))
            .unwrap_or_else(|| panic!("Orthanc PUT /modalities/{name} failed"));
    }

    /// Make a DICOMweb server known to Orthanc (as `DicomWeb.Servers` would), with extra
    /// HTTP headers for its requests (an `Authorization` header, say).
    pub fn add_dicomweb_server(&self, name: &str, url: &str, headers: &[(&str, &str)]) {
        let headers: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect();
        let body = serde_json::json!({ "Url": url, "HttpHeaders": headers }).to_string();
        self.request(
            "PUT",
            &format!("/dicom-web/servers/{name}"),
            Some(body.as_bytes()),
        )
        .unwrap_or_else(|| panic!("Orthanc PUT /dicom-web/servers/{name} failed"));
    }

    /// Ask Orthanc to send a study to a DICOMweb server by STOW-RS; whether Orthanc
    /// reports success.
    pub fn stow_study(&self, server: &str, study_id: &str) -> bool {
        let job = serde_json::json!({ "Resources": [study_id], "Synchronous": true });
        self.request(
            "POST",
            &format!("/dicom-web/servers/{server}/stow"),
            Some(job.to_string().as_bytes()),
        )
        .is_some()
    }

    /// Upload every Part 10 file under `dir` (as a modality's archive would hold it);
    /// returns Orthanc's ID of the study they belong to.
    pub fn upload_study(&self, dir: &Path) -> String {
        let mut study = String::new();
        for file in super::dicom_files(dir) {
            let answer = self.post("/instances", &std::fs::read(&file).unwrap());
            study = answer["ParentStudy"].as_str().unwrap().to_string();
        }
        study
    }

    /// Ask Orthanc to C-STORE a study to one of its modalities, as an auto-routing PACS
    /// does; returns once Orthanc has sent it.
    pub fn send_study(&self, modality: &str, study_id: &str) {
        let job = serde_json::json!({ "Resources": [study_id], "Synchronous": true });
        self.post(
            &format!("/modalities/{modality}/store"),
            job.to_string().as_bytes(),
        );
    }

    /// The Orthanc IDs of the studies it holds.
    pub fn studies(&self) -> Vec<String> {
        self.get("/studies")
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    /// (Modality, SOP Instance UID) of every instance of a study.
    pub fn instances_of(&self, study_id: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for series in self
            .get(&format!("/studies/{study_id}/series"))
            .as_array()
            .unwrap()
        {
            let modality = series["MainDicomTags"]["Modality"]
                .as_str()
                .unwrap_or("")
                .to_string();
            for inst in series["Instances"].as_array().unwrap() {
                let tags = self.get(&format!(
                    "/instances/{}/tags?simplify",
                    inst.as_str().unwrap()
                ));
                let uid = tags["SOPInstanceUID"].as_str().unwrap_or("").to_string();
                out.push((modality.clone(), uid));
            }
        }
        out
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        self.stop();
    }
}
