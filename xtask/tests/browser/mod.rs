//! The web interface in a real browser: headless Chromium (Debian's `chromium`) through its
//! WebDriver (`chromium-driver`), driven with fantoccini. A person's walk through the UI
//! against a running stack, with a screenshot of every step under
//! `target/ui-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use weknora_testkit::{free_port, wait_listening};

/// How long the UI may take to show what the test waits for (parsing included).
const PATIENCE: Duration = Duration::from_secs(120);

/// chromedriver, stopped when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("ui-screenshots")
}

struct Session {
    client: Client,
    base: String,
    shots: PathBuf,
    step: u32,
}

impl Session {
    async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        match self.client.wait().at_most(PATIENCE).for_element(Locator::Css(selector)).await {
            Ok(found) => found,
            Err(e) => panic!("the page never showed `{selector}`: {e}\n{}", self.page_text().await),
        }
    }

    /// Waits until `count` elements match `selector`; returns their texts. An element the
    /// page re-rendered meanwhile (stale) means: look again.
    async fn texts(&self, selector: &str, count: usize) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let found = self.client.find_all(Locator::Css(selector)).await.unwrap();
            if found.len() >= count {
                let mut texts = Vec::new();
                for e in &found {
                    match e.text().await {
                        Ok(text) => texts.push(text),
                        Err(_) => break,
                    }
                }
                if texts.len() == found.len() {
                    return texts;
                }
            }
            if Instant::now() > deadline {
                panic!("{count} × `{selector}` never showed (saw {}):\n{}", found.len(), self.page_text().await);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until an element matching `selector` shows `needle` (a re-render may still be
    /// on its way: the old page's elements do not count as an answer).
    async fn wait_for_text(&self, selector: &str, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            for e in self.client.find_all(Locator::Css(selector)).await.unwrap() {
                if let Ok(text) = e.text().await
                    && text.contains(needle)
                {
                    return text;
                }
            }
            if Instant::now() > deadline {
                panic!("`{selector}` never showed “{needle}”:\n{}", self.page_text().await);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn page_text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(e) => format!("(no page: {e})"),
        }
    }

    async fn type_into(&self, selector: &str, text: &str) {
        let field = self.css(selector).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Clicks `selector`, finding it again if the page re-rendered it in between.
    async fn click(&self, selector: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.css(selector).await.click().await {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("clicking `{selector}`: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn shot(&mut self, name: &str) {
        self.step += 1;
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{:02}-{name}.png", self.step)), png).unwrap();
    }

    async fn flash_error(&self) -> String {
        self.css("#flash .error").await.text().await.unwrap()
    }
}

/// Signs in (a wrong key first), creates a knowledge base, uploads two documents with an
/// empty and an oversize file at once, watches them reach `completed`, browses chunks, and searches in
/// English and Chinese with the matches highlighted; asks the documents a question in the
/// chat and follows the answer's citation to its passage and document; then rebuilds the
/// vectors and deletes the knowledge base.
pub fn walk_through_the_ui(frontend_port: &str, api_key: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(walk(frontend_port, api_key));
}

async fn walk(frontend_port: &str, api_key: &str) {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian package chromium-driver; cargo xtask doctor --fix installs it)");
    let _driver = Driver(driver);
    wait_listening(port, "chromedriver");
    let profile = tempfile::tempdir().unwrap();
    // Flags for a machine with no outside network and no display, running as root.
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--lang=en-US",
        "--window-size=1280,900",
        &format!("--user-data-dir={}", profile.path().display()),
    ];
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": "/usr/bin/chromium", "args": args, "prefs": { "intl.accept_languages": "en-US" } }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session through chromedriver");
    let shots = screenshot_dir();
    std::fs::create_dir_all(&shots).unwrap();
    let mut s = Session { client, base: format!("http://127.0.0.1:{frontend_port}/"), shots, step: 0 };
    steps(&mut s, api_key).await;
    s.client.close().await.unwrap();
}

async fn steps(s: &mut Session, api_key: &str) {
    // Sign in: a wrong key is refused with the app's own message, the right one lets in.
    s.client.goto(&s.base).await.unwrap();
    s.css("#sign-in").await;
    s.type_into("#api-key", "not-a-key").await;
    s.click("#sign-in button[type=submit]").await;
    assert!(s.flash_error().await.contains("invalid API key"), "{}", s.page_text().await);
    s.shot("sign-in-refused").await;
    s.type_into("#api-key", api_key).await;
    s.click("#sign-in button[type=submit]").await;
    s.css("#kb-create").await;
    s.shot("knowledge-bases").await;

    // A knowledge base with a Chinese and English name.
    s.type_into("#kb-name", "运维手册 Operations").await;
    s.type_into("#kb-description", "Runbooks and recovery drills / 运维与恢复演练").await;
    s.click("#kb-create button[type=submit]").await;
    let limit = s.css("#upload-limit").await.text().await.unwrap();
    let url = s.client.current_url().await.unwrap();
    let kb_id =
        url.fragment().and_then(|f| f.strip_prefix("/kb/")).expect("on the new knowledge base's page").to_string();
    assert!(limit.contains("50 MB"), "the size limit is shown before any upload: {limit}");

    // Four files at once: two documents, and an empty and an oversize file that the page
    // refuses itself (the oversize one is sparse: 51 MB that take no disk).
    let dir = tempfile::tempdir().unwrap();
    let files = [("recovery.md", RECOVERY_MD), ("备份策略.txt", BACKUP_TXT), ("empty.md", "")];
    let mut paths: Vec<String> = files
        .iter()
        .map(|(name, text)| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        })
        .collect();
    let huge = dir.path().join("huge.pdf");
    std::fs::File::create(&huge).unwrap().set_len(51 << 20).unwrap();
    paths.push(huge.display().to_string());
    s.css("#file-input").await.send_keys(&paths.join("\n")).await.unwrap();
    let refused = s.texts("#uploads li.failed .outcome", 2).await.join("\n");
    assert!(refused.contains("empty.md is empty. Nothing was sent."), "{refused}");
    assert!(refused.contains("huge.pdf is 51.0 MB: larger than the 50 MB limit. Nothing was sent."), "{refused}");
    s.texts("#uploads li.ok", 2).await;
    s.texts("#documents [data-status=completed]", 2).await;
    // The bundled embedder gives both their vectors; the table follows until it has.
    s.texts("#documents [data-vectors=completed]", 2).await;
    let rows = s.texts("#documents tbody tr", 2).await;
    assert_eq!(rows.len(), 2, "the refused files were never sent: {rows:?}");
    s.shot("documents-completed").await;

    // A document's chunks.
    s.click("#documents a.doc-title[href]").await;
    let chunks = s.texts("#chunks li", 1).await.join("\n");
    assert!(chunks.contains("备份") || chunks.contains("restore drill"), "{chunks}");
    s.shot("chunks").await;

    // Search in English: the matching passage, with the words highlighted.
    s.click("a[href^='#/kb/']").await;
    s.click("#tab-search").await;
    s.type_into("#search-query", "restore drill").await;
    s.click("#search button[type=submit]").await;
    let marks = s.texts("#results .hit mark", 2).await;
    let mut words: Vec<String> = marks.iter().map(|m| m.to_lowercase()).collect();
    words.sort();
    words.dedup();
    assert_eq!(words, ["drill", "restore"], "{marks:?}");
    let passage = s.css("#results .hit .passage").await.text().await.unwrap();
    assert!(passage.contains("verified by a restore drill every Friday"), "{passage}");
    let matched = s.css("#results .hit .match").await.text().await.unwrap();
    assert_eq!(matched, "keyword + meaning", "the best hit matched both ways");
    s.shot("search-english").await;

    // In Chinese, with the interface in Chinese too.
    s.click("#lang").await;
    s.wait_for_text("#tab-search", "检索").await;
    s.type_into("#search-query", "数据库备份").await;
    s.click("#search button[type=submit]").await;
    s.wait_for_text("#results .hit mark", "备份").await;
    let passage = s.wait_for_text("#results .hit .passage", "数据库备份每天凌晨两点执行").await;
    assert!(!passage.contains("restore"), "only the Chinese document matches: {passage}");
    s.shot("search-chinese").await;

    // Back in English.
    s.click("#lang").await;
    s.wait_for_text("#tab-search", "Search").await;

    chat(s, &kb_id).await;
    s.click("#nav-kbs").await;
    s.click(&format!("#kb-list [data-kb-id='{kb_id}'] a.kb-name")).await;

    // The knowledge base says which model made its vectors, and can have them made again.
    s.wait_for_text("#kb-embedding", "multilingual-e5-small-q4 (384 dimensions)").await;
    s.click("#kb-reindex").await;
    s.client.accept_alert().await.unwrap();
    let notice = s.wait_for_text("#flash .notice", "new vectors").await;
    assert!(notice.contains("2 documents are getting new vectors"), "{notice}");
    s.shot("reindex").await;
    // Delete the knowledge base (after a confirmation).
    s.click("#nav-kbs").await;
    s.click(&format!("#kb-list [data-kb-id='{kb_id}'] .kb-delete")).await;
    s.client.accept_alert().await.unwrap();
    let notice = s.css("#flash .notice").await.text().await.unwrap();
    assert!(notice.contains("运维手册 Operations"), "{notice}");
    let left = s.client.find_all(Locator::Css(&format!("[data-kb-id='{kb_id}']"))).await.unwrap();
    assert!(left.is_empty(), "the deleted knowledge base is still listed");
    s.shot("deleted").await;
}

