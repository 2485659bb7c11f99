//! `cargo xtask migrate` against a real PostgreSQL started for each test.

mod support;

use std::path::Path;

use sqlx::{Connection, PgConnection, Row};
use support::{PASSWORD, Pg, xtask};
use weknora_testkit::{Need, require};

/// The migrations in the repository, oldest first: (version, description as the tool prints it).
fn migrations() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut found: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".up.sql").map(str::to_owned))
        .map(|name| {
            let (version, description) = name.split_once('_').unwrap();
            (version.to_string(), description.replace('_', " "))
        })
        .collect();
    found.sort();
    found
}

fn newest() -> String {
    let (version, description) = migrations().pop().unwrap();
    format!("{version} {description}")
}

fn migrate(pg: &Pg, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["migrate"];
    all.extend_from_slice(args);
    let (ok, out, err) = xtask(&all, &pg.env("postgres"));
    assert_no_secret(&out, &err);
    (ok, out, err)
}

fn assert_no_secret(out: &str, err: &str) {
    let encoded = "Tst-pw%213x%23q%407";
    for text in [out, err] {
        assert!(!text.contains(PASSWORD) && !text.contains(encoded), "password leaked:\n{text}");
    }
}

fn status(pg: &Pg, source: Option<&Path>) -> serde_json::Value {
    let mut args = vec!["status", "--json"];
    let s;
    if let Some(dir) = source {
        s = dir.to_str().unwrap().to_string();
        args.extend(["--source", &s]);
    }
    let (_, out, err) = migrate(pg, &args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json: {e}\n{out}\n{err}"))
}

fn states(status: &serde_json::Value) -> Vec<String> {
    status["migrations"].as_array().unwrap().iter().map(|m| m["state"].as_str().unwrap().to_string()).collect()
}

async fn connect(pg: &Pg) -> PgConnection {
    PgConnection::connect(&pg.url("postgres")).await.unwrap()
}

async fn tables(pg: &Pg) -> Vec<String> {
    let mut conn = connect(pg).await;
    sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

/// A copy of the repository's migrations that a test may change.
fn copy_migrations() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

#[tokio::test]
async fn up_from_empty_down_to_zero_and_up_again() {
    full_cycle(&Pg::debian()).await;
}

#[tokio::test]
async fn postgres_17_with_pgvector_migrates_and_enables_vector_search() {
    require!(Need::DockerEngine);
    let pg = Pg::local_image();
    full_cycle(&pg).await;
    app_queries(&pg).await;
    let s = status(&pg, None);
    assert_eq!(s["capabilities"][0]["state"], "enabled", "{s}");
    assert_eq!(s["capabilities"][1]["state"], "not-offered", "{s}");
}

#[tokio::test]
async fn a_role_that_may_not_create_extensions_still_migrates() {
    require!(Need::DockerEngine);
    // Managed PostgreSQL: the extension is offered, but the app's role is no superuser.
    let pg = Pg::local_image();
    let mut conn = connect(&pg).await;
    sqlx::query("CREATE ROLE app LOGIN PASSWORD 'app-pw'").execute(&mut conn).await.unwrap();
    sqlx::query("CREATE DATABASE appdb OWNER app").execute(&mut conn).await.unwrap();
    let mut env = pg.env("appdb");
    env.retain(|(k, _)| k != "DB_USER" && k != "DB_PASSWORD");
    env.extend([("DB_USER".into(), "app".into()), ("DB_PASSWORD".into(), "app-pw".into())]);
    let (ok, _, err) = xtask(&["migrate", "up"], &env);
    assert!(ok, "{err}");
    assert!(err.contains("vector search: not-enabled") && err.contains("CREATE EXTENSION vector"), "{err}");
    let (ok, out, _) = xtask(&["migrate", "status", "--json"], &env);
    assert!(ok);
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(states(&s).iter().all(|st| st == "applied"), "{s}");
}

async fn full_cycle(pg: &Pg) {
    let (ok, out, err) = migrate(pg, &["up", "--dry-run"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().filter(|l| l.starts_with("would apply")).count(), migrations().len(), "{out}");
    assert!(tables(pg).await.is_empty(), "--dry-run changed the database");

    let (ok, out, err) = migrate(pg, &["up"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().filter(|l| l.starts_with("applied")).count(), migrations().len(), "{out}");
    let s = status(pg, None);
    assert_eq!(s["ok"], true);
    assert!(states(&s).iter().all(|st| st == "applied"), "{s}");
    assert!(s["migrations"].as_array().unwrap().iter().all(|m| m["checksum_ok"] == true && m["dirty"] == false));
    let t = tables(pg).await;
    for table in [
        "tenants",
        "api_keys",
        "knowledge_bases",
        "knowledge",
        "ingest_jobs",
        "chunks",
        "chat_sessions",
        "chat_messages",
        "tenant_settings",
    ] {
        assert!(t.contains(&table.to_string()), "{table} missing from {t:?}");
    }

    // A second up is a no-op.
    let (ok, out, err) = migrate(pg, &["up"]);
    assert!(ok && out.is_empty() && err.contains("nothing to apply"), "{out}{err}");

    // Down without --yes shows the plan and changes nothing.
    let (ok, out, err) = migrate(pg, &["down", "--to", "0"]);
    assert!(!ok && err.contains("--yes"), "{err}");
    assert_eq!(out.lines().count(), migrations().len());
    assert_eq!(tables(pg).await, t);

    // One step by default.
    let (ok, out, _) = migrate(pg, &["down", "--yes"]);
    assert!(ok);
    assert_eq!(out.trim(), format!("reverted {}", newest()));

    let (ok, _, err) = migrate(pg, &["down", "--to", "0", "--yes"]);
    assert!(ok, "{err}");
    assert_eq!(tables(pg).await, ["_sqlx_migrations"]);
    assert!(states(&status(pg, None)).iter().all(|st| st == "pending"));

    let (ok, _, err) = migrate(pg, &["up", "--to", "20261125000003"]);
    assert!(ok, "{err}");
    assert_eq!(states(&status(pg, None))[..4], ["applied", "applied", "applied", "pending"]);
    let (ok, _, err) = migrate(pg, &["up"]);
    assert!(ok, "{err}");
    assert!(states(&status(pg, None)).iter().all(|st| st == "applied"));
}

#[tokio::test]
async fn concurrent_ups_apply_each_migration_once_and_both_succeed() {
    let pg = Pg::debian();
    let env = pg.env("postgres");
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["migrate", "up"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let applied_lines = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).lines().count();
    assert_eq!(applied_lines(&a) + applied_lines(&b), migrations().len(), "each migration applied by exactly one run");
    let mut conn = connect(&pg).await;
    let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT version, count(*) FROM _sqlx_migrations GROUP BY version")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows.len(), migrations().len());
    assert!(rows.iter().all(|(_, n)| *n == 1));
}

#[tokio::test]
async fn a_changed_migration_is_refused_with_the_fix() {
    let pg = Pg::debian();
    let dir = copy_migrations();
    let src = dir.path().to_str().unwrap();
    assert!(migrate(&pg, &["up", "--source", src]).0);
    let file = dir.path().join("20261125000002_knowledge_bases.up.sql");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text + "\n-- an edit after the fact\n").unwrap();
    let (ok, _, err) = migrate(&pg, &["up", "--source", src]);
    assert!(!ok);
    assert!(
        err.contains("20261125000002") && err.contains("changed after it was applied") && err.contains("git checkout"),
        "{err}"
    );
    let s = status(&pg, Some(dir.path()));
    assert_eq!(s["ok"], false);
    assert_eq!(s["migrations"][1]["checksum_ok"], false);
    let (ok, _, err) = migrate(&pg, &["down", "--yes", "--source", src]);
    assert!(!ok && err.contains("changed after it was applied"), "down must refuse too: {err}");
}

#[tokio::test]
async fn a_migration_the_code_does_not_know_is_refused() {
    let pg = Pg::debian();
    assert!(migrate(&pg, &["up"]).0);
    let dir = copy_migrations();
    for ext in ["up", "down"] {
        std::fs::remove_file(dir.path().join(format!("20261130000001_semantic_retrieval.{ext}.sql"))).unwrap();
    }
    let (ok, _, err) = migrate(&pg, &["up", "--source", dir.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("20261130000001") && err.contains("does not know"), "{err}");
    assert_eq!(states(&status(&pg, Some(dir.path())))[7], "unknown");
}

#[tokio::test]
async fn a_dirty_migration_is_refused_and_a_failed_one_rolls_back() {
    let pg = Pg::debian();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().to_str().unwrap();
    std::fs::write(dir.path().join("20260101000000_ok.up.sql"), "CREATE TABLE a (id int);").unwrap();
    std::fs::write(dir.path().join("20260101000000_ok.down.sql"), "DROP TABLE a;").unwrap();
    // In a transaction: the failure rolls back and leaves nothing behind.
    std::fs::write(dir.path().join("20260102000000_bad.up.sql"), "CREATE TABLE b (id int);\nSELECT 1/0;").unwrap();
    std::fs::write(dir.path().join("20260102000000_bad.down.sql"), "DROP TABLE b;").unwrap();
    let (ok, _, err) = migrate(&pg, &["up", "--source", src]);
    assert!(!ok);
    assert!(
        err.contains("20260102000000 (bad) failed and was rolled back") && err.contains("division by zero"),
        "{err}"
    );
    assert_eq!(tables(&pg).await, ["_sqlx_migrations", "a"]);

    // A migration recorded as failed part-way (older sqlx versions and other tools leave
    // such a row after a failure outside a transaction) is dirty: nothing runs until it is repaired.
    let mut conn = connect(&pg).await;
    sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (20260102000000, 'bad', FALSE, '\\x00', -1)")
        .execute(&mut conn)
        .await
        .unwrap();
    for args in [&["up", "--source", src][..], &["down", "--yes", "--source", src][..]] {
        let (ok, _, err) = migrate(&pg, args);
        assert!(!ok);
        assert!(err.contains("20260102000000 (bad) is dirty") && err.contains("DELETE FROM _sqlx_migrations"), "{err}");
    }
    let s = status(&pg, Some(dir.path()));
    assert_eq!(s["migrations"][1]["dirty"], true);
}

#[tokio::test]
async fn connection_failures_name_what_was_tried_and_never_the_password() {
    let pg = Pg::debian();
    let with = |key: &str, value: &str| {
        let mut env = pg.env("postgres");
        env.retain(|(k, _)| k != key);
        env.push((key.into(), value.into()));
        let (ok, out, err) = xtask(&["migrate", "status"], &env);
        assert!(!ok);
        assert_no_secret(&out, &err);
        err
    };
    let err = with("DB_PASSWORD", "wrong-password");
    assert!(err.contains("authentication failed for user `weknora`") && err.contains("DB_PASSWORD"), "{err}");
    let err = with("DB_NAME", "nope");
    assert!(err.contains("database `nope` does not exist") && err.contains("createdb"), "{err}");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = with("DB_PORT", &dead.to_string());
    assert!(
        err.contains(&format!("cannot reach PostgreSQL at 127.0.0.1:{dead}")) && err.contains("DB_HOST and DB_PORT"),
        "{err}"
    );
    let err = with("DB_USER", "");
    assert!(err.contains("DB_USER not set"), "{err}");
    // The same failure through DATABASE_URL.
    let mut env = pg.env("postgres");
    env.retain(|(k, _)| k != "DATABASE_URL");
    env.push(("DATABASE_URL".into(), pg.url("postgres").replace("@127", "x@127")));
    let (ok, out, err) = xtask(&["migrate", "status"], &env);
    assert!(!ok && err.contains("authentication failed"), "{err}");
    assert_no_secret(&out, &err);
}

#[tokio::test]
async fn the_apps_queries_run_against_the_migrated_schema() {
    let pg = Pg::debian();
    assert!(migrate(&pg, &["up"]).0);
    app_queries(&pg).await;
    let s = status(&pg, None);
    assert_eq!(s["capabilities"][0]["state"], "not-offered", "plain PostgreSQL has no pgvector: {s}");
}

/// The queries the app runs (claiming jobs, writing chunks, keyword and vector search)
/// work on the migrated schema, and the guarded parts follow what the server offers.
async fn app_queries(pg: &Pg) {
    let mut conn = connect(pg).await;
    // UUIDs travel as text: the test needs no uuid crate.
    let tenant: String = sqlx::query_scalar("INSERT INTO tenants (name) VALUES ('acme') RETURNING id::text")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO api_keys (tenant_id, key_prefix, key_hash, role) VALUES ($1::uuid, 'wk_abcd', $2, 'admin')",
    )
    .bind(&tenant)
    .bind("a".repeat(64))
    .execute(&mut conn)
    .await
    .unwrap();
    let kb: String = sqlx::query_scalar(
        "INSERT INTO knowledge_bases (tenant_id, name) VALUES ($1::uuid, 'docs') RETURNING id::text",
    )
    .bind(&tenant)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let overlap_too_big = sqlx::query(
        "INSERT INTO knowledge_bases (tenant_id, name, chunk_size, chunk_overlap) VALUES ($1::uuid, 'bad', 100, 100)",
    )
    .bind(&tenant)
    .execute(&mut conn)
    .await;
    assert!(overlap_too_big.is_err(), "overlap must stay below the chunk size");
    let knowledge: String = sqlx::query_scalar(
        "INSERT INTO knowledge (tenant_id, knowledge_base_id, source_type, source, object_key, size_bytes, checksum) \
         VALUES ($1::uuid, $2::uuid, 'file', '手册.pdf', 'kb/x/手册.pdf', 1024, $3) RETURNING id::text",
    )
    .bind(&tenant)
    .bind(&kb)
    .bind("b".repeat(64))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    sqlx::query("INSERT INTO ingest_jobs (tenant_id, knowledge_id) VALUES ($1::uuid, $2::uuid)")
        .bind(&tenant)
        .bind(&knowledge)
        .execute(&mut conn)
        .await
        .unwrap();

    // Claim: due jobs, or running ones whose lease expired, skipping rows others hold.
    let claim = "UPDATE ingest_jobs SET state = 'running', attempts = attempts + 1, lease_owner = $1, \
                 lease_expires_at = now() + interval '5 minutes' \
                 WHERE id = (SELECT id FROM ingest_jobs WHERE (state = 'queued' AND next_attempt_at <= now()) \
                 OR (state = 'running' AND lease_expires_at < now()) ORDER BY next_attempt_at \
                 FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id, attempts";
    let claimed = sqlx::query(claim).bind("worker-1").fetch_optional(&mut conn).await.unwrap().expect("a job to claim");
    assert_eq!(claimed.get::<i32, _>("attempts"), 1);
    assert!(
        sqlx::query(claim).bind("worker-2").fetch_optional(&mut conn).await.unwrap().is_none(),
        "leased job claimed twice"
    );

    // Chunks with app-segmented Chinese text, found by keyword.
    for (pos, content, tokens) in [
        (0, "数据库备份每天凌晨执行。", "数据库 备份 每天 凌晨 执行"),
        (1, "Restore drills run monthly.", "restore drills run monthly"),
    ] {
        sqlx::query(
            "INSERT INTO chunks (tenant_id, knowledge_base_id, knowledge_id, position, content, search_text) \
             VALUES ($1::uuid, $2::uuid, $3::uuid, $4, $5, $6)",
        )
        .bind(&tenant)
        .bind(&kb)
        .bind(&knowledge)
        .bind(pos)
        .bind(content)
        .bind(tokens)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let hits: Vec<String> = sqlx::query_scalar(
        "SELECT content FROM chunks, websearch_to_tsquery('simple', $2) q \
         WHERE knowledge_base_id = $1::uuid AND search @@ q ORDER BY ts_rank(search, q) DESC",
    )
    .bind(&kb)
    .bind("备份")
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(hits, ["数据库备份每天凌晨执行。"]);

    // Plain PostgreSQL from Debian has neither pgvector nor pg_search: those parts are skipped.
    let has = |ext: &'static str| {
        let q = "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = $1)";
        sqlx::query_scalar::<_, bool>(q).bind(ext)
    };
    let vector = has("vector").fetch_one(&mut conn).await.unwrap();
    let embeddings: bool =
        sqlx::query_scalar("SELECT to_regclass('chunk_embeddings') IS NOT NULL").fetch_one(&mut conn).await.unwrap();
    assert_eq!(embeddings, vector, "chunk_embeddings exists exactly when pgvector does");
    if embeddings {
        let chunk: String =
            sqlx::query_scalar("SELECT id::text FROM chunks WHERE position = 0").fetch_one(&mut conn).await.unwrap();
        sqlx::query(
            "INSERT INTO chunk_embeddings (chunk_id, knowledge_base_id, model, dimensions, embedding) \
             VALUES ($1::uuid, $2::uuid, 'test', 3, '[1,0,0]')",
        )
        .bind(&chunk)
        .bind(&kb)
        .execute(&mut conn)
        .await
        .unwrap();
        let nearest: String = sqlx::query_scalar(
            "SELECT c.content FROM chunk_embeddings e JOIN chunks c ON c.id = e.chunk_id \
             ORDER BY e.embedding <=> '[0.9,0.1,0]' LIMIT 1",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(nearest, "数据库备份每天凌晨执行。");
        let wrong_dims = sqlx::query(
            "INSERT INTO chunk_embeddings (chunk_id, knowledge_base_id, model, dimensions, embedding) \
             SELECT id, knowledge_base_id, 'test', 4, '[1,0,0]' FROM chunks WHERE position = 1",
        )
        .execute(&mut conn)
        .await;
        assert!(wrong_dims.is_err(), "an embedding must have the dimensions its row declares");
    }
    let search = has("pg_search").fetch_one(&mut conn).await.unwrap();
    let bm25: bool =
        sqlx::query_scalar("SELECT to_regclass('chunks_bm25_idx') IS NOT NULL").fetch_one(&mut conn).await.unwrap();
    assert_eq!(bm25, search, "the BM25 index exists exactly when pg_search does");

    // Deleting a knowledge base removes everything under it.
    sqlx::query("DELETE FROM knowledge_bases WHERE id = $1::uuid").bind(&kb).execute(&mut conn).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT (SELECT count(*) FROM chunks) + (SELECT count(*) FROM ingest_jobs)")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

fn sqlx_cli(pg: &Pg, args: &[&str]) -> String {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let out = std::process::Command::new("sqlx")
        .args(["migrate"])
        .args(args)
        .arg("--source")
        .arg(&source)
        .env("DATABASE_URL", pg.url("postgres"))
        .output()
        .expect("sqlx-cli is not installed: run `cargo xtask doctor --fix`");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "sqlx migrate {args:?}: {text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

#[tokio::test]
async fn sqlx_cli_and_xtask_agree_on_the_migrations_table() {
    require!(Need::SqlxCli, Need::HostPostgres);
    let pg = Pg::debian();
    assert!(migrate(&pg, &["up", "--to", "20261125000003"]).0);
    let info = sqlx_cli(&pg, &["info"]);
    assert!(info.contains("20261125000003/installed") && info.contains("20261125000004/pending"), "{info}");
    let run = sqlx_cli(&pg, &["run"]);
    assert!(run.contains("Applied 20261125000004"), "{run}");
    let s = status(&pg, None);
    assert_eq!(s["ok"], true, "{s}");
    assert!(states(&s).iter().all(|st| st == "applied"));
    let revert = sqlx_cli(&pg, &["revert"]);
    let (newest_version, _) = migrations().pop().unwrap();
    assert!(revert.contains(&newest_version), "{revert}");
    assert_eq!(states(&status(&pg, None)).last().map(String::as_str), Some("pending"));
    let (ok, out, _) = migrate(&pg, &["up"]);
    assert!(ok && out.contains(&format!("applied {}", newest())), "{out}");
    assert!(!sqlx_cli(&pg, &["info"]).contains("pending"));
}

/// An existing stack's data, written before upstream's shapes (integer tenant and key ids,
/// pins, descriptions, suggestions), is all there after the upgrade, and after going back.
#[tokio::test]
async fn data_written_before_upstreams_shapes_survives_the_upgrade_and_the_way_back() {
    let pg = Pg::debian();
    let before = "20261201000002";
    assert!(migrate(&pg, &["up", "--to", before]).0);
    let mut conn = connect(&pg).await;
    let mut sessions = Vec::new();
    for (n, name) in ["acme", "globex"].into_iter().enumerate() {
        let tenant: String = sqlx::query_scalar("INSERT INTO tenants (name) VALUES ($1) RETURNING id::text")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO api_keys (tenant_id, key_prefix, key_hash, role) VALUES ($1::uuid, 'wk_x', $2, 'admin')",
        )
        .bind(&tenant)
        .bind(n.to_string().repeat(64))
        .execute(&mut conn)
        .await
        .unwrap();
        let kb: String = sqlx::query_scalar(
            "INSERT INTO knowledge_bases (tenant_id, name) VALUES ($1::uuid, 'docs') RETURNING id::text",
        )
        .bind(&tenant)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        let session: String = sqlx::query_scalar(
            "INSERT INTO chat_sessions (tenant_id, knowledge_base_id, title) VALUES ($1::uuid, $2::uuid, $3) \
             RETURNING id::text",
        )
        .bind(&tenant)
        .bind(&kb)
        .bind(format!("{name} on-call"))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        for (role, content) in [("user", "When is the backup?"), ("assistant", "At 02:00 [1].")] {
            sqlx::query(
                "INSERT INTO chat_messages (session_id, tenant_id, role, content, request_id) \
                 VALUES ($1::uuid, $2::uuid, $3, $4, 'r1')",
            )
            .bind(&session)
            .bind(&tenant)
            .bind(role)
            .bind(content)
            .execute(&mut conn)
            .await
            .unwrap();
        }
        sessions.push(session);
    }
    async fn snapshot(conn: &mut PgConnection) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT t.name || '|' || s.title || '|' || m.role || '|' || m.content FROM chat_messages m \
             JOIN chat_sessions s ON s.id = m.session_id JOIN tenants t ON t.id = m.tenant_id \
             ORDER BY t.name, m.role DESC",
        )
        .fetch_all(conn)
        .await
        .unwrap()
    }
    let written = snapshot(&mut conn).await;
    assert_eq!(written.len(), 4);

    assert!(migrate(&pg, &["up"]).0);
    assert_eq!(snapshot(&mut conn).await, written, "the upgrade lost or changed something");
    let mut numbers: Vec<i64> = sqlx::query_scalar("SELECT number FROM tenants").fetch_all(&mut conn).await.unwrap();
    numbers.sort();
    assert_eq!(numbers, [1, 2], "every tenant has upstream's integer id");
    let keys: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT number) FROM api_keys").fetch_one(&mut conn).await.unwrap();
    assert_eq!(keys, 2, "every key has one too");
    let shaped: Vec<(String, bool)> =
        sqlx::query_as("SELECT description, is_pinned FROM chat_sessions").fetch_all(&mut conn).await.unwrap();
    assert_eq!(shaped, vec![(String::new(), false); 2], "sessions: no description, not pinned");
    let sets: i64 =
        sqlx::query_scalar("SELECT count(*) FROM message_suggestion_sets").fetch_one(&mut conn).await.unwrap();
    assert_eq!(sets, 0);

    assert!(migrate(&pg, &["down", "--to", before, "--yes"]).0);
    assert_eq!(snapshot(&mut conn).await, written, "going back lost or changed something");
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_sessions WHERE id::text = ANY($1)")
        .bind(&sessions)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(still, 2);
}
