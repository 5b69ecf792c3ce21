//! A synthetic catalog, deterministic by seed: titles with realistic words, genres, years,
//! cast and crew, languages and availability windows, for the titles loadgen's audience
//! watches. Title `rank` is [`ZipfCatalog::content_id`]`(rank)`, its genre the one
//! [`Taste::genre_of`] gives, and its popularity the share of plays the Zipf law gives it: the
//! catalog and the audience agree.

use search::{Availability, CountryCode, Title};

use super::rng::{mix, Rng};
use super::{Taste, ZipfCatalog};

/// Genre names, by the number [`Taste::genre_of`] draws (modulo their count).
pub const GENRES: [&str; 32] = [
    "drama",
    "comedy",
    "thriller",
    "action",
    "romance",
    "horror",
    "science-fiction",
    "fantasy",
    "documentary",
    "animation",
    "crime",
    "mystery",
    "adventure",
    "family",
    "war",
    "western",
    "musical",
    "history",
    "biography",
    "sport",
    "anime",
    "reality",
    "talk-show",
    "kids",
    "noir",
    "satire",
    "superhero",
    "teen",
    "medical",
    "legal",
    "cooking",
    "travel",
];

const ADJECTIVES: [&str; 48] = [
    "Silent",
    "Broken",
    "Golden",
    "Last",
    "Hidden",
    "Crimson",
    "Endless",
    "Frozen",
    "Secret",
    "Lost",
    "Burning",
    "Wild",
    "Dark",
    "Bright",
    "Fallen",
    "Iron",
    "Midnight",
    "Electric",
    "Savage",
    "Gentle",
    "Distant",
    "Hollow",
    "Restless",
    "Scarlet",
    "Velvet",
    "Shattered",
    "Forgotten",
    "Eternal",
    "Quiet",
    "Rising",
    "Twisted",
    "Perfect",
    "Little",
    "Great",
    "Northern",
    "Southern",
    "Ancient",
    "Modern",
    "Lonely",
    "Reckless",
    "Brave",
    "Cruel",
    "Sweet",
    "Bitter",
    "Final",
    "First",
    "Second",
    "Invisible",
];

const NOUNS: [&str; 64] = [
    "River",
    "Empire",
    "Storm",
    "Garden",
    "Kingdom",
    "Shadow",
    "Horizon",
    "Mirror",
    "Harbor",
    "Forest",
    "Desert",
    "Ocean",
    "Mountain",
    "City",
    "Island",
    "Winter",
    "Summer",
    "Night",
    "Dream",
    "Promise",
    "Secret",
    "Witness",
    "Stranger",
    "Hunter",
    "Queen",
    "King",
    "Soldier",
    "Detective",
    "Doctor",
    "Thief",
    "Angel",
    "Ghost",
    "Machine",
    "Signal",
    "Frontier",
    "Station",
    "Castle",
    "Bridge",
    "Road",
    "Train",
    "Letter",
    "Song",
    "Dance",
    "Game",
    "Circle",
    "Line",
    "Code",
    "Planet",
    "Star",
    "Moon",
    "Sun",
    "Fire",
    "Ice",
    "Stone",
    "Glass",
    "Wolf",
    "Lion",
    "Raven",
    "Dragon",
    "Tide",
    "Valley",
    "Canyon",
    "Lighthouse",
    "Orchard",
];

const FIRST_NAMES: [&str; 40] = [
    "Ana", "Ben", "Chloe", "David", "Elena", "Felix", "Grace", "Hugo", "Iris", "Jonas", "Keira",
    "Liam", "Maya", "Noah", "Olivia", "Pablo", "Quinn", "Rosa", "Samuel", "Tessa", "Umar", "Vera",
    "William", "Ximena", "Yusuf", "Zoe", "Amelie", "Bruno", "Carmen", "Dmitri", "Esther", "Farid",
    "Greta", "Hiro", "Ingrid", "Jamal", "Kenji", "Lucia", "Marco", "Nadia",
];

const LAST_NAMES: [&str; 40] = [
    "Anderson",
    "Brennan",
    "Castillo",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Hansen",
    "Ibrahim",
    "Jensen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quintero",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Umarov",
    "Valdez",
    "Weber",
    "Xu",
    "Yamamoto",
    "Zimmermann",
    "Almeida",
    "Bianchi",
    "Costa",
    "Delacroix",
    "Esposito",
    "Ferreira",
    "Gallo",
    "Horvath",
    "Ivanova",
    "Jovanovic",
    "Kim",
    "Laurent",
    "Mendes",
    "Novak",
];

const VERBS: [&str; 24] = [
    "discovers",
    "hunts",
    "escapes",
    "betrays",
    "protects",
    "chases",
    "uncovers",
    "loses",
    "rebuilds",
    "defends",
    "follows",
    "confronts",
    "hides",
    "remembers",
    "inherits",
    "steals",
    "investigates",
    "rescues",
    "joins",
    "leaves",
    "challenges",
    "survives",
    "trusts",
    "forgives",
];

