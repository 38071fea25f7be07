//! A real S3-compatible server process for the tests of a lake in object storage:
//! `tandem-s3-test-server` (`tools/s3-test-server`, which `.ci/run` installs), the `s3s-fs` server
//! from crates.io — each object a file under its root directory, conditional writes
//! (`If-None-Match: *`, `If-Match`) implemented — with its writes taken one at a time so that
//! those conditions hold under races, as Delta commits and the writers' leases need.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "tandem-test-access";
pub const SECRET_KEY: &str = "tandem-test-secret-do-not-log";
pub const BUCKET: &str = "lake";

/// A running server on a free loopback port, with one bucket ([`BUCKET`]); stopped on drop.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
    /// Where the server keeps the objects: `<root>/<bucket>/<key>`.
    pub root: tempfile::TempDir,
}

/// The server binary: `$TANDEM_S3_SERVER`, else `tandem-s3-test-server` on the `PATH`, else where
/// `.ci/run` installs it.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TANDEM_S3_SERVER") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("tandem-s3-test-server"))
            .find(|p| p.is_file())
    });
    let installed = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/tandem-tools/bin/tandem-s3-test-server"))
        .filter(|p| p.is_file());
    on_path.or(installed).unwrap_or_else(|| {
        panic!(
            "no S3 server for the object storage tests: install it with \
             `cargo install --locked --path tools/s3-test-server --root ~/.cache/tandem-tools` \
             (what .ci/run does), or point TANDEM_S3_SERVER at it"
        )
    })
}

impl S3Server {
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(BUCKET)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(root.path().join("server.log")).unwrap();
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the S3 server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            root,
        }
    }

    /// The file the server keeps the object `key` of the bucket in.
    pub fn object(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }

    /// The `[store]` section of a config whose lake is `s3://lake/<prefix>`, cached in `cache`.
    pub fn store_section(&self, prefix: &str, cache: &Path, extra: &str) -> String {
        format!(
            "[store]\npath = \"s3://{BUCKET}/{prefix}\"\ncache_dir = {cache:?}\n{extra}\n\n[store.s3]\nendpoint = \"{}\"\nregion = \"us-east-1\"\nallow_http = true\n",
            self.endpoint,
            cache = cache.display().to_string(),
        )
    }

    /// Writes a config in `<world's temp>/<name>` for the world's fakes whose lake is
    /// `s3://lake/<prefix>`, cached in `<temp>/<name>/cache`; `extra` goes into its `[store]`
    /// section. Returns the config's path.
    pub fn write_config(&self, world: &super::World, name: &str, prefix: &str, extra: &str) -> PathBuf {
        let dir = world.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let config = super::write_config(&dir, &world.org, &world.servers);
        let text = std::fs::read_to_string(&config).unwrap();
        let local = "[store]\npath = \"lake\"            # the lake of Delta tables\n";
        assert!(text.contains(local), "the demo config's [store] section changed");
        let text = text.replacen(local, &self.store_section(prefix, &dir.join("cache"), extra), 1);
        std::fs::write(&config, text).unwrap();
        config
    }

    /// The credentials a client of the server takes from the environment.
    pub fn env() -> [(&'static str, &'static str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    /// A client of the server's bucket with the test credentials (the binary takes them from its
    /// environment; the test process is given them).
    pub fn client(&self) -> std::sync::Arc<dyn tandem::store::bucket::object_store::ObjectStore> {
        use tandem::store::bucket::object_store::aws::AmazonS3Builder;
        std::sync::Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_bucket_name(BUCKET)
                .with_region("us-east-1")
                .with_access_key_id(ACCESS_KEY)
                .with_secret_access_key(SECRET_KEY)
                .with_allow_http(true)
                .build()
                .unwrap(),
        )
    }
}
