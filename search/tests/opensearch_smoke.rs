//! OpenSearch end to end: skipped unless `PLAYPULSE_TEST_OPENSEARCH` names a running engine
//! (`http://127.0.0.1:9200`). Each test works on its own alias and drops it at the end.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use search::{
    Availability, CountryCode, Cursor, Day, Filters, OpenSearchIndex, OpenSearchOptions,
    SearchError, SearchIndex, SearchRequest, Title, TitleChange,
};
use tokio::net::{TcpListener, TcpStream};

const TODAY: Day = 20_000;

fn engine() -> Option<String> {
    match std::env::var("PLAYPULSE_TEST_OPENSEARCH") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("PLAYPULSE_TEST_OPENSEARCH is not set: skipped");
            None
        }
    }
}

fn options(url: &str, name: &str) -> OpenSearchOptions {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    OpenSearchOptions {
        url: url.to_owned(),
        alias: format!("test-{}-{nanos}-{name}", std::process::id()),
        request_timeout: Duration::from_secs(10),
    }
}

/// Runs `body` on a fresh index, then drops the index whether `body` passed or not.
async fn with_index<F, Fut>(name: &str, body: F)
where
    F: FnOnce(Arc<OpenSearchIndex>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = engine() else { return };
    let index = Arc::new(OpenSearchIndex::connect(options(&url, name)).await.unwrap());
    let outcome = tokio::spawn(body(index.clone())).await;
    index.drop_all().await.unwrap();
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
}

fn title(id: u64, name: &str) -> Title {
    Title {
        id,
        title: name.to_owned(),
        original_title: None,
        synopsis: String::new(),
        genres: vec!["drama".to_owned()],
        year: 2000,
        runtime_minutes: 100,
        maturity: "PG-13".to_owned(),
        cast: Vec::new(),
        crew: Vec::new(),
        audio_languages: vec!["en".to_owned()],
        subtitle_languages: Vec::new(),
        availability: Vec::new(),
    }
}

fn upsert(title: Title, version: u64) -> TitleChange {
    TitleChange::Upsert { title, version }
}

fn request(q: &str) -> SearchRequest {
    SearchRequest {
        q: q.to_owned(),
        filters: Filters::default(),
        limit: 10,
        after: None,
        facets: false,
        today: TODAY,
    }
}

async fn ids(index: &OpenSearchIndex, request: &SearchRequest) -> Vec<u64> {
    let response = index.search(request).await.unwrap();
    response.hits.iter().map(|hit| hit.id).collect()
}

async fn ids_for(index: &OpenSearchIndex, q: &str) -> Vec<u64> {
    ids(index, &request(q)).await
}

async fn filtered(index: &OpenSearchIndex, filters: Filters) -> Vec<u64> {
    let mut found = ids(
        index,
        &SearchRequest {
            filters,
            ..request("")
        },
    )
    .await;
    found.sort();
    found
}

