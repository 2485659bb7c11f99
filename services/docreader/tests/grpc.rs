//! The server as the app meets it: the real binary on a real socket, a tonic client,
//! real files (tests/fixtures, written by make_fixtures.py from known text).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use docreader::proto::doc_reader_client::DocReaderClient;
use docreader::proto::read_stream_response::Payload;
use docreader::proto::{ListEnginesRequest, ReadRequest, ReadResponse};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use weknora_testkit::{free_port, serve_page};

const BIN: &str = env!("CARGO_BIN_EXE_weknora-docreader");
const LIMIT_MB: usize = 4;

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn healthcheck(port: u16) -> bool {
    Command::new(BIN)
        .args(["healthcheck", "--addr", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn start(env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let child = Command::new(BIN)
        .env("DOCREADER_GRPC_PORT", port.to_string())
        .env("DOCREADER_GRPC_MAX_FILE_SIZE_MB", LIMIT_MB.to_string())
        .env("DOCREADER_REQUEST_TIMEOUT_SECS", "30")
        .env("LOG_LEVEL", "warn")
        // Tests run servers side by side: metrics only where a test asks for them.
        .env("DOCREADER_METRICS_PORT", "0")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .spawn()
        .expect("starting weknora-docreader");
    let server = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !healthcheck(port) {
        assert!(Instant::now() < deadline, "docreader did not report SERVING within 20s");
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

async fn client(server: &Server) -> DocReaderClient<Channel> {
    DocReaderClient::connect(format!("http://127.0.0.1:{}", server.port))
        .await
        .unwrap()
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

fn request(bytes: Vec<u8>, name: &str) -> ReadRequest {
    ReadRequest {
        file_content: bytes,
        file_name: name.into(),
        request_id: format!("test-{name}"),
        ..Default::default()
    }
}

async fn read(c: &mut DocReaderClient<Channel>, bytes: Vec<u8>, name: &str) -> Result<ReadResponse, Status> {
    c.read(request(bytes, name)).await.map(|r| r.into_inner())
}

fn assert_contains(markdown: &str, parts: &[&str]) {
    for part in parts {
        assert!(markdown.contains(part), "missing {part:?} in:\n{markdown}");
    }
}

#[tokio::test]
async fn every_format_comes_out_as_markdown_with_its_text_headings_and_tables() {
    let server = start(&[]);
    let mut c = client(&server).await;

    let docx = read(&mut c, fixture("sample.docx"), "sample.docx").await.unwrap();
    assert_contains(
        &docx.markdown_content,
        &[
            "# 部署手册\n",
            "数据库备份每天凌晨执行。",
            "## Services\n",
            "- start the stack\n- check health",
            "1. first step\n2. second step",
            "| 服务 | 端口 |\n| --- | --- |\n| app | 8080 |\n| docreader | 50051 |",
            "![](images/image1.png)",
            "恢复演练每月一次。",
        ],
    );
    assert_eq!(docx.image_refs.len(), 1);
    let image = &docx.image_refs[0];
    assert_eq!((image.mime_type.as_str(), image.original_ref.as_str()), ("image/png", "images/image1.png"));
    assert!(image.image_data.starts_with(b"\x89PNG"));
    assert_eq!(docx.metadata["title"], "部署手册");
    assert_eq!(docx.metadata["request_id"], "test-sample.docx");

    let xlsx = read(&mut c, fixture("sample.xlsx"), "sample.xlsx").await.unwrap();
    assert_contains(
        &xlsx.markdown_content,
        &["## 服务", "| 服务 | 端口 |", "| app | 8080 |", "## Notes", "| 备份 | nightly |"],
    );
    assert_eq!(xlsx.metadata["sheet_count"], "2");
    let xls = read(&mut c, fixture("sample.xls"), "sample.xls").await.unwrap();
    assert_contains(&xls.markdown_content, &["## 服务", "| docreader | 50051 |"]);
    let ods = read(&mut c, fixture("sample.ods"), "sample.ods").await.unwrap();
    assert_contains(&ods.markdown_content, &["| 服务 | 端口 |", "| app | 8080 |"]);

    let pptx = read(&mut c, fixture("sample.pptx"), "sample.pptx").await.unwrap();
    assert_contains(
        &pptx.markdown_content,
        &["## Slide 1", "第一页 Overview", "数据库备份每天凌晨执行。", "## Slide 2", "Restore drills run monthly."],
    );

    let pdf = read(&mut c, fixture("sample.pdf"), "sample.pdf").await.unwrap();
    assert_contains(&pdf.markdown_content, &["Backup runs nightly at two.", "Restore drills run monthly."]);
    assert_eq!(pdf.metadata["page_count"], "2");

    let epub = read(&mut c, fixture("sample.epub"), "sample.epub").await.unwrap();
    assert_contains(&epub.markdown_content, &["# 第一章", "数据库备份每天凌晨执行。", "# Chapter two"]);
    assert_eq!(epub.metadata["title"], "运维指南");

    let (gbk, _, _) = encoding_rs::GBK.encode("运维手册：数据库备份每天凌晨执行，恢复演练每月一次。");
    let txt = read(&mut c, gbk.into_owned(), "notes.txt").await.unwrap();
    assert_eq!(txt.markdown_content, "运维手册：数据库备份每天凌晨执行，恢复演练每月一次。");
    assert_eq!(txt.metadata["encoding"], "GBK");

    let md = read(&mut c, "# 标题\n\n正文 text".as_bytes().to_vec(), "readme.md").await.unwrap();
    assert_eq!(md.markdown_content, "# 标题\n\n正文 text");

    let html = "<html><head><title>运维</title></head><body><h2>备份</h2><p>每天 <b>凌晨</b></p><table><tr><th>a</th></tr><tr><td>1</td></tr></table></body></html>";
    let html = read(&mut c, html.as_bytes().to_vec(), "page.html").await.unwrap();
    assert_contains(&html.markdown_content, &["## 备份", "每天 **凌晨**", "| a |\n| --- |\n| 1 |"]);
    assert_eq!(html.metadata["title"], "运维");

    let csv = read(&mut c, "服务,端口\napp,8080\n".as_bytes().to_vec(), "ports.csv").await.unwrap();
    assert_eq!(csv.markdown_content, "| 服务 | 端口 |\n| --- | --- |\n| app | 8080 |\n");
}

#[tokio::test]
async fn read_stream_sends_meta_first_then_one_frame_per_image() {
    let server = start(&[]);
    let mut c = client(&server).await;
    let mut stream = c.read_stream(request(fixture("sample.docx"), "sample.docx")).await.unwrap().into_inner();
    let mut frames = Vec::new();
    while let Some(frame) = stream.message().await.unwrap() {
        frames.push(frame.payload.unwrap());
    }
    assert_eq!(frames.len(), 2);
    let Payload::Meta(meta) = &frames[0] else { panic!("first frame is not meta") };
    assert_eq!(meta.image_count, 1);
    assert!(meta.markdown_content.contains("# 部署手册"));
    let Payload::Image(image) = &frames[1] else { panic!("second frame is not an image") };
    assert!(image.image_data.starts_with(b"\x89PNG"));
}

#[tokio::test]
async fn bad_input_is_refused_with_the_reason_and_the_server_keeps_serving() {
    let server = start(&[]);
    let mut c = client(&server).await;
    let docx = fixture("sample.docx");
    let cases: Vec<(&str, Vec<u8>, Code, &str)> = vec![
        ("corrupt.docx", b"PK\x03\x04 this is not really a zip".to_vec(), Code::InvalidArgument, "not a valid DOCX"),
        ("truncated.docx", docx[..docx.len() / 2].to_vec(), Code::InvalidArgument, "not a valid DOCX"),
        ("empty.pdf", Vec::new(), Code::InvalidArgument, "empty"),
        ("renamed.docx", fixture("sample.pdf"), Code::InvalidArgument, "looks like a PDF"),
        (
            "broken.pdf",
            b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage".to_vec(),
            Code::InvalidArgument,
            "not a valid PDF",
        ),
        ("bomb.docx", fixture("bomb.docx"), Code::ResourceExhausted, "zip bomb"),
        (
            "deep.html",
            format!("{}x{}", "<div>".repeat(50_000), "</div>".repeat(50_000)).into_bytes(),
            Code::InvalidArgument,
            "deep",
        ),
        (
            "old.doc",
            b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1rest".to_vec(),
            Code::InvalidArgument,
            "save the document as .docx",
        ),
        ("binary.txt", (0..=255u8).cycle().take(4096).collect(), Code::InvalidArgument, "binary"),
        ("tool.exe", b"MZ".to_vec(), Code::InvalidArgument, "not supported"),
        // Found by fuzzing: panics in the PDF and XLS readers, and an XLS claiming billions of cells.
        ("mediabox.pdf", fixture("regressions/pdf-without-mediabox.pdf"), Code::InvalidArgument, "not a valid PDF"),
        ("dims.xls", fixture("regressions/xls-huge-dimensions.xls"), Code::ResourceExhausted, "cells"),
        ("past-end.xls", fixture("regressions/xls-sheet-past-end.xls"), Code::InvalidArgument, "not a valid XLS"),
    ];
    for (name, bytes, code, reason) in cases {
        let status = read(&mut c, bytes, name).await.unwrap_err();
        assert_eq!(status.code(), code, "{name}: {status:?}");
        assert!(
            status.message().starts_with(name) && status.message().contains(reason),
            "{name}: {}",
            status.message()
        );
        assert!(healthcheck(server.port), "not serving after {name}");
    }
    // And still parses good documents.
    assert!(read(&mut c, fixture("sample.xlsx"), "sample.xlsx").await.is_ok());
}

/// A plain HTTP GET of the metrics page.
fn metrics_page(port: u16) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    page
}

/// The value of the series `name` whose labels include `labels`; None when there is none.
fn series(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        let (metric, rest) = key.split_once('{').unwrap_or((key, ""));
        let matches = metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        matches.then(|| value.parse().ok()).flatten()
    })
}

#[tokio::test]
async fn metrics_count_requests_by_format_and_outcome_and_refusals_by_reason() {
    let metrics = free_port();
    let server = start(&[("DOCREADER_METRICS_PORT", &metrics.to_string()), ("DOCREADER_GRPC_MAX_WORKERS", "3")]);
    let mut c = client(&server).await;
    read(&mut c, fixture("sample.docx"), "sample.docx").await.unwrap();
    read(&mut c, b"hello".to_vec(), "a.txt").await.unwrap();
    read(&mut c, b"hello again".to_vec(), "b.txt").await.unwrap();
    assert_eq!(read(&mut c, b"MZ".to_vec(), "tool.exe").await.unwrap_err().code(), Code::InvalidArgument);
    let over = vec![b'a'; (LIMIT_MB << 20) + 10];
    assert_eq!(read(&mut c, over, "big.txt").await.unwrap_err().code(), Code::ResourceExhausted);
    let corrupt = b"PK\x03\x04 not a zip".to_vec();
    assert_eq!(read(&mut c, corrupt, "corrupt.docx").await.unwrap_err().code(), Code::InvalidArgument);

    let page = metrics_page(metrics);
    let count = |name: &str, labels: &[(&str, &str)]| {
        series(&page, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{page}"))
    };
    let requests = "weknora_docreader_requests_total";
    assert_eq!(count(requests, &[("format", "docx"), ("outcome", "ok")]), 1.0);
    assert_eq!(count(requests, &[("format", "txt"), ("outcome", "ok")]), 2.0);
    assert_eq!(count(requests, &[("format", "unsupported"), ("outcome", "invalid")]), 1.0);
    assert_eq!(count(requests, &[("format", "txt"), ("outcome", "too_large")]), 1.0);
    assert_eq!(count(requests, &[("format", "docx"), ("outcome", "invalid")]), 1.0, "a malformed file is no refusal");
    let refusals = "weknora_docreader_refusals_total";
    assert_eq!(count(refusals, &[("reason", "unsupported_format")]), 1.0);
    assert_eq!(count(refusals, &[("reason", "too_large")]), 1.0);
    assert!(series(&page, refusals, &[("reason", "bad_request")]).is_none());
    // Durations and sizes of what was read; nothing is in flight once all is answered.
    let timed = count("weknora_docreader_request_duration_seconds_count", &[("format", "txt"), ("outcome", "ok")]);
    assert_eq!(timed, 2.0);
    assert_eq!(count("weknora_docreader_document_bytes_count", &[("format", "docx")]), 2.0);
    assert_eq!(count("weknora_docreader_document_bytes_sum", &[("format", "txt")]), (5 + 11) as f64);
    assert_eq!(count("weknora_docreader_in_flight", &[]), 0.0);
    assert_eq!(count("weknora_docreader_parsing", &[]), 0.0);
    assert_eq!(count("weknora_docreader_workers", &[]), 3.0);
    assert_eq!(count("weknora_docreader_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
}

#[tokio::test]
async fn oversize_files_are_refused_stating_the_limit() {
    let server = start(&[]);
    let mut c = client(&server).await;
    let just_over = vec![b'a'; (LIMIT_MB << 20) + 10];
    let status = read(&mut c, just_over, "big.txt").await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains(&format!("the limit is {LIMIT_MB} MB")), "{}", status.message());
    let far_over = vec![b'a'; (LIMIT_MB + 3) << 20];
    let status = read(&mut c, far_over, "huge.txt").await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(healthcheck(server.port));
}

#[tokio::test]
async fn a_token_guards_every_call_but_health() {
    let server = start(&[("GRPC_AUTH_TOKEN", "s3cret-token")]);
    let mut c = client(&server).await;
    let status = c.list_engines(ListEnginesRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("authorization"));
    let mut wrong = Request::new(ListEnginesRequest::default());
    wrong.metadata_mut().insert("authorization", "Bearer nope".parse().unwrap());
    assert_eq!(c.list_engines(wrong).await.unwrap_err().code(), Code::Unauthenticated);
    let mut right = Request::new(request(b"hello".to_vec(), "a.txt"));
    right.metadata_mut().insert("authorization", "Bearer s3cret-token".parse().unwrap());
    assert_eq!(c.read(right).await.unwrap().into_inner().markdown_content, "hello");
    assert!(healthcheck(server.port), "health needs no token");
}

#[tokio::test]
async fn list_engines_reports_the_builtin_engine() {
    let server = start(&[]);
    let mut c = client(&server).await;
    let engines = c.list_engines(ListEnginesRequest::default()).await.unwrap().into_inner().engines;
    assert_eq!(engines.len(), 1);
    assert_eq!(engines[0].name, "builtin");
    assert!(engines[0].available);
    assert!(engines[0].file_types.iter().any(|t| t == "docx"));
    let mut req = request(b"x".to_vec(), "a.txt");
    req.config = Some(docreader::proto::ReadConfig { parser_engine: "mineru".into(), ..Default::default() });
    let status = c.read(req).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("available: builtin"));
}

#[tokio::test]
async fn url_reads_refuse_private_addresses_unless_allow_listed() {
    let port = serve_page("<html><body><h1>内网文档</h1><p>fetched over http</p></body></html>", 1);
    let url_req = |url: String| ReadRequest { url, ..Default::default() };
    let guarded = start(&[]);
    let mut c = client(&guarded).await;
    for url in [
        format!("http://127.0.0.1:{port}/doc"),
        format!("http://localhost:{port}/doc"),
        format!("http://[::1]:{port}/"),
    ] {
        let status = c.read(url_req(url.clone())).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{url}: {status:?}");
        assert!(status.message().contains("DOCREADER_URL_ALLOWLIST"), "{}", status.message());
    }
    let status = c.read(url_req("file:///etc/passwd".into())).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let open = start(&[("DOCREADER_URL_ALLOWLIST", "127.0.0.1")]);
    let mut c = client(&open).await;
    let doc = c.read(url_req(format!("http://127.0.0.1:{port}/doc"))).await.unwrap().into_inner();
    assert_contains(&doc.markdown_content, &["# 内网文档", "fetched over http"]);
}

#[tokio::test]
async fn a_request_that_outlives_its_deadline_gets_deadline_exceeded_and_the_server_goes_on() {
    // A web server that accepts the connection and never answers.
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hung.local_addr().unwrap().port();
    let server = start(&[("DOCREADER_REQUEST_TIMEOUT_SECS", "1"), ("DOCREADER_URL_ALLOWLIST", "127.0.0.1")]);
    let mut c = client(&server).await;
    let started = Instant::now();
    let url = format!("http://127.0.0.1:{port}/slow");
    let status = c.read(ReadRequest { url: url.clone(), ..Default::default() }).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("DOCREADER_REQUEST_TIMEOUT_SECS"), "{}", status.message());
    assert!(started.elapsed() < Duration::from_secs(10), "the deadline was not kept");
    assert!(healthcheck(server.port));
    assert_eq!(read(&mut c, b"still here".to_vec(), "a.txt").await.unwrap().markdown_content, "still here");
    drop(hung);
}

#[test]
fn healthcheck_fails_when_nothing_serves_and_version_prints_build_metadata() {
    assert!(!healthcheck(free_port()));
    let out = Command::new(BIN).arg("--version").output().unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.starts_with(&format!("weknora-docreader {} (commit ", env!("CARGO_PKG_VERSION"))), "{line}");
    assert!(line.contains("rustc 1."), "{line}");
}

#[test]
fn a_bad_setting_stops_the_server_naming_the_variable() {
    let out = Command::new(BIN).env("DOCREADER_GRPC_MAX_FILE_SIZE_MB", "fifty").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DOCREADER_GRPC_MAX_FILE_SIZE_MB=`fifty`"));
}
