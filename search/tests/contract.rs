//! The search port's contract: every test runs on the embedded index and on OpenSearch.

mod common;

use common::{country, request, title, Backend, TODAY};
use search::{Availability, Cursor, Filters, SearchError, SearchRequest, TitleChange};

on_both!(
    words_prefixes_and_typos_match_as_the_rules_say,
    every_word_must_match_some_field,
    a_replayed_or_reordered_change_never_wins_over_a_newer_one,
    filters_narrow_the_matches,
    country_means_available_there_on_the_day,
    facets_count_every_match,
    popularity_lifts_a_title_without_burying_an_exact_match,
    pages_follow_the_cursor_without_gaps_or_repeats,
    a_cursor_of_another_query_or_garbage_is_refused,
    highlights_mark_the_matched_words,
    a_rebuild_switches_generations_while_searches_answer,
    hostile_queries_get_clear_errors_or_empty_answers,
    stats_count_live_titles,
    ids_cover_the_whole_u64_range,
    a_lone_letter_matches_the_titles_it_starts,
    typos_are_looked_for_only_when_the_words_as_typed_find_nothing,
);

async fn typos_are_looked_for_only_when_the_words_as_typed_find_nothing(backend: &Backend) {
    backend
        .put(&[title(1, "Casablanca"), title(2, "Casablanka")])
        .await;
    assert_eq!(backend.ids("casablanca ").await, [1], "{}", backend.name);
    let mut both = backend.ids("casablancx ").await;
    both.sort_unstable();
    assert_eq!(
        both,
        [1, 2],
        "{}: nothing as typed, so one edit",
        backend.name
    );
}

async fn a_lone_letter_matches_the_titles_it_starts(backend: &Backend) {
    let mut sphinx = title(3, "Asterix and the Sphinx");
    sphinx.cast = vec!["Sam Stone".to_owned()];
    backend
        .put(&[title(1, "Storm"), title(2, "silent river"), sphinx])
        .await;
    backend.index.set_popularity(&[(2, 50.0)]).await.unwrap();
    backend.index.refresh().await.unwrap();
    assert_eq!(
        backend.ids("s").await,
        [2, 1],
        "{}: by popularity",
        backend.name
    );
    assert_eq!(backend.ids("a").await, [3]);
    let mut both = backend.ids("s ").await;
    both.sort_unstable();
    assert!(
        both.is_empty(),
        "{}: a finished one-letter word: {both:?}",
        backend.name
    );
    assert_eq!(
        backend.ids("asterix s").await,
        [3],
        "a letter after a word is a prefix"
    );
}

async fn ids_cover_the_whole_u64_range(backend: &Backend) {
    backend
        .put(&[title(u64::MAX, "Edge Far"), title(1, "Edge Near")])
        .await;
    assert_eq!(
        backend.ids("edge ").await,
        [1, u64::MAX],
        "{}",
        backend.name
    );
    assert_eq!(
        backend.index.version_of(u64::MAX).await.unwrap(),
        Some((1, true))
    );
    let mut ask = request("edge ", Filters::default());
    ask.limit = 1;
    let first = backend.index.search(&ask).await.unwrap();
    ask.after = first.next;
    let second = backend.index.search(&ask).await.unwrap();
    assert_eq!(
        second.hits[0].id,
        u64::MAX,
        "{}: a cursor past id 2^63",
        backend.name
    );
}

