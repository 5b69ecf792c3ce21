//! The catalog: commands, the title read model, search, the projector, a rebuild and an index
//! that goes down.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{eventually, Backend, Proxy};
use crate::http::Server;

both_backends!(
    titles_go_through_commands_read_model_and_search_over_http,
    bad_titles_and_bad_searches_get_a_400_naming_the_field,
    replaying_the_catalog_from_the_start_changes_nothing,
    a_reindex_loses_no_title_committed_while_it_runs,
    titles_watched_more_rank_higher,
);

fn heat(id: u64, name: &str) -> Value {
    json!({
        "id": id,
        "title": name,
        "synopsis": "A group of high-end professional thieves start to feel the heat from the LAPD.",
        "genres": ["crime", "Thriller"],
        "year": 1995,
        "runtime_minutes": 170,
        "maturity": "r",
        "cast": ["Al Pacino", "Robert De Niro"],
        "crew": ["Michael Mann"],
        "audio_languages": ["en"],
        "subtitle_languages": ["fr", "de"],
        "availability": [{"country": "us", "from": "2020-01-01", "until": null}]
    })
}

fn ids(answer: &Value) -> Vec<u64> {
    answer["hits"]
        .as_array()
        .map(|hits| hits.iter().filter_map(|hit| hit["id"].as_u64()).collect())
        .unwrap_or_default()
}

async fn search(server: &Server, query: &str) -> (u16, Value) {
    server
        .send(Method::GET, &format!("/v1/search?{query}"), None)
        .await
}

async fn titles_go_through_commands_read_model_and_search_over_http(backend: Backend) {
    let server = Server::start(&backend).await;
    let (status, created) = server
        .send(Method::POST, "/v1/titles", Some(heat(42, "Heat")))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["version"], 1);
    assert_eq!(created["maturity"], "R");
    assert_eq!(created["genres"], json!(["crime", "thriller"]));
    eventually("the title is in its read model", || async {
        server.send(Method::GET, "/v1/titles/42", None).await.0 == 200
    })
    .await;
    let (_, title) = server.send(Method::GET, "/v1/titles/42", None).await;
    assert_eq!(title["availability"][0]["from"], "2020-01-01");
    assert_eq!(title["availability"][0]["country"], "US");
    eventually("the title is searchable", || async {
        ids(&search(&server, "q=hea").await.1) == [42]
    })
    .await;
    let (status, found) = search(
        &server,
        "q=pacino%20heat&country=US&genre=crime&year_from=1990",
    )
    .await;
    assert_eq!((status, ids(&found)), (200, vec![42]), "{found}");
    assert_eq!(found["facets"]["genres"][0]["value"], "crime");
    assert!(found["hits"][0]["highlights"]["title"]
        .as_str()
        .unwrap()
        .contains("<em>Heat</em>"));

    let (status, again) = server
        .send(Method::POST, "/v1/titles", Some(heat(42, "Heat")))
        .await;
    assert_eq!(status, 409, "{again}");
    let (status, renamed) = server
        .send(Method::PUT, "/v1/titles/42", Some(heat(42, "Heat Wave")))
        .await;
    assert_eq!(
        (status, renamed["version"].as_u64()),
        (200, Some(2)),
        "{renamed}"
    );
    eventually("the new name is searchable", || async {
        ids(&search(&server, "q=wave").await.1) == [42]
    })
    .await;
    let (status, deleted) = server.send(Method::DELETE, "/v1/titles/42", None).await;
    assert_eq!((status, deleted["version"].as_u64()), (200, Some(3)));
    eventually("the deleted title is gone", || async {
        server.send(Method::GET, "/v1/titles/42", None).await.0 == 404
            && ids(&search(&server, "q=heat").await.1).is_empty()
    })
    .await;
    assert_eq!(
        server.send(Method::DELETE, "/v1/titles/42", None).await.0,
        404
    );
    assert_eq!(
        server
            .send(Method::PUT, "/v1/titles/42", Some(heat(42, "X")))
            .await
            .0,
        404
    );
    let (status, revived) = server
        .send(Method::POST, "/v1/titles", Some(heat(42, "Heat")))
        .await;
    assert_eq!((status, revived["version"].as_u64()), (201, Some(4)));
    let mut unnamed = heat(0, "No Id Given");
    unnamed.as_object_mut().unwrap().remove("id");
    let (status, assigned) = server.send(Method::POST, "/v1/titles", Some(unnamed)).await;
    assert_eq!(status, 201);
    assert_eq!(assigned["id"], 43, "the next free id");
}

