//! A minimal HTTP/1.1 client for `postern-listener drain`: one request per
//! connection to the admin endpoint on loopback, `Connection: close`, body read to
//! the end. (The endpoint is plain HTTP on a local address; a full client crate
//! would bring TLS set-up for nothing.)

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `method path` to `addr`; returns the status code and the body.
pub async fn request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        parse_response(&String::from_utf8_lossy(&response))
    };
    tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the admin endpoint did not answer",
        )
    })?
}

/// The status and body of a `Connection: close` response without chunking.
fn parse_response(response: &str) -> std::io::Result<(u16, String)> {
    let status = response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:.80?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_body() {
        let (status, body) =
            parse_response("HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((status, body.as_str()), (202, "{}"));
        assert!(parse_response("SSH-2.0").is_err());
    }
}
