//! The relevance suite: a fixed catalog, fixed queries, the expected top 3, on both indexes.
//! Each case is what a viewer typing that query would expect to see first.

mod common;

use common::{request, title, Backend};
use search::{Filters, Title};

on_both!(the_expected_titles_come_first);

/// (id, title, cast, genre, year, viewers)
type Entry = (
    u64,
    &'static str,
    &'static [&'static str],
    &'static str,
    u16,
    f32,
);

const CATALOG: &[Entry] = &[
    (
        1,
        "The Matrix",
        &["Keanu Reeves", "Carrie-Anne Moss"],
        "science-fiction",
        1999,
        9000.0,
    ),
    (
        2,
        "The Matrix Reloaded",
        &["Keanu Reeves", "Carrie-Anne Moss"],
        "science-fiction",
        2003,
        4000.0,
    ),
    (
        3,
        "The Matrix Revolutions",
        &["Keanu Reeves"],
        "science-fiction",
        2003,
        3000.0,
    ),
    (4, "John Wick", &["Keanu Reeves"], "action", 2014, 8000.0),
    (
        5,
        "Speed",
        &["Keanu Reeves", "Sandra Bullock"],
        "action",
        1994,
        2500.0,
    ),
    (
        6,
        "The Godfather",
        &["Marlon Brando", "Al Pacino"],
        "crime",
        1972,
        9500.0,
    ),
    (
        7,
        "The Godfather Part II",
        &["Al Pacino", "Robert De Niro"],
        "crime",
        1974,
        7000.0,
    ),
    (
        8,
        "The Godfather Part III",
        &["Al Pacino"],
        "crime",
        1990,
        3500.0,
    ),
    (
        9,
        "Star Wars",
        &["Mark Hamill", "Harrison Ford"],
        "science-fiction",
        1977,
        9800.0,
    ),
    (
        10,
        "Star Trek",
        &["Chris Pine"],
        "science-fiction",
        2009,
        5000.0,
    ),
    (11, "Stardust", &["Claire Danes"], "fantasy", 2007, 1500.0),
    (
        12,
        "Interstellar",
        &["Matthew McConaughey", "Anne Hathaway"],
        "science-fiction",
        2014,
        8800.0,
    ),
    (
        13,
        "Inception",
        &["Leonardo DiCaprio"],
        "science-fiction",
        2010,
        9100.0,
    ),
    (
        14,
        "Toy Story",
        &["Tom Hanks", "Tim Allen"],
        "animation",
        1995,
        8500.0,
    ),
    (
        15,
        "Toy Story 2",
        &["Tom Hanks", "Tim Allen"],
        "animation",
        1999,
        6000.0,
    ),
    (
        16,
        "Toy Story 3",
        &["Tom Hanks", "Tim Allen"],
        "animation",
        2010,
        7000.0,
    ),
    (
        17,
        "Forrest Gump",
        &["Tom Hanks", "Robin Wright"],
        "drama",
        1994,
        8700.0,
    ),
    (
        18,
        "Cast Away",
        &["Tom Hanks", "Helen Hunt"],
        "drama",
        2000,
        4500.0,
    ),
    (
        19,
        "Heat",
        &["Al Pacino", "Robert De Niro"],
        "crime",
        1995,
        5200.0,
    ),
    (20, "Heathers", &["Winona Ryder"], "comedy", 1989, 900.0),
    (
        21,
        "Casablanca",
        &["Humphrey Bogart", "Ingrid Bergman"],
        "romance",
        1942,
        3000.0,
    ),
    (22, "Gladiator", &["Russell Crowe"], "action", 2000, 7800.0),
    (
        23,
        "The Shawshank Redemption",
        &["Tim Robbins", "Morgan Freeman"],
        "drama",
        1994,
        9900.0,
    ),
    (
        24,
        "Spirited Away",
        &["Rumi Hiiragi"],
        "animation",
        2001,
        6500.0,
    ),
    (
        25,
        "Finding Nemo",
        &["Albert Brooks", "Ellen DeGeneres"],
        "animation",
        2003,
        7200.0,
    ),
    (26, "Up", &["Ed Asner"], "animation", 2009, 6100.0),
    (
        27,
        "Matrix of Lies",
        &["Nobody Famous"],
        "thriller",
        2021,
        50.0,
    ),
    (
        28,
        "Gravity",
        &["Sandra Bullock", "George Clooney"],
        "science-fiction",
        2013,
        6400.0,
    ),
];