async fn bad_titles_and_bad_searches_get_a_400_naming_the_field(backend: Backend) {
    let server = Server::start(&backend).await;
    let with = |field: &str, value: Value| {
        let mut body = heat(7, "Heat");
        body[field] = value;
        body
    };
    let cases = [
        (with("title", json!("")), "title"),
        (with("year", json!(3000)), "year"),
        (with("maturity", json!("X")), "maturity"),
        (with("genres", json!(["no spaces"])), "genres[0]"),
        (with("id", json!(-4)), "id"),
        (with("id", json!("7")), "id"),
        (
            with("subtitle_languages", json!(["french"])),
            "subtitle_languages[0]",
        ),
        (
            with(
                "availability",
                json!([{"country": "US", "from": "2020-02-30"}]),
            ),
            "availability[0].from",
        ),
    ];
    for (body, field) in cases {
        let (status, error) = server
            .send(Method::POST, "/v1/titles", Some(body.clone()))
            .await;
        assert_eq!(
            (status, error["field"].as_str()),
            (400, Some(field)),
            "{body}: {error}"
        );
    }
    let (status, error) = server
        .send(Method::PUT, "/v1/titles/8", Some(heat(7, "Heat")))
        .await;
    assert_eq!((status, error["field"].as_str()), (400, Some("id")));
    let (status, error) = server.send(Method::GET, "/v1/titles/abc", None).await;
    assert_eq!((status, error["field"].as_str()), (400, Some("title_id")));
    let long = "a".repeat(300);
    for (query, field) in [
        (format!("q={long}"), "q"),
        ("limit=0".to_owned(), "limit"),
        ("limit=101".to_owned(), "limit"),
        ("year_from=2000&year_to=1990".to_owned(), "year_to"),
        ("year_from=abc".to_owned(), "year_from"),
        ("country=USA".to_owned(), "country"),
        ("maturity=PG,XXX".to_owned(), "maturity"),
        ("genre=Sci%20Fi".to_owned(), "genre"),
        ("language=eng".to_owned(), "language"),
        ("facets=maybe".to_owned(), "facets"),
        ("after=garbage".to_owned(), "after"),
    ] {
        let (status, error) = search(&server, &query).await;
        assert_eq!(
            (status, error["field"].as_str()),
            (400, Some(field)),
            "{query}: {error}"
        );
    }
    let (status, _) = search(&server, "q=%22%5C%2A%28&limit=5").await;
    assert_eq!(status, 200, "query syntax is just text");
}

async fn replaying_the_catalog_from_the_start_changes_nothing(backend: Backend) {
    let platform = backend.platform();
    let catalog = platform.catalog();
    let title = |id: u64, name: &str| {
        let mut t = search_title(id, name);
        t.id = id;
        t
    };
    catalog
        .create(Some(1), &title(1, "River One"))
        .await
        .unwrap();
    catalog
        .create(Some(2), &title(2, "River Two"))
        .await
        .unwrap();
    catalog.replace(&title(2, "River Renamed")).await.unwrap();
    catalog.delete(1).await.unwrap();
    let target = last_event(&backend).await;
    eventually("the projector applied everything", || async {
        platform.search_feed().position() >= target
    })
    .await;
    // A second projector on the same index, from position 0: every event again, in order.
    let replay = platform::catalog::feed::CatalogFeed::new(
        backend.store.clone(),
        Arc::new(platform::catalog::feed::SearchProjector {
            name: "replay-test".to_owned(),
            index: backend.search.clone(),
        }),
        platform::catalog::feed::FeedOptions::default(),
        catalog.commits(),
    );
    while replay.run_once().await.unwrap() > 0 {}
    backend.search.refresh().await.unwrap();
    assert_eq!(
        backend.search.version_of(1).await.unwrap(),
        Some((2, false))
    );
    assert_eq!(backend.search.version_of(2).await.unwrap(), Some((2, true)));
    let found = catalog.search(&request("river ")).await.unwrap();
    let ids: Vec<u64> = found.hits.iter().map(|hit| hit.id).collect();
    assert_eq!(
        ids,
        [2],
        "{}: the deleted title stays deleted",
        backend.name
    );
    assert_eq!(found.hits[0].title, "River Renamed");
    platform.shutdown().await;
}

async fn a_reindex_loses_no_title_committed_while_it_runs(backend: Backend) {
    let platform = backend.platform();
    let catalog = platform.catalog().clone();
    for id in 1..=60u64 {
        catalog
            .create(Some(id), &search_title(id, &format!("Canyon {id}")))
            .await
            .unwrap();
    }
    let before = backend.search.generation().await.unwrap();
    let writer = {
        let catalog = catalog.clone();
        tokio::spawn(async move {
            for id in 61..=90u64 {
                catalog
                    .create(Some(id), &search_title(id, &format!("Canyon {id}")))
                    .await
                    .unwrap();
            }
            catalog.delete(5).await.unwrap();
        })
    };
    let report = platform::catalog::reindex::reindex(catalog.store(), catalog.index())
        .await
        .unwrap();
    writer.await.unwrap();
    assert_ne!(report.generation, before);
    assert_eq!(
        backend.search.generation().await.unwrap(),
        report.generation
    );
    let target = last_event(&backend).await;
    eventually("the projector applied everything", || async {
        platform.search_feed().position() >= target
    })
    .await;
    backend.search.refresh().await.unwrap();
    let mut seen = Vec::new();
    let mut ask = request("canyon ");
    ask.limit = 100;
    ask.facets = false;
    let found = catalog.search(&ask).await.unwrap();
    seen.extend(found.hits.iter().map(|hit| hit.id));
    seen.sort_unstable();
    let expected: Vec<u64> = (1..=90).filter(|id| *id != 5).collect();
    assert_eq!(seen, expected, "{}: {report:?}", backend.name);
    platform.shutdown().await;
}

