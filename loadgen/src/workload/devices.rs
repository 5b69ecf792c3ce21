//! Who watches on what, from where: the device mix, app versions, bitrate ladders, CDNs and
//! countries. The shares are plausible for a global streaming service, not measured; what
//! matters to the server is that the labels vary with a realistic skew.

/// What a kind of device does differently.
#[derive(Debug)]
pub struct DeviceProfile {
    pub name: &'static str,
    /// App versions in the field, the newest most common.
    pub app_versions: &'static [(&'static str, u32)],
    /// The bitrates the player can pick, lowest first.
    pub ladder_kbps: &'static [u32],
    /// Rebuffering stalls per hour of playback.
    pub stalls_per_hour: f64,
    /// Player errors per hour of playback.
    pub errors_per_hour: f64,
    /// Video startup time (play request to first frame) is log-normal: this median, in ms...
    pub startup_median_ms: f64,
    /// ... and this standard deviation of its logarithm (0.5: the 99th percentile is 3.2 times
    /// the median; 0.7: 5.1 times).
    pub startup_sigma: f64,
    /// Share of play attempts the viewer abandons before the first frame (exit before video
    /// start): a `stop` with `before_start`.
    pub exit_before_start: f64,
    /// Share of play attempts that fail before the first frame (startup failure): a fatal
    /// `error` with `before_start`.
    pub startup_failure: f64,
}

pub static DEVICES: [(DeviceProfile, u32); 6] = [
    (
        DeviceProfile {
            name: "tv",
            app_versions: &[("tv-7.4.1", 60), ("tv-7.3.9", 30), ("tv-6.12.0", 10)],
            ladder_kbps: &[1_500, 3_000, 5_800, 8_000, 16_000],
            stalls_per_hour: 1.0,
            errors_per_hour: 0.3,
            startup_median_ms: 1_500.0,
            startup_sigma: 0.55,
            exit_before_start: 0.025,
            startup_failure: 0.006,
        },
        35,
    ),
    (
        DeviceProfile {
            name: "mobile",
            app_versions: &[
                ("ios-24.18.0", 35),
                ("android-24.17.2", 50),
                ("android-23.40.1", 15),
            ],
            ladder_kbps: &[400, 800, 1_500, 2_500, 4_000],
            stalls_per_hour: 4.0,
            errors_per_hour: 0.8,
            startup_median_ms: 1_200.0,
            startup_sigma: 0.7,
            exit_before_start: 0.035,
            startup_failure: 0.009,
        },
        30,
    ),
    (
        DeviceProfile {
            name: "web",
            app_versions: &[("web-2025.11.3", 70), ("web-2025.10.7", 30)],
            ladder_kbps: &[800, 1_500, 3_000, 5_800],
            stalls_per_hour: 2.0,
            errors_per_hour: 0.6,
            startup_median_ms: 900.0,
            startup_sigma: 0.65,
            exit_before_start: 0.03,
            startup_failure: 0.008,
        },
        18,
    ),
    (
        DeviceProfile {
            name: "console",
            app_versions: &[("console-3.2.0", 80), ("console-3.1.4", 20)],
            ladder_kbps: &[1_500, 3_000, 5_800, 8_000, 16_000],
            stalls_per_hour: 0.8,
            errors_per_hour: 0.2,
            startup_median_ms: 1_000.0,
            startup_sigma: 0.45,
            exit_before_start: 0.02,
            startup_failure: 0.005,
        },
        8,
    ),
    (
        DeviceProfile {
            name: "tablet",
            app_versions: &[("ipados-24.18.0", 60), ("android-24.17.2", 40)],
            ladder_kbps: &[800, 1_500, 3_000, 5_800],
            stalls_per_hour: 2.5,
            errors_per_hour: 0.5,
            startup_median_ms: 1_000.0,
            startup_sigma: 0.6,
            exit_before_start: 0.03,
            startup_failure: 0.007,
        },
        7,
    ),
    (
        DeviceProfile {
            name: "set_top_box",
            app_versions: &[("stb-1.9.3", 100)],
            ladder_kbps: &[1_500, 3_000, 5_800, 8_000],
            stalls_per_hour: 1.5,
            errors_per_hour: 0.4,
            startup_median_ms: 2_000.0,
            startup_sigma: 0.5,
            exit_before_start: 0.03,
            startup_failure: 0.01,
        },
        2,
    ),
];

/// Edge networks serving the video; a session stays on one.
pub static CDNS: [(&str, u32); 4] = [
    ("pp-edge", 45),
    ("akamai", 25),
    ("cloudfront", 18),
    ("fastly", 12),
];

/// Viewers' countries (ISO 3166-1 alpha-2, all assigned codes).
pub static COUNTRIES: [(&str, u32); 16] = [
    ("US", 30),
    ("BR", 9),
    ("GB", 7),
    ("IN", 7),
    ("DE", 6),
    ("MX", 6),
    ("FR", 5),
    ("JP", 5),
    ("CA", 4),
    ("ES", 4),
    ("KR", 3),
    ("IT", 3),
    ("AU", 3),
    ("NL", 2),
    ("SE", 2),
    ("PL", 4),
];

/// Player error codes: (code, weight, whether it ends the session).
pub static ERROR_CODES: [(&str, u32, bool); 6] = [
    ("NET_TIMEOUT", 35, false),
    ("CDN_HTTP_5XX", 20, false),
    ("MANIFEST_PARSE", 10, false),
    ("DECODER_FAILURE", 15, true),
    ("DRM_LICENSE_DENIED", 10, true),
    ("OUT_OF_MEMORY", 10, true),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_fits_the_wire_limits() {
        let label_max = wire::limits::MAX_LABEL_BYTES;
        for (device, _) in &DEVICES {
            assert!(device.name.len() <= label_max);
            assert!(device
                .app_versions
                .iter()
                .all(|(v, _)| v.len() <= label_max));
            assert!(device.ladder_kbps.windows(2).all(|pair| pair[0] < pair[1]));
        }
        assert!(CDNS.iter().all(|(cdn, _)| cdn.len() <= label_max));
        assert!(ERROR_CODES
            .iter()
            .all(|(code, _, _)| code.len() <= wire::limits::MAX_ERROR_CODE_BYTES));
        assert!(COUNTRIES
            .iter()
            .all(|(code, _)| wire::CountryCode::parse(code).is_some()));
    }

    #[test]
    fn startups_are_plausible_for_every_device() {
        for (device, _) in &DEVICES {
            assert!((800.0..=2_000.0).contains(&device.startup_median_ms));
            assert!((0.3..=0.8).contains(&device.startup_sigma));
            assert!((0.02..=0.04).contains(&device.exit_before_start));
            assert!((0.005..=0.01).contains(&device.startup_failure));
        }
        // Over the device mix: about 3% exits before start, 0.7% startup failures.
        let total: f64 = DEVICES.iter().map(|(_, share)| f64::from(*share)).sum();
        let mean = |of: fn(&DeviceProfile) -> f64| {
            DEVICES
                .iter()
                .map(|(device, share)| of(device) * f64::from(*share))
                .sum::<f64>()
                / total
        };
        let exits = mean(|device| device.exit_before_start);
        let failures = mean(|device| device.startup_failure);
        assert!((0.025..0.035).contains(&exits), "{exits}");
        assert!((0.006..0.009).contains(&failures), "{failures}");
    }
}
