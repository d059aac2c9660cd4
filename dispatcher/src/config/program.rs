//! The program's name: the default consumer group and client id.

/// The program's name, for the default group and client id: the
/// executable's file name, without the `-<16 hex digits>` suffix cargo
/// gives test binaries. Two programs called `order-service` and
/// `order-audit` must not share a group by default.
pub(crate) fn program_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| without_cargo_hash(&s).to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "dispatcher".to_owned())
}

/// `name` without the `-0123456789abcdef` suffix cargo adds to test and
/// example binaries in `target/*/deps`.
fn without_cargo_hash(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((stem, hash))
            if !stem.is_empty()
                && hash.len() == 16
                && hash
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) =>
        {
            stem
        }
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::without_cargo_hash;

    #[test]
    fn the_whole_program_name_names_the_group() {
        assert_eq!(without_cargo_hash("order-service"), "order-service");
        assert_eq!(without_cargo_hash("order-audit"), "order-audit");
        assert_ne!(
            without_cargo_hash("order-service"),
            without_cargo_hash("order-audit"),
            "unrelated programs do not share a default group"
        );
        assert_eq!(without_cargo_hash("billing"), "billing");
    }

    #[test]
    fn cargos_hash_suffix_is_dropped() {
        assert_eq!(without_cargo_hash("startup-3f2a9c1d0b7e6a54"), "startup");
        assert_eq!(
            without_cargo_hash("order-service-3f2a9c1d0b7e6a54"),
            "order-service"
        );
        // Not a cargo hash: kept.
        assert_eq!(without_cargo_hash("order-v2"), "order-v2");
        assert_eq!(
            without_cargo_hash("app-DEADBEEFDEADBEEF"),
            "app-DEADBEEFDEADBEEF"
        );
    }
}
