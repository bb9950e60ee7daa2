//! What the person's language costs a request: choosing it from `Accept-Language` (every page
//! and flows-API request) and formatting a message with a plural (an error, a page).
//!
//! ```text
//! cargo bench -p devicegate-server --bench i18n
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use devicegate_server::i18n::Catalog;
use http::HeaderValue;

fn choosing(c: &mut Criterion) {
    let catalog = Catalog::new(None, None).unwrap();
    // The floor: what any handler pays to read the header and hold an `Arc`.
    let english = catalog.english();
    let header = HeaderValue::from_static("de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7");
    c.bench_function("i18n/floor_read_header_clone_arc", |b| {
        b.iter(|| (black_box(&header).to_str().ok(), english.clone()))
    });
    c.bench_function("i18n/pick_none", |b| {
        b.iter(|| catalog.pick(black_box(None)))
    });
    c.bench_function("i18n/pick_typical", |b| {
        b.iter(|| catalog.pick(black_box(Some(&header))))
    });
    let long: String = (0..400)
        .map(|i| format!("x{i:03}-AA;q=0.{}", i % 9 + 1))
        .collect::<Vec<_>>()
        .join(",");
    let long = HeaderValue::from_str(&long).unwrap();
    c.bench_function("i18n/pick_400_unknown_languages", |b| {
        b.iter(|| catalog.pick(black_box(Some(&long))))
    });
}

fn formatting(c: &mut Criterion) {
    let catalog = Catalog::new(None, None).unwrap();
    let fr = catalog.pick(Some(&HeaderValue::from_static("fr")));
    c.bench_function("i18n/plain_message_clone", |b| {
        b.iter(|| black_box(&fr.wrong_code).clone())
    });
    c.bench_function("i18n/plural_message", |b| {
        b.iter(|| fr.attempts_left(black_box(3u32)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = choosing, formatting
}
criterion_main!(benches);