async fn words_prefixes_and_typos_match_as_the_rules_say(backend: &Backend) {
    backend
        .put(&[
            title(1, "Heat"),
            title(2, "Casablanca"),
            title(3, "Interstellar"),
            title(4, "Amélie"),
        ])
        .await;
    assert_eq!(backend.ids("heat ").await, [1], "{}", backend.name);
    assert_eq!(backend.ids("cas").await, [2], "prefix as typed");
    assert_eq!(backend.ids("AMELIE ").await, [4], "case and accents folded");
    // 4 letters: no edit allowed.
    assert!(backend.ids("heap ").await.is_empty(), "{}", backend.name);
    // 6 letters: one edit (a transposition counts as one).
    assert_eq!(backend.ids("amelei ").await, [4]);
    assert!(
        backend.ids("amxlxe ").await.is_empty(),
        "two edits on 6 letters"
    );
    // 12 letters: two edits.
    assert_eq!(backend.ids("intrestelar ").await, [3]);
    assert!(backend.ids("ixtxrxtellar ").await.is_empty(), "three edits");
    // The word being typed is a prefix, but a finished word is not.
    assert_eq!(backend.ids("inters").await, [3]);
    assert!(backend.ids("inters ").await.is_empty());
}

async fn every_word_must_match_some_field(backend: &Backend) {
    let mut godfather = title(1, "The Godfather");
    godfather.cast = vec!["Marlon Brando".to_owned(), "Al Pacino".to_owned()];
    godfather.synopsis = "The aging patriarch of an organized crime dynasty".to_owned();
    let mut scarface = title(2, "Scarface");
    scarface.cast = vec!["Al Pacino".to_owned()];
    backend.put(&[godfather, scarface]).await;
    let mut both = backend.ids("pacino ").await;
    both.sort_unstable();
    assert_eq!(both, [1, 2], "{}", backend.name);
    assert_eq!(backend.ids("pacino godfather ").await, [1]);
    assert_eq!(
        backend.ids("brando dynasty").await,
        [1],
        "cast and synopsis"
    );
    assert!(backend.ids("pacino nosuchword ").await.is_empty());
}

async fn a_replayed_or_reordered_change_never_wins_over_a_newer_one(backend: &Backend) {
    let index = &backend.index;
    let v1 = TitleChange::Upsert {
        title: title(7, "Old Name"),
        version: 1,
    };
    let v2 = TitleChange::Upsert {
        title: title(7, "New Name"),
        version: 2,
    };
    let applied = index.apply(&[v2.clone(), v1.clone()]).await.unwrap();
    assert_eq!((applied.written, applied.stale), (1, 1), "{}", backend.name);
    let replay = index.apply(&[v2]).await.unwrap();
    assert_eq!((replay.written, replay.stale), (0, 1));
    index.refresh().await.unwrap();
    assert_eq!(backend.ids("new ").await, [7]);
    assert!(backend.ids("old ").await.is_empty());
    assert_eq!(index.version_of(7).await.unwrap(), Some((2, true)));

    let deleted = index
        .apply(&[TitleChange::Delete { id: 7, version: 3 }, v1])
        .await
        .unwrap();
    assert_eq!((deleted.written, deleted.stale), (1, 1));
    index.refresh().await.unwrap();
    assert!(
        backend.ids("name ").await.is_empty(),
        "a tombstone is not found"
    );
    assert_eq!(index.version_of(7).await.unwrap(), Some((3, false)));
    assert_eq!(index.version_of(8).await.unwrap(), None);

    let back = index
        .apply(&[TitleChange::Upsert {
            title: title(7, "Back Again"),
            version: 4,
        }])
        .await
        .unwrap();
    assert_eq!(back.written, 1, "a newer version revives a deleted title");
    index.refresh().await.unwrap();
    assert_eq!(backend.ids("again ").await, [7]);
}