const ROLES: [&str; 16] = [
    "a young widow",
    "an aging detective",
    "two estranged brothers",
    "a reluctant heir",
    "a small-town teacher",
    "a retired thief",
    "a rookie pilot",
    "a famous chef",
    "a lonely astronaut",
    "a stubborn lawyer",
    "a street musician",
    "a disgraced surgeon",
    "three old friends",
    "a runaway princess",
    "a tireless reporter",
    "a quiet farmer",
];

const LANGUAGES: [&str; 10] = ["en", "es", "fr", "de", "it", "ja", "ko", "pt", "hi", "sv"];
const COUNTRIES: [&str; 12] = [
    "US", "GB", "FR", "DE", "ES", "IT", "JP", "KR", "BR", "IN", "SE", "CA",
];
const RATINGS: [&str; 8] = ["G", "PG", "PG-13", "R", "TV-PG", "TV-14", "TV-MA", "NR"];

/// 2015-01-01 and 2035-01-01, in days since 1970.
const WINDOW_START: i32 = 16_436;
const WINDOW_SPAN: u64 = 7_305;

/// The catalog loadgen's audience watches, as titles.
pub struct SyntheticCatalog {
    seed: u64,
    taste: Taste,
    zipf: ZipfCatalog,
}

impl SyntheticCatalog {
    pub fn new(seed: u64, zipf: ZipfCatalog) -> SyntheticCatalog {
        SyntheticCatalog {
            seed,
            taste: *zipf.taste(),
            zipf,
        }
    }

    pub fn len(&self) -> usize {
        self.zipf.titles()
    }

    pub fn is_empty(&self) -> bool {
        self.zipf.titles() == 0
    }

    /// The share of plays that go to the title at `rank` (its Zipf probability).
    pub fn popularity(&self, rank: usize) -> f64 {
        self.zipf.probability(rank)
    }

    /// The title at popularity `rank` (0: the most watched).
    pub fn title(&self, rank: usize) -> Title {
        let id = ZipfCatalog::content_id(rank);
        let mut rng = Rng::seeded(mix(self.seed, id));
        let pick =
            |rng: &mut Rng, words: &[&'static str]| words[rng.below(words.len() as u64) as usize];
        // About one title in five has a "the", as in real catalogs.
        let name = match rng.below(10) {
            0 => format!(
                "The {} {}",
                pick(&mut rng, &ADJECTIVES),
                pick(&mut rng, &NOUNS)
            ),
            1 => format!(
                "{} of the {}",
                pick(&mut rng, &NOUNS),
                pick(&mut rng, &NOUNS)
            ),
            2 => format!(
                "{}'s {}",
                pick(&mut rng, &FIRST_NAMES),
                pick(&mut rng, &NOUNS)
            ),
            3 | 4 => format!("{} {}", pick(&mut rng, &ADJECTIVES), pick(&mut rng, &NOUNS)),
            5 => format!(
                "{} {} {}",
                pick(&mut rng, &ADJECTIVES),
                pick(&mut rng, &NOUNS),
                2 + rng.below(4)
            ),
            6 => format!("{} and {}", pick(&mut rng, &NOUNS), pick(&mut rng, &NOUNS)),
            7 => format!(
                "{} {} of {}",
                pick(&mut rng, &ADJECTIVES),
                pick(&mut rng, &NOUNS),
                pick(&mut rng, &NOUNS)
            ),
            8 => format!("{} {}", invented(&mut rng), pick(&mut rng, &NOUNS)),
            _ => format!("{} {}", pick(&mut rng, &NOUNS), invented(&mut rng)),
        };
        let primary = GENRES[self.taste.genre_of(id) as usize % GENRES.len()];
        let mut genres = vec![primary.to_owned()];
        if rng.chance(0.5) {
            let second = pick(&mut rng, &GENRES);
            if second != primary {
                genres.push(second.to_owned());
            }
        }
        let person =
            |rng: &mut Rng| format!("{} {}", pick(rng, &FIRST_NAMES), pick(rng, &LAST_NAMES));
        let cast: Vec<String> = (0..2 + rng.below(5)).map(|_| person(&mut rng)).collect();
        let crew: Vec<String> = (0..1 + rng.below(3)).map(|_| person(&mut rng)).collect();
        let synopsis = synopsis(&mut rng, &cast[0]);
        // More recent titles than old ones, as in any catalog.
        let year = 2026 - (rng.unit().powi(2) * 96.0) as u16;
        let audio = if rng.chance(0.7) {
            "en"
        } else {
            pick(&mut rng, &LANGUAGES)
        };
        let mut subtitles: Vec<String> = (0..rng.below(4))
            .map(|_| pick(&mut rng, &LANGUAGES).to_owned())
            .filter(|language| language != audio)
            .collect();
        subtitles.sort();
        subtitles.dedup();
        let mut availability = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let Some(country) = CountryCode::parse(pick(&mut rng, &COUNTRIES)) else {
                continue;
            };
            let from = WINDOW_START + rng.below(WINDOW_SPAN) as i32;
            let until = rng.chance(0.6).then(|| from + 30 + rng.below(3_000) as i32);
            availability.push(Availability {
                country,
                from,
                until,
            });
        }
        Title {
            id,
            original_title: rng
                .chance(0.1)
                .then(|| format!("{name} ({})", pick(&mut rng, &LANGUAGES))),
            title: name,
            synopsis,
            genres,
            year,
            runtime_minutes: 20 + rng.below(160) as u32,
            maturity: pick(&mut rng, &RATINGS).to_owned(),
            cast,
            crew,
            audio_languages: vec![audio.to_owned()],
            subtitle_languages: subtitles,
            availability,
        }
    }
}

