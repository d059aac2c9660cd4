//! Type names as a user writes them, for logs and dead-letter headers.
//!
//! `std::any::type_name` gives the path where a type is defined, which is
//! often private (`std::io::error::Error`,
//! `dispatcher::extract::Json<my_app::orders::Order>`).

/// `name` with every path shortened to its last segment:
/// `dispatcher::extract::Json<alloc::vec::Vec<app::Order>>` becomes
/// `Json<Vec<Order>>`. For the types an argument is decoded into.
pub(crate) fn short(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut segment_start = 0;
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("::") {
            // A path continues: drop the segment written so far.
            out.truncate(segment_start);
            rest = after;
            continue;
        }
        out.push(c);
        if !(c.is_alphanumeric() || c == '_') {
            segment_start = out.len();
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The name of an error type as users name it: the public path of the
/// standard library's error types, the full path of anything else.
pub(crate) fn error(name: &'static str) -> &'static str {
    match name {
        "std::io::error::Error" => "std::io::Error",
        "core::fmt::Error" => "std::fmt::Error",
        "alloc::string::FromUtf8Error" => "std::string::FromUtf8Error",
        "core::str::error::Utf8Error" => "std::str::Utf8Error",
        "core::num::error::ParseIntError" => "std::num::ParseIntError",
        "core::num::dec2flt::ParseFloatError" => "std::num::ParseFloatError",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_segment_of_every_path() {
        assert_eq!(
            short("dispatcher::extract::Json<quickstart::Order>"),
            "Json<Order>"
        );
        assert_eq!(
            short("dispatcher::extract::Json<alloc::vec::Vec<a::b::Order>>"),
            "Json<Vec<Order>>"
        );
        assert_eq!(
            short("core::option::Option<(u8, alloc::string::String)>"),
            "Option<(u8, String)>"
        );
        assert_eq!(short("Order"), "Order");
    }

    #[test]
    fn names_std_errors_by_their_public_path() {
        assert_eq!(
            error(std::any::type_name::<std::io::Error>()),
            "std::io::Error"
        );
        assert_eq!(error("app::OrderError"), "app::OrderError");
    }
}
