//! `cargo xtask bench search`: hybrid search through the app (release build, pinned to one
//! core) against PostgreSQL 17 + pgvector and the bundled embedder, at each corpus size,
//! beside the floor: the same keyword and vector statements run as raw SQL in the same
//! run with the question's vector fetched beforehand, and the embedder's own time for a
//! question. Then the ingest's embedding throughput beside the embedder's own on the same
//! chunks (docreader runs too, for the document's parse). Corpus: synthetic chunks (words drawn from a 5,000-word vocabulary) with random
//! unit vectors, loaded straight into the database; questions are embedded for real.

use super::free_port;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::images::{EMBEDDER_IMAGE, LOCAL_DEPS};
use weknora_operator::poll::poll;

/// Polls a plain check every 50 ms until it holds.
async fn until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    poll(what, timeout, Duration::from_millis(50), || {
        let ok = check();
        async move { Ok(ok.then_some(())) }
    })
    .await
}

const PASSWORD: &str = "bench-password";
const ADMIN_KEY: &str = "bench-admin-key-0123456789abcdef";
const MODEL: &str = "multilingual-e5-small-q4";
const CANDIDATES: i64 = 20;

#[derive(clap::Args)]
pub struct SearchBench {
    /// Corpus sizes in chunks, ascending (each size adds to the last).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    chunks: Vec<usize>,
    /// Questions timed at each size (each asked once: no cache hits).
    #[arg(long, default_value_t = 200)]
    questions: usize,
    /// Chunks embedded by the throughput comparison.
    #[arg(long, default_value_t = 256)]
    passages: usize,
    /// Print the figures as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Containers and processes of the run, removed however it ends.
#[derive(Default)]
struct Cleanup {
    containers: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", "-v", name]).output();
        }
    }
}