#[tokio::test]
async fn words_prefixes_and_typos_match() {
    with_index("match", |index| async move {
        let mut godfather = title(1, "The Godfather");
        godfather.synopsis = "A crime family & its patriarch <Don> Vito.".to_owned();
        godfather.cast = vec!["Marlon Brando".to_owned()];
        let titles = [
            godfather,
            title(2, "Heat"),
            title(3, "Casablanca"),
            title(4, "Amélie"),
            title(5, "The Matrix"),
        ];
        let changes: Vec<TitleChange> = titles.into_iter().map(|t| upsert(t, 1)).collect();
        let applied = index.apply(&changes).await.unwrap();
        assert_eq!((applied.written, applied.stale), (5, 0));
        index.refresh().await.unwrap();

        assert_eq!(ids_for(&index, "heat").await, [2]);
        assert_eq!(ids_for(&index, "AMELIE").await, [4], "accents fold");
        assert_eq!(ids_for(&index, "godf").await, [1], "the word being typed");
        assert_eq!(ids_for(&index, "bran").await, [1], "a prefix of the cast");
        assert!(ids_for(&index, "godf ").await.is_empty(), "a finished word");
        assert_eq!(
            ids_for(&index, "matirx ").await,
            [5],
            "one edit on 6 letters"
        );
        assert_eq!(ids_for(&index, "casblanka ").await, [3], "two edits on 10");
        assert!(
            ids_for(&index, "heap ").await.is_empty(),
            "none on 4 letters"
        );
        assert!(ids_for(&index, "mtrx ").await.is_empty(), "two edits on 6");
        assert_eq!(ids_for(&index, "patriarch vito").await, [1], "synopsis");
        assert!(
            ids_for(&index, "godfather heat").await.is_empty(),
            "every word"
        );

        let response = index.search(&request("the godf")).await.unwrap();
        let highlights = &response.hits[0].highlights;
        assert_eq!(
            highlights.title.as_deref(),
            Some("<em>The</em> <em>Godfather</em>")
        );
        assert_eq!(highlights.synopsis, None);
        let response = index.search(&request("crime don")).await.unwrap();
        let synopsis = response.hits[0].highlights.synopsis.as_deref().unwrap();
        assert!(synopsis.contains("<em>crime</em>"), "{synopsis}");
        assert!(synopsis.contains("&lt;<em>Don</em>&gt;"), "{synopsis}");
        assert_eq!(response.hits[0].highlights.title, None);

        let all = index.search(&request("")).await.unwrap();
        assert_eq!(all.total, 5);
        assert_eq!(all.hits[0].title, "The Godfather");
        assert_eq!(all.hits[0].maturity, "PG-13");
        assert_eq!(all.hits[0].genres, ["drama"]);
    })
    .await;
}

#[tokio::test]
async fn older_changes_are_stale_and_tombstones_stay() {
    with_index("versions", |index| async move {
        let applied = index
            .apply(&[
                upsert(title(7, "Heat v2"), 2),
                upsert(title(7, "Heat v1"), 1),
                upsert(title(7, "Heat v2 again"), 2),
            ])
            .await
            .unwrap();
        assert_eq!((applied.written, applied.stale), (1, 2));
        assert_eq!(index.version_of(7).await.unwrap(), Some((2, true)));
        assert_eq!(index.version_of(8).await.unwrap(), None);
        index.refresh().await.unwrap();
        assert_eq!(
            index.search(&request("")).await.unwrap().hits[0].title,
            "Heat v2"
        );

        let applied = index
            .apply(&[
                TitleChange::Delete { id: 7, version: 3 },
                upsert(title(7, "Heat late"), 2),
            ])
            .await
            .unwrap();
        assert_eq!((applied.written, applied.stale), (1, 1));
        assert_eq!(index.version_of(7).await.unwrap(), Some((3, false)));
        index.refresh().await.unwrap();
        assert!(ids_for(&index, "heat").await.is_empty());
        assert_eq!(index.stats().await.unwrap().titles, 0);

        let applied = index
            .apply(&[upsert(title(7, "Heat back"), 4)])
            .await
            .unwrap();
        assert_eq!(applied.written, 1);
        index.refresh().await.unwrap();
        assert_eq!(ids_for(&index, "back").await, [7]);
        let stats = index.stats().await.unwrap();
        assert_eq!(stats.titles, 1);
        assert!(stats.size_bytes > 0);

        // Ids use all 64 bits.
        index
            .apply(&[
                upsert(title(u64::MAX, "Edge"), 1),
                upsert(title(1, "Edge"), 1),
            ])
            .await
            .unwrap();
        assert_eq!(index.version_of(u64::MAX).await.unwrap(), Some((1, true)));
        index.refresh().await.unwrap();
        assert_eq!(ids_for(&index, "edge").await, [1, u64::MAX]);
    })
    .await;
}

