//! `tandem-s3-test-server [--host H] [--port P] --access-key A --secret-key S ROOT`: serves the
//! directory ROOT as S3 (each bucket a folder, each object a file), for tandem's tests of a lake
//! in object storage. Requests that write (anything but GET and HEAD) are served one at a time, so
//! a conditional write is checked and done atomically.

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

struct Args {
    host: String,
    port: u16,
    access_key: String,
    secret_key: String,
    root: std::path::PathBuf,
}

fn args() -> Result<Args, String> {
    let mut host = "127.0.0.1".to_owned();
    let mut port = 8014;
    let (mut access_key, mut secret_key, mut root) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--host" => host = value()?,
            "--port" => port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--access-key" => access_key = Some(value()?),
            "--secret-key" => secret_key = Some(value()?),
            other if !other.starts_with('-') => root = Some(other.into()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Args {
        host,
        port,
        access_key: access_key.ok_or("--access-key is required")?,
        secret_key: secret_key.ok_or("--secret-key is required")?,
        root: root.ok_or("the root directory is required")?,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args().map_err(|e| {
        format!("{e}\nusage: tandem-s3-test-server [--host H] [--port P] --access-key A --secret-key S ROOT")
    })?;
    let mut builder = S3ServiceBuilder::new(
        s3s_fs::FileSystem::new(&args.root).map_err(|e| format!("{}: {e:?}", args.root.display()))?,
    );
    builder.set_auth(SimpleAuth::from_single(args.access_key, args.secret_key));
    let service = builder.build();
    let writes = Arc::new(tokio::sync::Mutex::new(()));
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await?;
    loop {
        let (socket, _) = listener.accept().await?;
        // Small responses (a header, then a body) would otherwise wait for the client's delayed
        // acknowledgement: 40 ms on every GET.
        socket.set_nodelay(true)?;
        let (service, writes) = (service.clone(), Arc::clone(&writes));
        tokio::spawn(async move {
            let one_at_a_time = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let (service, writes) = (service.clone(), Arc::clone(&writes));
                async move {
                    let reads = matches!(*request.method(), http::Method::GET | http::Method::HEAD);
                    let _turn = if reads { None } else { Some(writes.lock_owned().await) };
                    hyper::service::Service::call(&service, request).await
                }
            });
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), one_at_a_time)
                .await;
        });
    }
}