async fn titles_watched_more_rank_higher(backend: Backend) {
    let platform = backend.platform();
    let catalog = platform.catalog();
    catalog
        .create(Some(1), &search_title(1, "Lake Alpha"))
        .await
        .unwrap();
    catalog
        .create(Some(2), &search_title(2, "Lake Beta"))
        .await
        .unwrap();
    let target = last_event(&backend).await;
    eventually("the projector applied everything", || async {
        platform.search_feed().position() >= target
    })
    .await;
    backend.search.refresh().await.unwrap();
    let order = || async {
        let found = catalog.search(&request("lake ")).await.unwrap();
        found.hits.iter().map(|hit| hit.id).collect::<Vec<u64>>()
    };
    assert_eq!(order().await, [1, 2], "equal scores: the lower id first");
    let watches = (1..=40u64)
        .map(|user| graph::Watch {
            user: 9_000 + user,
            title: 2,
            plays: 1,
            watch_ms: 60_000,
            completed: false,
            last_ts: 1,
        })
        .collect();
    backend
        .graph
        .apply(&graph::GraphUpdate {
            watches,
            identities: vec![],
        })
        .await
        .unwrap();
    platform.popularity().refresh().await.unwrap();
    backend.search.refresh().await.unwrap();
    assert_eq!(
        order().await,
        [2, 1],
        "{}: the watched one first",
        backend.name
    );
    platform.shutdown().await;
}

async fn last_event(backend: &Backend) -> i64 {
    backend.store.last_title_event().await.unwrap()
}

fn request(q: &str) -> search::SearchRequest {
    search::SearchRequest {
        q: q.to_owned(),
        filters: search::Filters::default(),
        limit: 20,
        after: None,
        facets: true,
        today: platform::domain::today(),
    }
}

fn search_title(id: u64, name: &str) -> search::Title {
    search::Title {
        id,
        title: name.to_owned(),
        original_title: None,
        synopsis: String::new(),
        genres: vec!["drama".to_owned()],
        year: 2001,
        runtime_minutes: 90,
        maturity: "PG".to_owned(),
        cast: vec![],
        crew: vec![],
        audio_languages: vec!["en".to_owned()],
        subtitle_languages: vec![],
        availability: vec![],
    }
}

/// OpenSearch goes down (a proxy in front of it stops): search answers 503 with a clear error,
/// commands still succeed, and the projector catches up once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_engine_that_is_down_answers_503_and_catches_up_when_back() {
    let Some(url) = std::env::var("PLAYPULSE_TEST_OPENSEARCH")
        .ok()
        .filter(|url| !url.trim().is_empty())
    else {
        eprintln!("skipped: PLAYPULSE_TEST_OPENSEARCH is unset");
        return;
    };
    let proxy = Proxy::start(&url).await;
    let mut backend = Backend::embedded().await;
    backend.settings.search.kind = platform::config::SearchKind::Opensearch;
    backend.settings.search.alias = testkit::unique_name("pptest");
    let index = search::OpenSearchIndex::connect(search::OpenSearchOptions {
        url: proxy.url(),
        alias: backend.settings.search.alias.clone(),
        request_timeout: std::time::Duration::from_secs(2),
    })
    .await
    .expect("OpenSearch answers through the proxy");
    backend.search = Arc::new(index);
    let server = Server::start(&backend).await;
    server
        .send(Method::POST, "/v1/titles", Some(heat(1, "Heat")))
        .await;
    eventually("the first title is searchable", || async {
        ids(&search(&server, "q=heat").await.1) == [1]
    })
    .await;

    proxy.stop();
    let (status, error) = search(&server, "q=heat").await;
    assert_eq!(status, 503, "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("search engine unavailable"),
        "{error}"
    );
    let (status, created) = server
        .send(Method::POST, "/v1/titles", Some(heat(2, "Heat Two")))
        .await;
    assert_eq!(
        status, 201,
        "commands do not need the search engine: {created}"
    );
    eventually("the title read model has it anyway", || async {
        server.send(Method::GET, "/v1/titles/2", None).await.0 == 200
    })
    .await;

    // The title read model can catch up before the search projector's next poll: wait for
    // the projector to have met the engine down before bringing it back.
    eventually(
        "the search projector failed while the engine was down",
        || async { server.platform.search_feed().failures() > 0 },
    )
    .await;
    proxy.resume();
    eventually("the projector caught up", || async {
        let mut found = ids(&search(&server, "q=heat").await.1);
        found.sort_unstable();
        found == [1, 2]
    })
    .await;
    let cleanup = search::OpenSearchIndex::connect(search::OpenSearchOptions {
        url,
        alias: backend.settings.search.alias.clone(),
        request_timeout: std::time::Duration::from_secs(10),
    })
    .await
    .unwrap();
    cleanup.drop_all().await.unwrap();
}
