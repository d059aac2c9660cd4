//! Compile-time behaviour of `#[kafka_handler]`: every accepted form
//! compiles (and its registration is checked at run time), every rejected
//! form fails with the message in the matching `.stderr` file.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