fn catalog() -> Vec<Title> {
    CATALOG
        .iter()
        .map(|&(id, name, cast, genre, year, _)| {
            let mut t = title(id, name);
            t.cast = cast.iter().map(|name| name.to_string()).collect();
            t.genres = vec![genre.to_owned()];
            t.year = year;
            t
        })
        .collect()
}

struct Case {
    what: &'static str,
    q: &'static str,
    genre: Option<&'static str>,
    top3: [u64; 3],
}

const CASES: &[Case] = &[
    Case {
        what: "exact title",
        q: "the matrix",
        genre: None,
        top3: [1, 2, 3],
    },
    Case {
        what: "exact short title",
        q: "heat",
        genre: None,
        top3: [19, 20, 0],
    },
    Case {
        what: "exact title, typed in full",
        q: "toy story 2",
        genre: None,
        top3: [15, 0, 0],
    },
    Case {
        what: "prefix as typed",
        q: "star",
        genre: None,
        top3: [9, 10, 11],
    },
    Case {
        what: "two words, the last a prefix",
        q: "star w",
        genre: None,
        top3: [9, 0, 0],
    },
    Case {
        what: "prefix of a long word",
        q: "inters",
        genre: None,
        top3: [12, 0, 0],
    },
    Case {
        what: "one typo",
        q: "godfahter",
        genre: None,
        top3: [6, 7, 8],
    },
    Case {
        what: "one typo, last word finished",
        q: "gladiatr ",
        genre: None,
        top3: [22, 0, 0],
    },
    Case {
        what: "two typos",
        q: "intrestelar",
        genre: None,
        top3: [12, 0, 0],
    },
    Case {
        what: "two typos in a long word",
        q: "shawshenk redemptoin",
        genre: None,
        top3: [23, 0, 0],
    },
    Case {
        what: "cast name",
        q: "keanu reeves",
        genre: None,
        top3: [1, 4, 2],
    },
    Case {
        what: "cast name with a typo",
        q: "tom hansk",
        genre: None,
        top3: [17, 14, 16],
    },
    Case {
        what: "a filter",
        q: "tom hanks",
        genre: Some("animation"),
        top3: [14, 16, 15],
    },
    Case {
        what: "a filter, nothing typed",
        q: "",
        genre: Some("animation"),
        top3: [14, 25, 16],
    },
];

async fn the_expected_titles_come_first(backend: &Backend) {
    backend.put(&catalog()).await;
    let popularity: Vec<(u64, f32)> = CATALOG.iter().map(|t| (t.0, t.5)).collect();
    backend.index.set_popularity(&popularity).await.unwrap();
    backend.index.refresh().await.unwrap();
    let mut failures = Vec::new();
    for case in CASES {
        let filters = Filters {
            genre: case.genre.map(str::to_owned),
            ..Filters::default()
        };
        let response = backend
            .index
            .search(&request(case.q, filters))
            .await
            .unwrap();
        let got: Vec<u64> = response.hits.iter().take(3).map(|hit| hit.id).collect();
        // A 0 in the expectation: fewer than three titles can match.
        let expected: Vec<u64> = case.top3.iter().copied().filter(|&id| id != 0).collect();
        if got != expected {
            let names: Vec<String> = response
                .hits
                .iter()
                .take(5)
                .map(|hit| format!("{} {} ({:.2})", hit.id, hit.title, hit.score))
                .collect();
            failures.push(format!(
                "{} {:?}: expected {expected:?}, got {names:?}",
                case.what, case.q
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}:\n{}",
        backend.name,
        failures.join("\n")
    );
}