async fn filters_narrow_the_matches(backend: &Backend) {
    let mut a = title(1, "Storm One");
    a.genres = vec!["thriller".to_owned()];
    a.year = 1994;
    a.maturity = "R".to_owned();
    a.audio_languages = vec!["fr".to_owned()];
    let mut b = title(2, "Storm Two");
    b.genres = vec!["comedy".to_owned(), "drama".to_owned()];
    b.year = 2010;
    b.maturity = "PG".to_owned();
    b.subtitle_languages = vec!["de".to_owned()];
    let c = title(3, "Storm Three");
    backend.put(&[a, b, c]).await;
    let sorted = |mut ids: Vec<u64>| {
        ids.sort_unstable();
        ids
    };
    let by = |filters: Filters| backend.ids_where("storm ", filters);
    assert_eq!(sorted(backend.ids("storm ").await), [1, 2, 3]);
    let genre = Filters {
        genre: Some("drama".to_owned()),
        ..Filters::default()
    };
    assert_eq!(sorted(by(genre).await), [2, 3], "{}", backend.name);
    let years = Filters {
        year_from: Some(1990),
        year_to: Some(1999),
        ..Filters::default()
    };
    assert_eq!(by(years).await, [1]);
    let from_2000 = Filters {
        year_from: Some(2000),
        ..Filters::default()
    };
    assert_eq!(sorted(by(from_2000).await), [2, 3]);
    let subtitles = Filters {
        language: Some("de".to_owned()),
        ..Filters::default()
    };
    assert_eq!(by(subtitles).await, [2], "subtitles count as a language");
    let audio = Filters {
        language: Some("fr".to_owned()),
        ..Filters::default()
    };
    assert_eq!(by(audio).await, [1]);
    let ratings = Filters {
        maturity: vec!["PG".to_owned(), "R".to_owned()],
        ..Filters::default()
    };
    assert_eq!(sorted(by(ratings).await), [1, 2]);
    let none = Filters {
        genre: Some("horror".to_owned()),
        ..Filters::default()
    };
    assert!(by(none).await.is_empty());
    let browse = Filters {
        genre: Some("thriller".to_owned()),
        ..Filters::default()
    };
    assert_eq!(backend.ids_where("", browse).await, [1], "no words: browse");
}

async fn country_means_available_there_on_the_day(backend: &Backend) {
    let window = |code: &str, from: i32, until: Option<i32>| Availability {
        country: country(code),
        from: TODAY + from,
        until: until.map(|until| TODAY + until),
    };
    let mut now = title(1, "Window Now");
    now.availability = vec![window("FR", -10, Some(10))];
    let mut ended = title(2, "Window Ended");
    ended.availability = vec![window("FR", -10, Some(-1)), window("US", -10, None)];
    let mut later = title(3, "Window Later");
    later.availability = vec![window("FR", 1, None)];
    let mut today_only = title(4, "Window Today");
    today_only.availability = vec![window("FR", 0, Some(0))];
    backend.put(&[now, ended, later, today_only]).await;
    let in_country = |code: &str| Filters {
        country: Some(country(code)),
        ..Filters::default()
    };
    let mut fr = backend.ids_where("window ", in_country("FR")).await;
    fr.sort_unstable();
    assert_eq!(fr, [1, 4], "{}", backend.name);
    assert_eq!(backend.ids_where("window ", in_country("US")).await, [2]);
    assert!(backend
        .ids_where("window ", in_country("JP"))
        .await
        .is_empty());
}

async fn facets_count_every_match(backend: &Backend) {
    let mut titles = Vec::new();
    for id in 1..=30u64 {
        let mut t = title(id, &format!("River {id}"));
        t.genres = if id % 3 == 0 {
            vec!["drama".to_owned(), "crime".to_owned()]
        } else {
            vec!["comedy".to_owned()]
        };
        t.year = if id <= 10 { 1995 } else { 2012 };
        t.audio_languages = vec!["en".to_owned()];
        t.subtitle_languages = if id % 2 == 0 {
            vec!["es".to_owned(), "en".to_owned()]
        } else {
            Vec::new()
        };
        titles.push(t);
    }
    backend.put(&titles).await;
    let mut ask = request("river ", Filters::default());
    ask.facets = true;
    ask.limit = 5;
    let response = backend.index.search(&ask).await.unwrap();
    assert_eq!(response.total, 30, "{}", backend.name);
    assert_eq!(response.hits.len(), 5);
    let facets = response.facets.expect("facets asked for");
    let pairs = |counts: &[search::FacetCount]| {
        counts
            .iter()
            .map(|c| (c.value.clone(), c.count))
            .collect::<Vec<_>>()
    };
    let owned = |list: &[(&str, u64)]| {
        list.iter()
            .map(|(v, c)| (v.to_string(), *c))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pairs(&facets.genres),
        owned(&[("comedy", 20), ("crime", 10), ("drama", 10)])
    );
    assert_eq!(pairs(&facets.decades), owned(&[("2010", 20), ("1990", 10)]));
    assert_eq!(pairs(&facets.languages), owned(&[("en", 30), ("es", 15)]));
    let mut skip = request("river ", Filters::default());
    skip.facets = false;
    assert!(backend.index.search(&skip).await.unwrap().facets.is_none());
}

