use std::fmt;

/// The officially assigned ISO 3166-1 alpha-2 codes.
const ASSIGNED: &str = "\
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ \
BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ \
DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR \
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY \
HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP \
KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY \
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ \
NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY \
QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ \
TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ \
VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// One bit per assigned code: row = first letter, bit = second letter.
const ASSIGNED_BITS: [u32; 26] = {
    let bytes = ASSIGNED.as_bytes();
    let mut bits = [0u32; 26];
    let mut at = 0;
    while at + 1 < bytes.len() {
        bits[(bytes[at] - b'A') as usize] |= 1 << (bytes[at + 1] - b'A');
        at += 3;
    }
    bits
};

/// A country as an assigned ISO 3166-1 alpha-2 code, stored upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Parses a code case-insensitively; `None` unless it is an assigned alpha-2 code.
    pub fn parse(text: &str) -> Option<CountryCode> {
        let bytes = text.as_bytes();
        if bytes.len() != 2 || !bytes.iter().all(u8::is_ascii_alphabetic) {
            return None;
        }
        let code = [bytes[0].to_ascii_uppercase(), bytes[1].to_ascii_uppercase()];
        let assigned = ASSIGNED_BITS[(code[0] - b'A') as usize] & (1 << (code[1] - b'A')) != 0;
        assigned.then_some(CountryCode(code))
    }

    pub fn as_bytes(&self) -> [u8; 2] {
        self.0
    }

    pub fn as_str(&self) -> &str {
        // Always two ASCII letters: checked by `parse`.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_holds_the_249_assigned_codes() {
        assert_eq!(ASSIGNED.split(' ').count(), 249);
        assert!(ASSIGNED.split(' ').all(|code| code.len() == 2));
        let bits: u32 = ASSIGNED_BITS.iter().map(|row| row.count_ones()).sum();
        assert_eq!(bits, 249);
    }

    #[test]
    fn assigned_codes_parse_in_either_case() {
        assert_eq!(CountryCode::parse("US").unwrap().as_str(), "US");
        assert_eq!(CountryCode::parse("fr").unwrap().as_str(), "FR");
        assert_eq!(CountryCode::parse("ZW").unwrap().as_str(), "ZW");
    }

    #[test]
    fn unassigned_or_malformed_codes_are_refused() {
        for bad in ["UK", "EU", "XX", "U", "USA", "", "1A", "é"] {
            assert_eq!(CountryCode::parse(bad), None, "{bad}");
        }
    }
}
