//! `hyper-floor LISTEN UPSTREAM`: forwards every request to `http://UPSTREAM` with hyper's
//! pooled client on one current-thread runtime, and nothing else. The benchmark runs it next
//! to Palisade so that the cost of the HTTP engine and the cost of Palisade's pipeline can be
//! told apart.

use std::process::ExitCode;

use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: hyper-floor LISTEN UPSTREAM   (e.g. 127.0.0.1:18084 127.0.0.1:18080)");
        return ExitCode::from(2);
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hyper-floor: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(serve(&listen, upstream)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hyper-floor: {e}");
            ExitCode::from(2)
        }
    }
}

async fn serve(listen: &str, upstream: String) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build_http();
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                let client = client.clone();
                let target = format!(
                    "http://{upstream}{}",
                    req.uri().path_and_query().map_or("/", |p| p.as_str())
                );
                async move {
                    *req.uri_mut() = target.parse::<http::Uri>().map_err(std::io::Error::other)?;
                    req.headers_mut().remove(http::header::HOST);
                    client.request(req).await.map_err(std::io::Error::other)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
