// The target server of scripts/bench-lb: an HTTP/1.1 server that answers every request
// with a fixed body and keeps connections alive unless the client asks to close (or, with
// `close`, closes each connection after its answer), so that a benchmark through a proxy
// measures the proxy and not the target's dropped SYNs. busybox `httpd`, the bench's
// former target, listens with a backlog of 9, forks per connection and closes after each
// answer; this one listens with std's backlog of 128 and runs a thread per connection.
// Built by the bench with plain `rustc` (std only, static): `target PORT BODY [close]`.
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

fn serve(
    stream: TcpStream,
    always_close: bool,
    answer: &[u8],
    answer_close: &[u8],
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(16 * 1024, stream);
    let mut line = String::new();
    loop {
        // The request line, then its headers up to the empty line.
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        let http10 = line.trim_end().ends_with("HTTP/1.0");
        let mut close = http10 || always_close;
        let mut body = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("connection") {
                    if value.eq_ignore_ascii_case("close") {
                        close = true;
                    } else if value.eq_ignore_ascii_case("keep-alive") {
                        close = always_close;
                    }
                } else if name.eq_ignore_ascii_case("content-length") {
                    body = value.parse().unwrap_or(0);
                }
            }
        }
        // A request body (none from wrk or a health check) is read and dropped.
        while body > 0 {
            let got = reader.fill_buf()?.len().min(body);
            if got == 0 {
                return Ok(());
            }
            reader.consume(got);
            body -= got;
        }
        writer.write_all(if close { answer_close } else { answer })?;
        if close {
            return Ok(());
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !(3..=4).contains(&args.len()) || args.get(3).is_some_and(|a| a != "close") {
        eprintln!("usage: {} PORT BODY [close]", args[0]);
        std::process::exit(2);
    }
    let always_close = args.len() == 4;
    let body = format!("{}\n", args[2]);
    let head = |extra: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n{extra}\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let answer: &'static [u8] = head("").leak();
    let answer_close: &'static [u8] = head("Connection: close\r\n").leak();
    let listener =
        TcpListener::bind(("0.0.0.0", args[1].parse::<u16>().expect("PORT"))).expect("bind");
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                std::thread::spawn(move || {
                    let _ = serve(s, always_close, answer, answer_close);
                });
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}
