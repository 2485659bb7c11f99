//! `cargo xtask ollama`: where Ollama is not installed (this project's machines), status
//! and start say so clearly and fail; nothing is started. `pull` against a stand-in for
//! Ollama's API fetches the configured models it lacks.

mod support;

use support::xtask;

fn ollama_installed() -> bool {
    std::process::Command::new("ollama").arg("--version").output().is_ok()
}

#[test]
fn without_ollama_status_and_start_say_how_to_get_it() {
    if ollama_installed() {
        eprintln!("ollama is installed here: the not-installed messages cannot be checked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join(".env");
    // A port nothing listens on, so a stray Ollama elsewhere cannot answer.
    let port = weknora_testkit::free_port();
    std::fs::write(&env_file, format!("OLLAMA_BASE_URL=http://127.0.0.1:{port}\nOLLAMA_MODELS=nomic-embed-text\n"))
        .unwrap();
    let env = vec![("WEKNORA_ENV_FILE".to_string(), env_file.display().to_string())];

    let (ok, out, err) = xtask(&["ollama", "status", "--json"], &env);
    assert!(!ok, "status succeeded without Ollama");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["installed"], false);
    assert_eq!(v["answering"], false);
    assert_eq!(v["address"], format!("127.0.0.1:{port}"));
    assert_eq!(v["missing"], serde_json::json!(["nomic-embed-text"]));
    assert!(err.contains("Ollama is not installed") && err.contains("ollama.com"), "{err}");

    let (ok, _, err) = xtask(&["ollama", "start"], &env);
    assert!(!ok && err.contains("Ollama is not installed"), "{err}");
    let (ok, _, err) = xtask(&["ollama", "stop"], &env);
    assert!(!ok && err.contains("no Ollama started"), "{err}");
}

/// A stand-in for Ollama's API on loopback (Ollama cannot be installed here): /api/tags
/// lists `have`, /api/pull streams a successful pull. Returns its port and the pulls asked for.
fn fake_ollama(have: &'static [&'static str]) -> (u16, std::sync::mpsc::Receiver<serde_json::Value>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (pulls, pulled) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut request, mut length) = (String::new(), 0);
            reader.read_line(&mut request).unwrap();
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                line.clear();
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let answer = if request.starts_with("POST /api/pull ") {
                pulls.send(serde_json::from_slice(&body).unwrap()).unwrap();
                "{\"status\":\"pulling manifest\"}\n{\"status\":\"success\"}\n".to_string()
            } else {
                serde_json::json!({"models": have.iter().map(|m| serde_json::json!({"name": m})).collect::<Vec<_>>()})
                    .to_string()
            };
            let _ = write!(stream, "HTTP/1.0 200 OK\r\n\r\n{answer}");
        }
    });
    (port, pulled)
}

#[test]
fn pull_fetches_the_configured_models_ollama_lacks() {
    let (port, pulled) = fake_ollama(&["nomic-embed-text:latest"]);
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join(".env");
    std::fs::write(
        &env_file,
        format!(
            "OLLAMA_BASE_URL=http://127.0.0.1:{port}\nOLLAMA_MODELS=nomic-embed-text\nOLLAMA_CHAT_MODEL=tiny-chat:1b\n"
        ),
    )
    .unwrap();
    let env = vec![("WEKNORA_ENV_FILE".to_string(), env_file.display().to_string())];
    let (ok, out, err) = xtask(&["ollama", "pull"], &env);
    assert!(ok, "{err}");
    assert_eq!(pulled.try_iter().collect::<Vec<_>>(), [serde_json::json!({"model": "tiny-chat:1b", "stream": true})]);
    assert!(err.contains("Ollama has nomic-embed-text") && err.contains("pulled tiny-chat:1b"), "{err}");
    assert!(out.contains("has nomic-embed-text, tiny-chat:1b"), "{out}");
}
