//! `cargo xtask ollama`: where Ollama is not installed (this project's machines), status
//! and start say so clearly and fail; nothing is started.

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