/// `docker run -d` on a loopback port pinned to `cpus`; the container's name.
fn run_container(cleanup: &mut Cleanup, image: &str, port: u16, inner: u16, cpus: &str, env: &[&str]) -> Result<()> {
    let name = format!("weknora-bench-{}-{port}", std::process::id());
    let mut cmd = Command::new("docker");
    // Room in /dev/shm for the index build's maintenance_work_mem (Docker gives 64 MB).
    cmd.args(["run", "-d", "--name", &name, "--cpuset-cpus", cpus, "--shm-size", "1g"]);
    cmd.args(["-p", &format!("127.0.0.1:{port}:{inner}")]);
    for e in env {
        cmd.args(["-e", e]);
    }
    let out = cmd.arg(image).output().context("running docker")?;
    if !out.status.success() {
        bail!("docker run {image} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    cleanup.containers.push(name);
    Ok(())
}

/// One HTTP/1.1 request with a JSON body; the status and the JSON answer.
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    // One write, without Nagle: a request in pieces waits on the server's delayed ACK
    // (tens to hundreds of ms), which would be the client's time, not the server's.
    stream.set_nodelay(true)?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {ADMIN_KEY}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, rest) = answer.split_once("\r\n\r\n").context("no HTTP answer")?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let json = match (rest.find('{'), rest.rfind('}')) {
        (Some(a), Some(b)) => serde_json::from_str(&rest[a..=b]).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    Ok((status, json))
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (p50, p99) in milliseconds.
fn percentiles(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    (at(50), at(99))
}

/// A question of three vocabulary words, so that keyword retrieval has something to find.
fn question(n: usize) -> String {
    format!("w{} w{} w{}", (n * 7919) % 5000, (n * 104_729) % 5000, (n * 1_299_709) % 5000)
}

impl SearchBench {
    pub fn run(self) -> Result<ExitCode> {
        let mut sizes = self.chunks.clone();
        sizes.sort_unstable();
        if sizes.is_empty() || sizes[0] == 0 {
            bail!("--chunks needs sizes above 0");
        }
        weknora_operator::host::runtime()?.block_on(self.measure(sizes))
    }

    async fn measure(self, sizes: Vec<usize>) -> Result<ExitCode> {
        let docker = weknora_operator::docker::connect().await?;
        let postgres_image = LOCAL_DEPS[0].image;
        for image in [postgres_image, EMBEDDER_IMAGE] {
            crate::images::ensure_local_image(&docker, image).await?;
        }
        eprintln!("==> bench search: building the release app and docreader");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--locked", "-p", "weknora-app", "-p", "weknora-docreader"])
            .status()?;
        if !status.success() {
            bail!("building weknora-app failed");
        }
        let mut cleanup = Cleanup::default();
        // The app on core 0; the database and the embedder share core 1.
        let (pg_port, embedder_port, redis_port, app_port) = (free_port()?, free_port()?, free_port()?, free_port()?);
        let pg_env =
            [format!("POSTGRES_PASSWORD={PASSWORD}"), "POSTGRES_USER=weknora".into(), "POSTGRES_DB=bench".into()];
        let pg_env: Vec<&str> = pg_env.iter().map(String::as_str).collect();
        run_container(&mut cleanup, postgres_image, pg_port, 5432, "1", &pg_env)?;
        run_container(&mut cleanup, EMBEDDER_IMAGE, embedder_port, 8000, "1", &[])?;
        cleanup.children.push(
            Command::new("redis-server")
                .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .context("redis-server is missing: run `cargo xtask doctor --fix --dev`")?,
        );
        let url = format!("postgres://weknora:{PASSWORD}@127.0.0.1:{pg_port}/bench");
        let mut db = poll("PostgreSQL", Duration::from_secs(90), Duration::from_millis(200), || async {
            Ok(PgConnection::connect(&url).await.ok())
        })
        .await?;
        until("the embedder", Duration::from_secs(90), || {
            http(embedder_port, "GET", "/health", None).is_ok_and(|(s, _)| s == 200)
        })
        .await?;
        let release = crate::paths::project_root().join("target/release");
        let docreader_port = free_port()?;
        cleanup.children.push(
            Command::new("taskset")
                .args(["-c", "1"])
                .arg(release.join("weknora-docreader"))
                .env("DOCREADER_GRPC_PORT", docreader_port.to_string())
                .env("LOG_LEVEL", "warn")
                .env("DOCREADER_METRICS_PORT", "0")
                .stdout(Stdio::null())
                .spawn()
                .context("starting docreader (is `taskset` there? util-linux)")?,
        );
        let app = release.join("weknora-app");
        let config = crate::paths::project_root().join("config/config.yaml");
        let embedder_url = format!("http://127.0.0.1:{embedder_port}");
        let env = [
            ("WEKNORA_CONFIG", config.display().to_string()),
            ("WEKNORA__SERVER__HOST", "127.0.0.1".into()),
            ("WEKNORA__SERVER__PORT", app_port.to_string()),
            ("DB_HOST", "127.0.0.1".into()),
            ("DB_PORT", pg_port.to_string()),
            ("DB_USER", "weknora".into()),
            ("DB_PASSWORD", PASSWORD.into()),
            ("DB_NAME", "bench".into()),
            ("REDIS_ADDR", format!("127.0.0.1:{redis_port}")),
            ("DOCREADER_ADDR", format!("127.0.0.1:{docreader_port}")),
            ("ADMIN_API_KEY", ADMIN_KEY.into()),
            ("AUTO_MIGRATE", "true".into()),
            ("LOG_LEVEL", "warn".into()),
            ("EMBEDDING_PROVIDER", "generic".into()),
            ("EMBEDDING_BASE_URL", embedder_url),
            ("EMBEDDING_MODEL_NAME", MODEL.into()),
            ("EMBEDDING_DIMENSION", "384".into()),
            ("EMBEDDING_INPUT_TYPE", "true".into()),
        ];
        let data = tempfile::tempdir()?;
        cleanup.children.push(
            Command::new("taskset")
                .args(["-c", "0"])
                .arg(&app)
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .env("WEKNORA__STORAGE__LOCAL_PATH", data.path())
                .stdout(Stdio::null())
                .spawn()
                .context("starting the app (is `taskset` there? util-linux)")?,
        );
        until("the app", Duration::from_secs(60), || {
            http(app_port, "GET", "/health", None).is_ok_and(|(s, _)| s == 200)
        })
        .await?;
        let (status, kb) = http(app_port, "POST", "/api/v1/knowledge-bases", Some(&json!({"name": "bench"})))?;
        if status != 201 {
            bail!("creating the knowledge base failed: {status} {kb}");
        }
        let kb = kb["data"]["id"].as_str().context("no knowledge base id")?.to_string();

        let mut rows = Vec::new();
        let mut loaded = 0;
        for (round, size) in sizes.iter().enumerate() {
            eprintln!("==> bench search: loading {} chunks (now {size})", size - loaded);
            load(&mut db, &kb, loaded, size - loaded).await?;
            loaded = *size;
            let first = round * self.questions;
            let (mut through_app, mut embed, mut sql) = (Vec::new(), Vec::new(), Vec::new());
            // Warm the caches of the database and the app's connections first.
            for n in 0..10 {
                let body = json!({ "query": question(1_000_000 + n), "knowledge_base_ids": [kb] });
                http(app_port, "POST", "/api/v1/knowledge-search", Some(&body))?;
            }
            for n in first..first + self.questions {
                let body = json!({ "query": question(n), "knowledge_base_ids": [kb], "top_k": 10 });
                let started = Instant::now();
                let (status, answer) = http(app_port, "POST", "/api/v1/knowledge-search", Some(&body))?;
                through_app.push(millis(started.elapsed()));
                if status != 200 || answer["retrieval"] != "hybrid" {
                    bail!("the app answered {status}: {answer}");
                }
                let started = Instant::now();
                let vector = embed_question(embedder_port, &question(n))?;
                embed.push(millis(started.elapsed()));
                let started = Instant::now();
                raw_sql(&mut db, &kb, &question(n), &vector).await?;
                sql.push(millis(started.elapsed()));
            }
            let (app_p50, app_p99) = percentiles(through_app);
            let (embed_p50, embed_p99) = percentiles(embed);
            let (sql_p50, sql_p99) = percentiles(sql);
            rows.push(json!({
                "chunks": size,
                "app_ms": { "p50": app_p50, "p99": app_p99 },
                "embedder_ms": { "p50": embed_p50, "p99": embed_p99 },
                "sql_ms": { "p50": sql_p50, "p99": sql_p99 },
                "app_over_floor_p99": app_p99 / (embed_p99 + sql_p99),
            }));
        }

        eprintln!("==> bench search: embedding throughput, {} passages", self.passages);
        let throughput = embedding_throughput(app_port, embedder_port, self.passages).await?;
        let report = json!({ "questions": self.questions, "search": rows, "embedding": throughput });
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("hybrid search, {} questions per size, top 10 (app on one core; ms)", self.questions);
            println!(
                "{:>8} {:>16} {:>18} {:>16} {:>12}",
                "CHUNKS", "APP p50/p99", "EMBEDDER p50/p99", "SQL p50/p99", "APP/FLOOR"
            );
            for r in &rows {
                let pair = |k: &str| {
                    format!("{:.1}/{:.1}", r[k]["p50"].as_f64().unwrap_or(0.0), r[k]["p99"].as_f64().unwrap_or(0.0))
                };
                println!(
                    "{:>8} {:>16} {:>18} {:>16} {:>11.2}x",
                    r["chunks"].as_u64().unwrap_or(0),
                    pair("app_ms"),
                    pair("embedder_ms"),
                    pair("sql_ms"),
                    r["app_over_floor_p99"].as_f64().unwrap_or(0.0)
                );
            }
            println!(
                "embedding: ingest {:.1} passages/s, the embedder alone {:.1} passages/s ({:.0} %)",
                throughput["ingest_per_s"].as_f64().unwrap_or(0.0),
                throughput["embedder_per_s"].as_f64().unwrap_or(0.0),
                throughput["ratio"].as_f64().unwrap_or(0.0) * 100.0
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Adds `count` chunks (100 per document) with search text and a random unit vector each,
/// with the vector index dropped during the load and built again after it.
async fn load(db: &mut PgConnection, kb: &str, from: usize, count: usize) -> Result<()> {
    let per_doc = 100;
    sqlx::query("DROP INDEX IF EXISTS chunk_embeddings_hnsw_384").execute(&mut *db).await?;
    let docs = count.div_ceil(per_doc);
    sqlx::query(
        "INSERT INTO knowledge (tenant_id, knowledge_base_id, source_type, source, title, parse_status, \
         vector_status, chunk_count) \
         SELECT b.tenant_id, b.id, 'manual', 'bench-' || g || '.md', 'bench ' || g, 'completed', 'completed', $3 \
         FROM knowledge_bases b, generate_series($2::int, $2::int + $4::int - 1) g WHERE b.id = $1::uuid",
    )
    .bind(kb)
    .bind((from / per_doc) as i32)
    .bind(per_doc as i32)
    .bind(docs as i32)
    .execute(&mut *db)
    .await?;
    // The subqueries name both their own row (`i`) and the outer one, so each chunk draws
    // its own words and vector (and the aggregate stays in the subquery).
    sqlx::query(
        "WITH docs AS (SELECT id, tenant_id, knowledge_base_id, row_number() OVER (ORDER BY created_at, id) - 1 AS n \
                       FROM knowledge WHERE knowledge_base_id = $1::uuid AND source LIKE 'bench-%' \
                       AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.knowledge_id = knowledge.id)), \
              text AS (SELECT d.id AS knowledge_id, d.tenant_id, d.knowledge_base_id, p AS position, \
                       (SELECT string_agg('w' || floor(random() * 5000 + 0 * i * p * d.n)::int, ' ') \
                        FROM generate_series(1, 40) i) AS words \
                       FROM docs d, generate_series(0, $2::int - 1) p) \
         INSERT INTO chunks (tenant_id, knowledge_base_id, knowledge_id, position, content, search_text) \
         SELECT tenant_id, knowledge_base_id, knowledge_id, position, words, words FROM text",
    )
    .bind(kb)
    .bind(per_doc as i32)
    .execute(&mut *db)
    .await?;
    sqlx::query(
        "INSERT INTO chunk_embeddings (chunk_id, knowledge_base_id, model, dimensions, embedding) \
         SELECT c.id, c.knowledge_base_id, $2, 384, \
                (SELECT array_agg(random() - 0.5 + 0 * i * c.position) FROM generate_series(1, 384) i)::vector \
         FROM chunks c LEFT JOIN chunk_embeddings e ON e.chunk_id = c.id \
         WHERE c.knowledge_base_id = $1::uuid AND e.chunk_id IS NULL",
    )
    .bind(kb)
    .bind(MODEL)
    .execute(&mut *db)
    .await?;
    sqlx::query("UPDATE knowledge_bases SET embedding_model = $2, embedding_dimensions = 384 WHERE id = $1::uuid")
        .bind(kb)
        .bind(MODEL)
        .execute(&mut *db)
        .await?;
    eprintln!("==> bench search: building the vector index");
    sqlx::query("SET maintenance_work_mem = '512MB'").execute(&mut *db).await?;
    sqlx::query(
        "CREATE INDEX chunk_embeddings_hnsw_384 ON chunk_embeddings \
         USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE dimensions = 384",
    )
    .execute(&mut *db)
    .await?;
    // What autovacuum would do to the new rows during the measurement otherwise (it wakes for
    // inserts too), and the checkpoint they would cause: the steady state is measured.
    sqlx::raw_sql("VACUUM (ANALYZE)").execute(&mut *db).await?;
    sqlx::raw_sql("CHECKPOINT").execute(&mut *db).await?;
    Ok(())
}

/// The question's vector from the embedder, as the app asks for it.
fn embed_question(port: u16, text: &str) -> Result<String> {
    let body = json!({ "model": MODEL, "input": [text], "input_type": "query", "encoding_format": "float" });
    let (status, answer) = http(port, "POST", "/v1/embeddings", Some(&body))?;
    let vector = answer["data"][0]["embedding"].as_array().filter(|_| status == 200).context("no embedding")?;
    Ok(format!("[{}]", vector.iter().map(Value::to_string).collect::<Vec<_>>().join(",")))
}

/// The app's two retrieval statements (services/app/src/db/chunks.rs), as it runs them.
async fn raw_sql(db: &mut PgConnection, kb: &str, question: &str, vector: &str) -> Result<()> {
    let terms = question.split_whitespace().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" | ");
    sqlx::query(
        "SELECT c.id, c.content, ts_rank(c.search, q)::float8 AS score \
         FROM chunks c JOIN knowledge k ON k.id = c.knowledge_id, to_tsquery('simple', $1) q \
         WHERE c.knowledge_base_id = ANY(ARRAY[$2::uuid]) AND c.search @@ q ORDER BY score DESC, c.position LIMIT $3",
    )
    .bind(&terms)
    .bind(kb)
    .bind(CANDIDATES)
    .fetch_all(&mut *db)
    .await?;
    let mut tx = db.begin().await?;
    sqlx::query("SET LOCAL hnsw.ef_search = 40").execute(&mut *tx).await?;
    sqlx::query("SET LOCAL hnsw.iterative_scan = relaxed_order").execute(&mut *tx).await?;
    sqlx::query(
        "SELECT c.id, c.content, (1 - (e.embedding::vector(384) <=> $1::vector(384)))::float8 AS score \
         FROM chunk_embeddings e JOIN chunks c ON c.id = e.chunk_id \
         WHERE e.dimensions = 384 AND e.model = $2 AND e.knowledge_base_id = ANY(ARRAY[$3::uuid]) \
         ORDER BY e.embedding::vector(384) <=> $1::vector(384) LIMIT $4",
    )
    .bind(vector)
    .bind(MODEL)
    .bind(kb)
    .bind(CANDIDATES)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Passages a second: the app's ingest (from the moment the document's parse completed to
/// its last vector, one chunk per passage) and the embedder alone on the same chunks,
/// batched alike (32).
async fn embedding_throughput(app_port: u16, embedder_port: u16, passages: usize) -> Result<Value> {
    let texts: Vec<String> = (0..passages)
        .map(|n| format!("Passage {n}: the nightly backup of system {n} runs at {} and is verified weekly.", n % 24))
        .collect();
    let settings = json!({"name": "throughput", "chunk_size": 128, "chunk_overlap": 0});
    let (status, kb) = http(app_port, "POST", "/api/v1/knowledge-bases", Some(&settings))?;
    let kb = kb["data"]["id"].as_str().filter(|_| status == 201).context("creating a knowledge base")?.to_string();
    let body = json!({ "title": "throughput", "content": texts.join("\n\n") });
    let (status, doc) = http(app_port, "POST", &format!("/api/v1/knowledge-bases/{kb}/knowledge/manual"), Some(&body))?;
    let id = doc["data"]["id"].as_str().filter(|_| status == 201).context("adding the document")?.to_string();
    let state = |field: &str| -> Result<Value> {
        Ok(http(app_port, "GET", &format!("/api/v1/knowledge/{id}"), None)?.1["data"][field].clone())
    };
    until("the parse", Duration::from_secs(120), || state("parse_status").is_ok_and(|s| s == "completed")).await?;
    let parsed = Instant::now();
    until("the vectors", Duration::from_secs(600), || state("vector_status").is_ok_and(|s| s == "completed")).await?;
    let ingest = parsed.elapsed();
    let chunks = state("chunk_count")?.as_u64().unwrap_or(0) as usize;

    let mut contents = Vec::new();
    for page in 1..=chunks.div_ceil(200) {
        let (_, list) = http(app_port, "GET", &format!("/api/v1/chunks/{id}?page={page}&page_size=200"), None)?;
        for c in list["data"].as_array().into_iter().flatten() {
            contents.push(c["content"].as_str().unwrap_or_default().to_string());
        }
    }
    let started = Instant::now();
    for batch in contents.chunks(32) {
        let body = json!({ "model": MODEL, "input": batch, "input_type": "passage", "encoding_format": "float" });
        let (status, _) = http(embedder_port, "POST", "/v1/embeddings", Some(&body))?;
        if status != 200 {
            bail!("the embedder answered {status}");
        }
    }
    let alone = started.elapsed();
    let ingest_per_s = chunks as f64 / ingest.as_secs_f64();
    let embedder_per_s = contents.len() as f64 / alone.as_secs_f64();
    Ok(json!({
        "chunks": chunks,
        "ingest_per_s": ingest_per_s,
        "embedder_per_s": embedder_per_s,
        "ratio": ingest_per_s / embedder_per_s,
    }))
}