#[tokio::test]
async fn filters_narrow_and_facets_count() {
    with_index("filters", |index| async move {
        let us = CountryCode::parse("us").unwrap();
        let fr = CountryCode::parse("FR").unwrap();
        let mut a = title(1, "Alpha");
        a.genres = vec!["drama".to_owned(), "crime".to_owned()];
        a.year = 1994;
        a.maturity = "R".to_owned();
        a.subtitle_languages = vec!["fr".to_owned()];
        a.availability = vec![Availability {
            country: us,
            from: TODAY - 10,
            until: Some(TODAY + 10),
        }];
        let mut b = title(2, "Bravo");
        b.genres = vec!["comedy".to_owned()];
        b.year = 2005;
        b.availability = vec![Availability {
            country: us,
            from: TODAY - 100,
            until: Some(TODAY - 1),
        }];
        let mut c = title(3, "Charlie");
        c.genres = vec!["drama".to_owned()];
        c.year = 1999;
        c.maturity = "TV-MA".to_owned();
        c.audio_languages = vec!["de".to_owned(), "en".to_owned()];
        c.availability = vec![Availability {
            country: fr,
            from: TODAY,
            until: None,
        }];
        index
            .apply(&[upsert(a, 1), upsert(b, 1), upsert(c, 1)])
            .await
            .unwrap();
        index.refresh().await.unwrap();

        let by = |filters: Filters| filtered(&index, filters);
        let genre = Filters {
            genre: Some("drama".to_owned()),
            ..Filters::default()
        };
        assert_eq!(by(genre).await, [1, 3]);
        let nineties = Filters {
            year_from: Some(1990),
            year_to: Some(1999),
            ..Filters::default()
        };
        assert_eq!(by(nineties).await, [1, 3]);
        let from_2000 = Filters {
            year_from: Some(2000),
            ..Filters::default()
        };
        assert_eq!(by(from_2000).await, [2]);
        let french = Filters {
            language: Some("fr".to_owned()),
            ..Filters::default()
        };
        assert_eq!(by(french).await, [1]);
        let ratings = Filters {
            maturity: vec!["R".to_owned(), "TV-MA".to_owned()],
            ..Filters::default()
        };
        assert_eq!(by(ratings).await, [1, 3]);
        let in_us = Filters {
            country: Some(us),
            ..Filters::default()
        };
        assert_eq!(by(in_us).await, [1], "Bravo's window ended yesterday");
        let in_fr = Filters {
            country: Some(fr),
            ..Filters::default()
        };
        assert_eq!(by(in_fr).await, [3], "from today, no end");
        let tomorrow_before = SearchRequest {
            filters: Filters {
                country: Some(fr),
                ..Filters::default()
            },
            today: TODAY - 1,
            ..request("")
        };
        assert!(ids(&index, &tomorrow_before).await.is_empty());

        let faceted = index
            .search(&SearchRequest {
                facets: true,
                ..request("")
            })
            .await
            .unwrap();
        let facets = faceted.facets.unwrap();
        let counts = |list: &[search::FacetCount]| {
            list.iter()
                .map(|f| (f.value.clone(), f.count))
                .collect::<Vec<_>>()
        };
        let pairs = |items: &[(&str, u64)]| {
            items
                .iter()
                .map(|(v, c)| (v.to_string(), *c))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            counts(&facets.genres),
            pairs(&[("drama", 2), ("comedy", 1), ("crime", 1)])
        );
        assert_eq!(counts(&facets.decades), pairs(&[("1990", 2), ("2000", 1)]));
        assert_eq!(
            counts(&facets.languages),
            pairs(&[("en", 3), ("de", 1), ("fr", 1)])
        );
        assert!(index.search(&request("")).await.unwrap().facets.is_none());
    })
    .await;
}

#[tokio::test]
async fn popularity_lifts_an_equal_title() {
    with_index("popularity", |index| async move {
        index
            .apply(&[
                upsert(title(1, "Twin Story"), 1),
                upsert(title(2, "Twin Story"), 1),
            ])
            .await
            .unwrap();
        index.refresh().await.unwrap();
        assert_eq!(ids_for(&index, "twin").await, [1, 2], "ties: the lower id");

        index
            .set_popularity(&[(2, 500.0), (999, 3.0), (1, f32::NAN)])
            .await
            .unwrap();
        index.refresh().await.unwrap();
        let response = index.search(&request("twin")).await.unwrap();
        assert_eq!(response.hits[0].id, 2);
        let ratio = response.hits[0].score / response.hits[1].score;
        assert!(
            (ratio - search::popularity_boost(500.0)).abs() < 1e-3,
            "{ratio}"
        );

        // A newer version of the title keeps what the popularity feed set.
        index
            .apply(&[upsert(title(2, "Twin Story"), 2)])
            .await
            .unwrap();
        index.refresh().await.unwrap();
        assert_eq!(ids_for(&index, "").await, [2, 1]);
    })
    .await;
}

