//! Cache keys that the writer (invalidation side path, projectors) and the readers agree on.

/// Key of a user's cached recommendations.
pub fn recommendations(user_id: u64) -> String {
    format!("recommendations:{user_id}")
}

/// Key of a user's cached profile read model.
pub fn user_profile(user_id: u64) -> String {
    format!("user_profile:{user_id}")
}

/// Expands a configurable key pattern such as `"recommendations:{user_id}"`.
pub fn expand(pattern: &str, user_id: u64) -> String {
    pattern.replace("{user_id}", &user_id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_expand_to_the_documented_keys() {
        assert_eq!(expand("recommendations:{user_id}", 42), recommendations(42));
        assert_eq!(expand("user_profile:{user_id}", 7), user_profile(7));
    }
}
