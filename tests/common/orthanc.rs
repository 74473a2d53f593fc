//! Orthanc (Debian's package) as the PACS in tests: started on free loopback ports with
//! its own storage, stopped by PID; REST read with a plain HTTP/1.0 GET.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_until};

pub struct Orthanc {
    child: Child,
    pub dicom_port: u16,
    pub http_port: u16,
    pub aet: String,
}

impl Orthanc {
    pub fn start(work: &Path) -> Orthanc {
        let (dicom_port, http_port) = (free_port(), free_port());
        let storage = work.join("orthanc-db");
        std::fs::create_dir_all(&storage).unwrap();
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
            "Plugins": [],
            "HttpServerEnabled": true,
        });
        let config_path = work.join("orthanc.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = std::fs::File::create(work.join("orthanc.log")).unwrap();
        let child = Command::new("Orthanc")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("Orthanc (Debian package orthanc) must be installed");
        let o = Orthanc {
            child,
            dicom_port,
            http_port,
            aet: "ORTHANC".into(),
        };
        wait_until("Orthanc REST up", Duration::from_secs(30), || {
            o.try_get("/system").is_some()
        });
        o
    }

    fn try_get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.http_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        let (head, rest) = body.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200")
            .then(|| rest.to_string())
            .or_else(|| head.starts_with("HTTP/1.0 200").then(|| rest.to_string()))
    }

    /// GET a REST path and parse the JSON answer.
    pub fn get(&self, path: &str) -> serde_json::Value {
        let body = self
            .try_get(path)
            .unwrap_or_else(|| panic!("Orthanc GET {path} failed"));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