/// A title as `POST /v1/titles` takes it (dates as `YYYY-MM-DD`).
pub fn api_body(title: &Title) -> serde_json::Value {
    let mut body = serde_json::to_value(title).unwrap_or_default();
    body["availability"] = title
        .availability
        .iter()
        .map(|window| {
            serde_json::json!({
                "country": window.country.as_str(),
                "from": search::day::format(window.from),
                "until": window.until.map(search::day::format),
            })
        })
        .collect();
    body
}

const PLACES: [&str; 12] = [
    "a border town",
    "a drowned city",
    "the last colony",
    "a mountain village",
    "a space station",
    "a crumbling palace",
    "a fishing port",
    "an island prison",
    "a desert outpost",
    "a Paris suburb",
    "a frozen research base",
    "a travelling circus",
];

const STAKES: [&str; 10] = [
    "before the storm arrives",
    "while the war rages on",
    "as an old secret resurfaces",
    "when the money runs out",
    "after a mysterious disappearance",
    "against all odds",
    "during one long summer",
    "on the eve of an election",
    "as the ice begins to melt",
    "until the truth comes out",
];

/// One of a few sentence shapes, filled from the word lists: varied enough that no word but a
/// stop word is in every synopsis.
fn synopsis(rng: &mut Rng, lead: &str) -> String {
    let pick =
        |rng: &mut Rng, words: &[&'static str]| words[rng.below(words.len() as u64) as usize];
    let lower = |word: &str| word.to_lowercase();
    match rng.below(4) {
        0 => format!(
            "{} {} a {} {} in {}.",
            capitalized(pick(rng, &ROLES)),
            pick(rng, &VERBS),
            lower(pick(rng, &ADJECTIVES)),
            lower(pick(rng, &NOUNS)),
            pick(rng, &PLACES)
        ),
        1 => format!(
            "In {}, {} {} {} {}.",
            pick(rng, &PLACES),
            pick(rng, &ROLES),
            pick(rng, &VERBS),
            pick(rng, &ROLES),
            pick(rng, &STAKES)
        ),
        2 => format!(
            "{lead} plays {} who {} the {} {}. {}.",
            pick(rng, &ROLES),
            pick(rng, &VERBS),
            lower(pick(rng, &ADJECTIVES)),
            lower(pick(rng, &NOUNS)),
            capitalized(pick(rng, &STAKES))
        ),
        _ => format!(
            "A {} story of {} and the {} that {} them, {}.",
            lower(pick(rng, &ADJECTIVES)),
            pick(rng, &ROLES),
            lower(pick(rng, &NOUNS)),
            pick(rng, &VERBS),
            pick(rng, &STAKES)
        ),
    }
}

const SYLLABLES: [&str; 30] = [
    "ka", "lo", "ra", "ven", "mir", "tal", "sor", "en", "dra", "vi", "mon", "ta", "bel", "ri",
    "an", "zo", "el", "thor", "mi", "na", "gar", "os", "lun", "che", "va", "ron", "is", "ul",
    "fen", "dor",
];

/// A made-up name of two or three syllables (places, characters): 27,900 of them.
fn invented(rng: &mut Rng) -> String {
    let count = 2 + rng.below(2);
    let word: String = (0..count)
        .map(|_| SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize])
        .collect();
    capitalized(&word)
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> SyntheticCatalog {
        let zipf = ZipfCatalog::new(1_000, 1.0)
            .unwrap()
            .with_taste(Taste::default())
            .unwrap();
        SyntheticCatalog::new(7, zipf)
    }

    #[test]
    fn the_same_seed_gives_the_same_catalog() {
        let (a, b) = (catalog(), catalog());
        for rank in [0, 1, 500, 999] {
            assert_eq!(a.title(rank), b.title(rank));
        }
        let other = SyntheticCatalog::new(8, ZipfCatalog::new(1_000, 1.0).unwrap());
        assert_ne!(a.title(3), other.title(3));
    }

    #[test]
    fn titles_agree_with_the_audience() {
        let catalog = catalog();
        let taste = Taste::default();
        for rank in 0..200 {
            let title = catalog.title(rank);
            assert_eq!(title.id, ZipfCatalog::content_id(rank));
            assert_eq!(
                title.genres[0],
                GENRES[taste.genre_of(title.id) as usize % GENRES.len()]
            );
            assert!(!title.title.is_empty() && !title.cast.is_empty());
            assert!(title
                .availability
                .iter()
                .all(|w| w.until.is_none_or(|u| u >= w.from)));
        }
        assert!(catalog.popularity(0) > catalog.popularity(10));
    }
}