async fn popularity_lifts_a_title_without_burying_an_exact_match(backend: &Backend) {
    backend
        .put(&[
            title(1, "Lake Alpha"),
            title(2, "Lake Beta"),
            title(3, "Lake"),
        ])
        .await;
    backend
        .index
        .set_popularity(&[(2, 1000.0), (99, 5.0)])
        .await
        .unwrap();
    backend.index.refresh().await.unwrap();
    let ids = backend.ids("lake ").await;
    assert_eq!(
        ids[0], 3,
        "{}: the exact title first: {ids:?}",
        backend.name
    );
    assert_eq!(&ids[1..], [2, 1], "{}: then the watched one", backend.name);
    backend
        .index
        .set_popularity(&[(1, 5000.0), (2, 0.0)])
        .await
        .unwrap();
    backend.index.refresh().await.unwrap();
    assert_eq!(&backend.ids("lake ").await[1..], [1, 2]);
}

async fn pages_follow_the_cursor_without_gaps_or_repeats(backend: &Backend) {
    let titles: Vec<_> = (1..=23u64)
        .map(|id| title(id, &format!("Forest {id}")))
        .collect();
    backend.put(&titles).await;
    let pop: Vec<(u64, f32)> = (1..=23u64).map(|id| (id, (id % 5) as f32 * 10.0)).collect();
    backend.index.set_popularity(&pop).await.unwrap();
    backend.index.refresh().await.unwrap();
    let mut seen = Vec::new();
    let mut ask = request("forest ", Filters::default());
    ask.limit = 5;
    let mut pages = 0;
    let mut last_score = f32::INFINITY;
    loop {
        let page = backend.index.search(&ask).await.unwrap();
        assert_eq!(page.total, 23, "{}", backend.name);
        for hit in &page.hits {
            assert!(
                hit.score <= last_score,
                "{}: scores never rise",
                backend.name
            );
            last_score = hit.score;
            seen.push(hit.id);
        }
        pages += 1;
        match page.next {
            Some(next) => {
                let text = next.encode();
                ask.after = Some(Cursor::decode(&text).unwrap());
            }
            None => break,
        }
        assert!(pages <= 5, "{}: too many pages", backend.name);
    }
    assert_eq!(pages, 5);
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 23, "{}: {seen:?}", backend.name);
}

async fn a_cursor_of_another_query_or_garbage_is_refused(backend: &Backend) {
    let titles: Vec<_> = (1..=4u64)
        .map(|id| title(id, &format!("Desert {id}")))
        .collect();
    backend.put(&titles).await;
    let mut ask = request("desert ", Filters::default());
    ask.limit = 2;
    let next = backend
        .index
        .search(&ask)
        .await
        .unwrap()
        .next
        .expect("a next page");
    let mut other = request("dune ", Filters::default());
    other.after = Some(next);
    assert!(matches!(
        backend.index.search(&other).await,
        Err(SearchError::BadRequest(_))
    ));
    assert!(Cursor::decode("not-a-cursor").is_err());
}