#[tokio::test]
async fn cursors_page_through_every_match_once() {
    with_index("pages", |index| async move {
        let changes: Vec<TitleChange> = (1..=5)
            .map(|id| upsert(title(id, &format!("Saga part {id}")), 1))
            .chain([upsert(title(9, "Other"), 1)])
            .collect();
        index.apply(&changes).await.unwrap();
        index.set_popularity(&[(4, 10.0)]).await.unwrap();
        index.refresh().await.unwrap();

        let mut seen = Vec::new();
        let mut page = SearchRequest {
            limit: 2,
            ..request("saga")
        };
        let mut pages = 0;
        loop {
            let response = index.search(&page).await.unwrap();
            assert_eq!(response.total, 5);
            pages += 1;
            seen.extend(response.hits.iter().map(|hit| hit.id));
            match response.next {
                Some(next) => {
                    // Through the wire form, as a client sends it back.
                    let next = Cursor::decode(&next.encode()).unwrap();
                    if pages > 1 {
                        assert!(next.pit.is_some());
                    }
                    page.after = Some(next);
                }
                None => break,
            }
            assert!(pages < 10);
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, [4, 1, 2, 3, 5]);

        let first = index
            .search(&SearchRequest {
                limit: 2,
                ..request("saga")
            })
            .await
            .unwrap();
        let cursor = first.next.unwrap();
        let other = SearchRequest {
            after: Some(cursor.clone()),
            ..request("sag")
        };
        assert!(matches!(
            index.search(&other).await,
            Err(SearchError::BadRequest(_))
        ));
        let expired = SearchRequest {
            after: Some(Cursor {
                pit: Some("bm90IGEgcGl0".to_owned()),
                ..cursor
            }),
            ..request("saga")
        };
        match index.search(&expired).await {
            Err(SearchError::BadRequest(message)) => assert!(message.contains("expired")),
            other => panic!("{other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn a_new_generation_replaces_the_old_one() {
    with_index("generations", |index| async move {
        let old = index.generation().await.unwrap();
        index
            .apply(&[upsert(title(1, "Old Heat"), 1)])
            .await
            .unwrap();
        index.refresh().await.unwrap();

        let new = index.create_generation().await.unwrap();
        assert_ne!(new, old);
        assert_eq!(index.generation().await.unwrap(), old);
        let applied = index
            .apply_to(
                &new,
                &[upsert(title(1, "New Heat"), 2), upsert(title(1, "Heat"), 1)],
            )
            .await
            .unwrap();
        assert_eq!((applied.written, applied.stale), (1, 1));
        assert_eq!(ids_for(&index, "old").await, [1], "still the old one");
        assert!(matches!(
            index.apply_to("elsewhere-1", &[]).await,
            Err(SearchError::BadRequest(_))
        ));

        index.switch_to(&new).await.unwrap();
        assert_eq!(index.generation().await.unwrap(), new);
        assert_eq!(ids_for(&index, "new").await, [1]);
        assert!(ids_for(&index, "old").await.is_empty());
        assert_eq!(index.version_of(1).await.unwrap(), Some((2, true)));

        let url = engine().unwrap();
        let gone = reqwest::get(format!("{url}/{old}")).await.unwrap();
        assert_eq!(gone.status(), reqwest::StatusCode::NOT_FOUND);

        // Writes follow the alias.
        index.apply(&[upsert(title(2, "Fresh"), 1)]).await.unwrap();
        index.refresh().await.unwrap();
        assert_eq!(ids_for(&index, "fresh").await, [2]);
        assert!(index.ready().await);
    })
    .await;
}

/// Forwards to the engine until dropped: then nothing listens on its port.
async fn proxy(to: &str) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let target = to
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut client, _)) = listener.accept().await {
            let target = target.clone();
            connections.spawn(async move {
                if let Ok(mut server) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (format!("http://{address}"), task)
}

#[tokio::test]
async fn an_engine_that_does_not_answer_is_unavailable() {
    let Some(url) = engine() else { return };
    let started = Instant::now();
    match OpenSearchIndex::connect(options("http://127.0.0.1:1", "down")).await {
        Err(SearchError::Unavailable(message)) => {
            assert!(message.contains("127.0.0.1:1"), "{message}")
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("connected to nothing"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));

    // Accepts and never answers: the request timeout bounds the wait.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut silent_options = options(&format!("http://{}", silent.local_addr().unwrap()), "mute");
    silent_options.request_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    assert!(matches!(
        OpenSearchIndex::connect(silent_options).await,
        Err(SearchError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
    held.abort();

    // Connected, then the engine goes away.
    let (through, forwarding) = proxy(&url).await;
    let gone = options(&through, "gone");
    let index = OpenSearchIndex::connect(gone.clone()).await.unwrap();
    assert!(index.ready().await);
    index.search(&request("heat")).await.unwrap();
    forwarding.abort();
    let _ = forwarding.await;
    let started = Instant::now();
    assert!(matches!(
        index.search(&request("heat")).await,
        Err(SearchError::Unavailable(_))
    ));
    assert!(!index.ready().await);
    assert!(started.elapsed() < Duration::from_secs(2));

    let direct = OpenSearchIndex::connect(OpenSearchOptions { url, ..gone })
        .await
        .unwrap();
    direct.drop_all().await.unwrap();
}

#[tokio::test]
async fn bulk_and_search_timings() {
    with_index("timings", |index| async move {
        let words = [
            "river", "night", "storm", "garden", "empire", "silver", "ocean", "shadow",
        ];
        let changes: Vec<TitleChange> = (1..=5_000u64)
            .map(|id| {
                let mut t = title(
                    id,
                    &format!(
                        "{} {} {id}",
                        words[(id % 8) as usize],
                        words[(id / 8 % 8) as usize]
                    ),
                );
                t.synopsis = format!(
                    "A story of {} and {} across the {} years of title {id}.",
                    words[(id / 3 % 8) as usize],
                    words[(id / 5 % 8) as usize],
                    id % 50
                );
                t.cast = vec![
                    format!("Actor {}", id % 300),
                    format!("Actress {}", id % 170),
                ];
                t.availability = vec![Availability {
                    country: CountryCode::parse("US").unwrap(),
                    from: 0,
                    until: None,
                }];
                upsert(t, 1)
            })
            .collect();
        let started = Instant::now();
        let applied = index.apply(&changes).await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(applied.written, 5_000);
        eprintln!(
            "bulk: 5000 titles in {elapsed:?} ({:.0} titles/s)",
            5_000.0 / elapsed.as_secs_f64()
        );
        let started = Instant::now();
        let replay = index.apply(&changes).await.unwrap();
        eprintln!("bulk replay (all stale): {:?}", started.elapsed());
        assert_eq!(replay.stale, 5_000);
        index.refresh().await.unwrap();

        let queries = [
            "riv",
            "storm sil",
            "gardn ",
            "empire shadow 12",
            "ocaen nigh",
            "",
        ];
        let mut latencies = Vec::new();
        for round in 0..10 {
            for q in queries {
                let started = Instant::now();
                let response = index
                    .search(&SearchRequest {
                        facets: round % 2 == 0,
                        limit: 20,
                        ..request(q)
                    })
                    .await
                    .unwrap();
                latencies.push(started.elapsed());
                assert!(!response.hits.is_empty(), "{q}");
            }
        }
        latencies.sort();
        eprintln!(
            "search over 5000 titles: median {:?}, p90 {:?}, max {:?} ({} searches)",
            latencies[latencies.len() / 2],
            latencies[latencies.len() * 9 / 10],
            latencies[latencies.len() - 1],
            latencies.len()
        );
    })
    .await;
}