/// A question in the chat about the uploaded documents. The stack has no chat model, so the
/// answer is the extractive one (the best passages, each cited `[n]`) with a note saying how
/// to add a model; a citation opens its passage, and the passage's link its document.
async fn chat(s: &mut Session, kb_id: &str) {
    s.click("#nav-chat").await;
    s.css("#chat-empty").await;
    s.css("#chat-kb").await.select_by_value(kb_id).await.unwrap();
    s.type_into("#chat-query", "When is the restore drill?").await;
    s.click("#ask button[type=submit]").await;
    // The answer streams in; its last frame marks it completed.
    let answer = s.css("#messages li.assistant[data-status=completed] .answer-text").await.text().await.unwrap();
    assert!(answer.contains("verified by a restore drill every Friday"), "{answer}");
    let cited = s.texts("#messages .answer-text button.cite", 1).await;
    assert_eq!(cited[0], "[1]", "the first passage is cited as a button: {cited:?}");
    let kind = s.css("#messages .answer-status .model").await;
    assert_eq!(kind.attr("data-answer-kind").await.unwrap().as_deref(), Some("extractive"));
    assert_eq!(kind.text().await.unwrap(), "Passages found, no written answer");
    let note = s.css("#messages .extractive-note").await.text().await.unwrap();
    for how in ["No chat model is configured", "LLM_BASE_URL", "/api/v1/models", "cargo xtask start --ollama"] {
        assert!(note.contains(how), "the note says how to add a chat model ({how}): {note}");
    }
    // The question made a session, which took it as its title.
    let url = s.client.current_url().await.unwrap();
    let session = url.fragment().and_then(|f| f.strip_prefix("/chat/")).expect("on the new session's page").to_string();
    let listed = format!("#session-list [data-session-id='{session}']");
    s.wait_for_text(&format!("{listed}.active"), "When is the restore drill?").await;
    s.shot("chat-answer").await;

    // The citation opens its passage, and the passage's link the document at that chunk.
    s.click("#messages .answer-text button.cite[data-n='1']").await;
    let passage = s.wait_for_text(".reference details[open] .passage", "restore drill").await;
    assert!(passage.contains("verified by a restore drill every Friday"), "{passage}");
    s.shot("chat-citation").await;
    s.click(".reference details[open] a.ref-doc").await;
    s.wait_for_text("#chunks li.cited", "restore drill every Friday").await;
    s.shot("chat-cited-chunk").await;

    // The conversation again from the list: the stored question and answer, citations kept.
    s.click("#nav-chat").await;
    s.click(&format!("{listed} a")).await;
    s.wait_for_text("#messages li.user", "When is the restore drill?").await;
    s.css("#messages li.assistant[data-status=completed] .answer-text button.cite").await;
    s.css("#messages .extractive-note").await;

    // Deleted after a confirmation.
    s.click(&format!("{listed} .session-delete")).await;
    s.client.accept_alert().await.unwrap();
    let notice = s.wait_for_text("#flash .notice", "Deleted the conversation").await;
    assert!(notice.contains("When is the restore drill?"), "{notice}");
    s.css("#chat-empty").await;
    let left = s.client.find_all(Locator::Css(&listed)).await.unwrap();
    assert!(left.is_empty(), "the deleted session is still listed");
}

const RECOVERY_MD: &str = "# Disaster recovery\n\nThe nightly backup of the vault runs at 02:00 and is \
                           verified by a restore drill every Friday. Keep the offsite copies for ninety days.\n";

const BACKUP_TXT: &str =
    "备份策略\n\n数据库备份每天凌晨两点执行，备份文件保存在异地存储中九十天。每月进行一次恢复演练。\n";