async fn highlights_mark_the_matched_words(backend: &Backend) {
    let mut t = title(1, "The Godfather <Part II>");
    t.synopsis = format!(
        "{} The early life of Vito Corleone in 1920s New York. {}",
        "Filler words come first here. ".repeat(3),
        "More text follows later. ".repeat(10)
    );
    backend.put(&[t]).await;
    let response = backend
        .index
        .search(&request("godfahter vito", Filters::default()))
        .await
        .unwrap();
    let highlights = &response.hits[0].highlights;
    let title = highlights.title.as_deref().expect("title highlighted");
    assert!(
        title.contains("<em>Godfather</em>"),
        "{}: {title}",
        backend.name
    );
    assert!(
        title.contains("&lt;Part"),
        "{}: escaped: {title}",
        backend.name
    );
    let synopsis = highlights
        .synopsis
        .as_deref()
        .expect("synopsis highlighted");
    assert!(
        synopsis.contains("<em>Vito</em>"),
        "{}: {synopsis}",
        backend.name
    );
    assert!(
        synopsis.len() < 400,
        "{}: a fragment: {synopsis}",
        backend.name
    );
}

async fn a_rebuild_switches_generations_while_searches_answer(backend: &Backend) {
    let index = &backend.index;
    backend.put(&[title(1, "Canyon One")]).await;
    let before = index.generation().await.unwrap();
    let next = index.create_generation().await.unwrap();
    assert_ne!(before, next);
    let copied = index
        .apply_to(
            &next,
            &[
                TitleChange::Upsert {
                    title: title(1, "Canyon One"),
                    version: 1,
                },
                TitleChange::Upsert {
                    title: title(2, "Canyon Two"),
                    version: 1,
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(copied.written, 2, "{}", backend.name);
    assert_eq!(
        backend.ids("canyon ").await,
        [1],
        "still the old generation"
    );
    index.switch_to(&next).await.unwrap();
    index.refresh().await.unwrap();
    assert_eq!(index.generation().await.unwrap(), next);
    let mut ids = backend.ids("canyon ").await;
    ids.sort_unstable();
    assert_eq!(ids, [1, 2]);
    assert!(
        index.apply_to(&before, &[]).await.is_err(),
        "the old one is gone"
    );
}

async fn hostile_queries_get_clear_errors_or_empty_answers(backend: &Backend) {
    backend.put(&[title(1, "Ordinary")]).await;
    let long = "word ".repeat(100);
    assert!(matches!(
        backend
            .index
            .search(&request(&long, Filters::default()))
            .await,
        Err(SearchError::BadRequest(_))
    ));
    for odd in [
        "\"",
        "*",
        "?",
        "\\",
        "(",
        ")",
        "~2",
        "title:x",
        "AND",
        "\u{0}",
        "💥",
        "a b c d e f g h i j k l",
        "{\"query\":1}",
        "<script>",
    ] {
        let answer = backend
            .index
            .search(&request(odd, Filters::default()))
            .await;
        assert!(answer.is_ok(), "{}: {odd:?}: {answer:?}", backend.name);
    }
    let mut huge = request("ordinary", Filters::default());
    huge.limit = 1_000_000;
    assert_eq!(backend.index.search(&huge).await.unwrap().hits.len(), 1);
    let mut zero: SearchRequest = request("ordinary", Filters::default());
    zero.limit = 0;
    assert!(backend.index.search(&zero).await.unwrap().hits.len() <= 1);
}

async fn stats_count_live_titles(backend: &Backend) {
    backend
        .put(&[title(1, "One"), title(2, "Two"), title(3, "Three")])
        .await;
    backend
        .index
        .apply(&[TitleChange::Delete { id: 2, version: 2 }])
        .await
        .unwrap();
    backend.index.refresh().await.unwrap();
    let stats = backend.index.stats().await.unwrap();
    assert_eq!(stats.titles, 2, "{}", backend.name);
    assert!(stats.size_bytes > 0);
    assert!(backend.index.ready().await);
}
