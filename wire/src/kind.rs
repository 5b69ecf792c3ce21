use std::fmt;

/// What happened in a playback session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum EventKind {
    Start = 0,
    Heartbeat = 1,
    Pause = 2,
    Resume = 3,
    Seek = 4,
    BufferStart = 5,
    BufferEnd = 6,
    BitrateChange = 7,
    Error = 8,
    Stop = 9,
    Complete = 10,
}

impl EventKind {
    pub const ALL: [EventKind; 11] = [
        EventKind::Start,
        EventKind::Heartbeat,
        EventKind::Pause,
        EventKind::Resume,
        EventKind::Seek,
        EventKind::BufferStart,
        EventKind::BufferEnd,
        EventKind::BitrateChange,
        EventKind::Error,
        EventKind::Stop,
        EventKind::Complete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Heartbeat => "heartbeat",
            EventKind::Pause => "pause",
            EventKind::Resume => "resume",
            EventKind::Seek => "seek",
            EventKind::BufferStart => "buffer_start",
            EventKind::BufferEnd => "buffer_end",
            EventKind::BitrateChange => "bitrate_change",
            EventKind::Error => "error",
            EventKind::Stop => "stop",
            EventKind::Complete => "complete",
        }
    }

    pub fn parse(text: &str) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    /// The compact code stored on disk.
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<EventKind> {
        EventKind::ALL.get(code as usize).copied()
    }

    /// Whether this event changes what the viewer's recommendations should be.
    pub fn changes_taste(self) -> bool {
        matches!(self, EventKind::Start | EventKind::Complete)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        EventKind::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown event kind `{text}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_name_and_code() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            assert_eq!(EventKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(EventKind::parse("Start"), None);
        assert_eq!(EventKind::from_code(11), None);
    }
}
